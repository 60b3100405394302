//! `wormflow push` and `wormflow pull`: move a pipeline's results between the local store
//! and a remote.

use std::path::Path;

use anyhow::{anyhow, Result};

use crate::graph::Graph;
use crate::hash::Hash;
use crate::listing::abbreviated;
use crate::remote::{Direction, Remote, Transfer};
use crate::status::{NodeState, Resolver};
use crate::store::Store;

/// Push the current results of the selected nodes (with everything they need: a node's key
/// cannot be computed without its inputs' outputs). Nodes not built here are listed.
pub fn push(
    graph: &Graph,
    store: &Store,
    workspace: &Path,
    remote: &Remote,
    nodes: &[String],
) -> Result<()> {
    let mask = graph.targets(nodes).map_err(|e| anyhow!(e))?;
    let _lock = store.lock_shared()?;
    let resolver = Resolver::new(graph, store, workspace);
    let mut records = Vec::new();
    let mut not_built = Vec::new();
    for (i, state) in resolver.states(Some(&mask)).into_iter().enumerate() {
        match state {
            Some(NodeState::Fresh { action, .. }) => records.push(*action),
            Some(_) => not_built.push(graph.nodes[i].id.clone()),
            None => {}
        }
    }
    let transfer = Transfer::new(Direction::Push, &remote.name);
    remote.push(store, &records, &transfer)?;
    eprintln!("{}", transfer.summary(&remote.name));
    if !not_built.is_empty() {
        eprintln!(
            "not pushed: {} nodes have no current result here (run them first): {}",
            not_built.len(),
            abbreviated(&not_built, 5)
        );
    }
    Ok(())
}

/// Pull whatever the remote has for the selected nodes, in dependency order, and say which
/// nodes it did not have.
///
/// Works in waves: every node whose inputs are settled is keyed, the remote is asked for
/// all their records at once, and all their objects are fetched together.
pub fn pull(
    graph: &Graph,
    store: &Store,
    workspace: &Path,
    remote: &Remote,
    nodes: &[String],
) -> Result<()> {
    let mask = graph.targets(nodes).map_err(|e| anyhow!(e))?;
    let _lock = store.lock_shared()?;
    let resolver = Resolver::new(graph, store, workspace);
    let transfer = Transfer::new(Direction::Pull, &remote.name);
    let n = graph.nodes.len();
    let mut outputs: Vec<Option<Hash>> = vec![None; n];
    let mut settled: Vec<bool> = mask.iter().map(|m| !m).collect();
    let mut missing = Vec::new();
    loop {
        let wave: Vec<usize> = (0..n)
            .filter(|&i| !settled[i] && graph.inputs[i].iter().all(|&j| settled[j]))
            .collect();
        if wave.is_empty() {
            break;
        }
        let mut ask = Vec::new();
        for &i in &wave {
            settled[i] = true;
            let Some(inputs) =
                graph.inputs[i].iter().map(|&j| outputs[j]).collect::<Option<Vec<Hash>>>()
            else {
                missing.push(graph.nodes[i].id.clone());
                continue;
            };
            let key = resolver.key(i, &inputs)?.key;
            match store.cached_action(&key) {
                Some(action) => {
                    relink(workspace, store, &graph.nodes[i], &action);
                    outputs[i] = Some(action.output_hash);
                }
                None => ask.push((i, key)),
            }
        }
        let keys: Vec<Hash> = ask.iter().map(|(_, k)| *k).collect();
        let found = remote.actions(&keys)?;
        let records: Vec<_> = found.iter().flatten().cloned().collect();
        remote.pull(store, &records, &transfer)?;
        for ((i, _), rec) in ask.iter().zip(found) {
            match rec {
                Some(action) => {
                    relink(workspace, store, &graph.nodes[*i], &action);
                    outputs[*i] = Some(action.output_hash);
                }
                None => missing.push(graph.nodes[*i].id.clone()),
            }
        }
    }
    resolver.save_stat_cache();
    eprintln!("{}", transfer.summary(&remote.name));
    if !missing.is_empty() {
        eprintln!(
            "{} nodes are not on {} (or need nodes that are not): {}",
            missing.len(),
            remote.name,
            abbreviated(&missing, 5)
        );
    }
    Ok(())
}

fn relink(
    workspace: &Path,
    store: &Store,
    node: &crate::graph::NodeRecipe,
    action: &crate::store::ActionRecord,
) {
    for w in crate::results::show(workspace, store, node, action) {
        eprintln!("warning: {}: {w}", node.id);
    }
}
