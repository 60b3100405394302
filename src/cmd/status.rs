//! `status` and `explain`: where each node stands and why.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use crate::listing::abbreviated;
use crate::stale::in_words;
use crate::status::{NodeState, Resolver};
use crate::store::Store;
use crate::workspace::Planned;

pub(super) fn status(p: &Planned, json: bool) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let states = resolver.states(None);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let width = p.graph.nodes.iter().map(|n| n.id.len()).max().unwrap_or(4).min(48);
    // Whether results/ still shows each fresh node's outputs: a few stats per node, in
    // parallel.
    let damage: Vec<Option<String>> = {
        use rayon::prelude::*;
        let (workspace, graph) = (&p.workspace, &p.graph);
        states
            .par_iter()
            .enumerate()
            .map(|(i, state)| match state {
                Some(NodeState::Fresh { action, .. }) => {
                    crate::results::damage(workspace, &graph.nodes[i], action)
                }
                _ => None,
            })
            .collect()
    };
    for (i, (state, results_damage)) in states.iter().zip(damage).enumerate() {
        let state = state.as_ref().expect("all nodes resolved");
        *counts.entry(state.label()).or_default() += 1;
        let node = &p.graph.nodes[i].id;
        let detail = match state {
            NodeState::Fresh { key, .. } => match &results_damage {
                Some(why) => {
                    format!("{}; results/ {why} (`wormflow run` restores it)", key.short())
                }
                None => key.short(),
            },
            NodeState::Stale { reasons, .. } => in_words(reasons),
            NodeState::Waiting { inputs } if json => format!("after {}", inputs.join(", ")),
            NodeState::Waiting { inputs } => format!("after {}", abbreviated(inputs, 4)),
            NodeState::Error(e) => e.clone(),
        };
        if json {
            let reasons = match state {
                NodeState::Stale { reasons, .. } => reasons.as_slice(),
                _ => &[],
            };
            let row = json!({
                "node": node,
                "state": state.label(),
                "detail": detail,
                "reasons": reasons,
                "after": waiting_on(state),
                "error": error_of(state),
            });
            println!("{row}");
        } else if !matches!(state, NodeState::Fresh { .. })
            || p.graph.nodes.len() <= 200
            || results_damage.is_some()
        {
            println!("{:<7} {node:<width$}  {detail}", state.label());
        }
    }
    if !json {
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("{} nodes: {}", p.graph.nodes.len(), parts.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn explain(p: &Planned, node: &str, json: bool) -> Result<ExitCode> {
    let Some(i) = p.graph.lookup(node) else {
        bail!(
            "{}",
            p.graph.select(&[node.to_string()]).err().unwrap_or_else(|| format!(
                "{node:?} is a stage, not a node; name one of its nodes (see `wormflow dag`)"
            ))
        );
    };
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let mask = p.graph.with_ancestors(&[i]);
    let states = resolver.states(Some(&mask));
    let state = states[i].as_ref().expect("resolved");
    let reasons = match state {
        NodeState::Stale { reasons, .. } => reasons.clone(),
        NodeState::Waiting { .. } => resolver.explain(i, None),
        _ => Vec::new(),
    };
    if json {
        let key = match state {
            NodeState::Fresh { key, .. } => Some(key.to_string()),
            NodeState::Stale { parts, .. } => Some(parts.key.to_string()),
            _ => None,
        };
        let doc = json!({
            "node": node,
            "state": state.label(),
            "key": key,
            "reasons": reasons,
            "after": waiting_on(state),
            "error": error_of(state),
        });
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    match state {
        NodeState::Fresh { key, .. } => println!("{node} is up to date (key {key})"),
        NodeState::Stale { parts, .. } => println!("{node} is stale (key {}):", parts.key.short()),
        NodeState::Waiting { inputs } => {
            println!("{node} waits on stale inputs: {}", inputs.join(", "))
        }
        NodeState::Error(e) => println!("{node}: {e}"),
    }
    for r in &reasons {
        println!("  - {r}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs a waiting node waits on (empty otherwise), for `--json`.
pub(super) fn waiting_on(state: &NodeState) -> &[String] {
    match state {
        NodeState::Waiting { inputs } => inputs,
        _ => &[],
    }
}

/// Why a node's key cannot be computed, for `--json`.
pub(super) fn error_of(state: &NodeState) -> Option<&str> {
    match state {
        NodeState::Error(e) => Some(e),
        _ => None,
    }
}
