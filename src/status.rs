//! Keys and freshness: from a planned node, the store and the outputs of its inputs, the
//! node's key, whether a result for it is stored, and why not (`StaleReason`).
//!
//! What enters a node's key (`Resolver::key`, over `NodeRecipe::recipe_hash`, graph.rs):
//!
//! | enters the key                                   | how                                  |
//! |--------------------------------------------------|--------------------------------------|
//! | the stage kind's name                            | recipe hash                          |
//! | the kind's code version: every source file its   | recipe hash (`StageKind::version`,   |
//! | module reaches across the workspace crates, the  | derived at build time by             |
//! | data files they `include_*`, the templates, and  | stages/code_closure.rs; `command`:   |
//! | the locked versions (Cargo.lock) of the crates   | a hand-bumped `command-N`)           |
//! | they use and of everything those depend on       |                                      |
//! | the resolved params (defaults merged, canonical  | recipe hash                          |
//! | JSON: key order and `1.0` vs `1` do not matter)  |                                      |
//! | which stage and nodes each input comes from,     | recipe hash                          |
//! | single or gathered, in order                     |                                      |
//! | the names of the file deps (`command` `deps`)    | recipe hash                          |
//! | the contents of the file deps                    | blake3 of the bytes (stat-cached)    |
//! | the outputs of every input node                  | their output tree hash               |
//!
//! What does not: the node's matrix coordinates as such (they reach the key only through the
//! params they set), the stage's name for a node whose recipe another stage shares, the
//! wormflow version outside the kinds' code, the rustc version, the machine, threads (`-j`),
//! the executor (local or Slurm), the store's location, remotes, wall-clock time, and the
//! workspace path. Results therefore move between machines and teammates.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use serde_json::Value;

use crate::graph::{Graph, NodeRecipe};
use crate::hash::{Hash, Hasher, StatCache};
use crate::stale::{CodeChange, StaleReason};
use crate::store::{ActionRecord, DepRecord, InputRecord, Store};

/// Everything a node's key is made of, for hashing and for explaining.
#[derive(Debug, Clone)]
pub struct KeyParts {
    pub key: Hash,
    pub inputs: Vec<InputRecord>,
    pub deps: Vec<DepRecord>,
}

/// Where a node stands.
#[derive(Debug, Clone)]
pub enum NodeState {
    /// A result for the current key is stored and intact.
    Fresh { key: Hash, action: Box<ActionRecord> },
    /// The key is known and nothing valid is stored for it.
    Stale { parts: KeyParts, reasons: Vec<StaleReason> },
    /// The key depends on inputs that must run first.
    Waiting { inputs: Vec<String> },
    /// The key cannot be computed (e.g. a dependency file is missing).
    Error(String),
}

impl NodeState {
    pub fn label(&self) -> &'static str {
        match self {
            NodeState::Fresh { .. } => "fresh",
            NodeState::Stale { .. } => "stale",
            NodeState::Waiting { .. } => "waiting",
            NodeState::Error(_) => "error",
        }
    }
}

/// Computes keys against one store; shares a stat cache for files outside the store.
pub struct Resolver<'a> {
    pub graph: &'a Graph,
    pub store: &'a Store,
    pub workspace: PathBuf,
    stat_cache: Mutex<StatCache>,
}

impl<'a> Resolver<'a> {
    pub fn new(graph: &'a Graph, store: &'a Store, workspace: &Path) -> Self {
        let stat_cache = Mutex::new(StatCache::load(&store.root.join("statcache.json")));
        Resolver { graph, store, workspace: workspace.to_path_buf(), stat_cache }
    }

    pub fn save_stat_cache(&self) {
        self.stat_cache
            .lock()
            .expect("stat cache lock")
            .save(&self.store.root.join("statcache.json"));
    }

    /// The key of node `i`, given the output hashes of its inputs (in `graph.inputs[i]` order).
    pub fn key(&self, i: usize, input_outputs: &[Hash]) -> Result<KeyParts> {
        let node = &self.graph.nodes[i];
        let mut deps = Vec::new();
        for d in &node.deps {
            // A directory or glob enters the key file by file: a file added, removed or
            // changed under it changes the key.
            let files = if wormflow_api::local::is_multi(&self.workspace, d) {
                wormflow_api::local::expand(&self.workspace, d)
                    .map_err(|e| anyhow!("{}: {e}; fix the path in its params", node.id))?
                    .into_iter()
                    .map(|f| f.path)
                    .collect()
            } else {
                vec![d.clone()]
            };
            for f in files {
                let path = self.workspace.join(&f);
                let hash = self.stat_cache.lock().expect("stat cache lock").hash(&path).map_err(|e| {
                    anyhow!("{}: depends on the file {f:?} ({}), which cannot be read: {e}; create the file or fix the path in its params", node.id, path.display())
                })?;
                deps.push(DepRecord { path: f, hash });
            }
        }
        let inputs: Vec<InputRecord> = self.graph.inputs[i]
            .iter()
            .zip(input_outputs)
            .map(|(&j, h)| {
                let up = &self.graph.nodes[j];
                InputRecord { stage: up.stage.clone(), node: up.id.clone(), output_hash: *h }
            })
            .collect();
        let mut h = Hasher::new("wormflow-key-1");
        h.hash(&node.recipe_hash);
        for d in &deps {
            h.field(&d.path).hash(&d.hash);
        }
        for inp in &inputs {
            h.field(&inp.node).hash(&inp.output_hash);
        }
        Ok(KeyParts { key: h.finish(), inputs, deps })
    }

    /// The state of every node (`mask` limits which are looked at), in graph order. Nodes
    /// of one depth (longest path from a root) do not depend on each other, so each depth
    /// is resolved in parallel: the work is a record read and a few `stat`s per node.
    pub fn states(&self, mask: Option<&[bool]>) -> Vec<Option<NodeState>> {
        use rayon::prelude::*;
        let n = self.graph.nodes.len();
        let mut depth = vec![0usize; n];
        for i in 0..n {
            // Inputs come before their dependents in graph order.
            depth[i] = self.graph.inputs[i].iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
        }
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for i in (0..n).filter(|&i| mask.is_none_or(|m| m[i])) {
            if levels.len() <= depth[i] {
                levels.resize(depth[i] + 1, Vec::new());
            }
            levels[depth[i]].push(i);
        }
        let mut states: Vec<Option<NodeState>> = vec![None; n];
        for level in levels {
            let resolved: Vec<(usize, NodeState)> =
                level.par_iter().map(|&i| (i, self.state_given(i, &states))).collect();
            for (i, state) in resolved {
                states[i] = Some(state);
            }
        }
        states
    }

    /// The state of node `i` given its inputs' states.
    fn state_given(&self, i: usize, states: &[Option<NodeState>]) -> NodeState {
        let mut outs = Vec::new();
        let mut waiting = Vec::new();
        for &j in &self.graph.inputs[i] {
            match &states[j] {
                Some(NodeState::Fresh { action, .. }) => outs.push(action.output_hash),
                _ => waiting.push(self.graph.nodes[j].id.clone()),
            }
        }
        if waiting.is_empty() {
            self.state_with_inputs(i, &outs)
        } else {
            NodeState::Waiting { inputs: waiting }
        }
    }

    /// The state of node `i` once its inputs' outputs are known.
    pub fn state_with_inputs(&self, i: usize, input_outputs: &[Hash]) -> NodeState {
        match self.key(i, input_outputs) {
            Err(e) => NodeState::Error(format!("{e:#}")),
            Ok(parts) => match self.store.cached_action(&parts.key) {
                Some(action) => NodeState::Fresh { key: parts.key, action: Box::new(action) },
                None => {
                    let reasons = self.explain(i, Some(&parts));
                    NodeState::Stale { parts, reasons }
                }
            },
        }
    }

    /// The node's result for its current key if stored (true), else its latest stored
    /// result (false), else None.
    pub fn current_or_latest(
        &self,
        i: usize,
        state: Option<&NodeState>,
    ) -> Option<(ActionRecord, bool)> {
        match state {
            Some(NodeState::Fresh { action, .. }) => Some(((**action).clone(), true)),
            _ => self.store.latest_action(&self.graph.nodes[i].id).map(|a| (a, false)),
        }
    }

    /// What differs between the node's current recipe and its last stored result.
    pub fn explain(&self, i: usize, parts: Option<&KeyParts>) -> Vec<StaleReason> {
        let node = &self.graph.nodes[i];
        let Some(last) = self.store.latest_action(&node.id) else {
            return vec![StaleReason::NeverBuilt];
        };
        if let Some(p) = parts {
            if p.key == last.key {
                return vec![StaleReason::OutputDamaged];
            }
        }
        describe_changes(node, parts, &last)
    }
}

fn describe_changes(
    node: &NodeRecipe,
    parts: Option<&KeyParts>,
    last: &ActionRecord,
) -> Vec<StaleReason> {
    let mut reasons = Vec::new();
    if node.kind != last.kind {
        reasons.push(StaleReason::KindChanged { from: last.kind.clone(), to: node.kind.clone() });
    } else if node.version != last.stage_version {
        reasons.push(StaleReason::CodeChanged {
            kind: node.kind.clone(),
            from: last.stage_version.clone(),
            to: node.version.clone(),
            changes: CodeChange::between(&last.code, &node.code),
        });
    }
    let mut before = Vec::new();
    let mut after = Vec::new();
    flatten("params", &last.params, &mut before);
    flatten("params", &node.params, &mut after);
    for (path, old) in &before {
        match after.iter().find(|(p, _)| p == path) {
            Some((_, new)) if new != old => reasons.push(StaleReason::ParamChanged {
                param: path.clone(),
                from: old.clone(),
                to: new.clone(),
            }),
            None => {
                reasons.push(StaleReason::ParamRemoved { param: path.clone(), was: old.clone() })
            }
            _ => {}
        }
    }
    for (path, new) in &after {
        if !before.iter().any(|(p, _)| p == path) {
            reasons.push(StaleReason::ParamAdded { param: path.clone(), value: new.clone() });
        }
    }
    let last_nodes: Vec<&str> = last.inputs.iter().map(|r| r.node.as_str()).collect();
    let now_nodes: Vec<&str> =
        node.inputs.iter().flat_map(|r| r.nodes.iter().map(String::as_str)).collect();
    if last_nodes != now_nodes {
        let listed = |of: &[&str], not_in: &[&str]| -> Vec<String> {
            of.iter().filter(|n| !not_in.contains(n)).map(|n| n.to_string()).collect()
        };
        let added = listed(&now_nodes, &last_nodes);
        let removed = listed(&last_nodes, &now_nodes);
        if added.is_empty() && removed.is_empty() {
            reasons.push(StaleReason::InputsReordered);
        } else {
            reasons.push(StaleReason::InputsChanged { added, removed });
        }
    }
    match parts {
        Some(p) => {
            for inp in &p.inputs {
                if let Some(old) = last.inputs.iter().find(|r| r.node == inp.node) {
                    if old.output_hash != inp.output_hash {
                        reasons.push(StaleReason::InputChanged { node: inp.node.clone() });
                    }
                }
            }
            for d in &p.deps {
                match last.deps.iter().find(|r| r.path == d.path) {
                    Some(old) if old.hash != d.hash => {
                        reasons.push(StaleReason::FileChanged { path: d.path.clone() })
                    }
                    None => reasons.push(StaleReason::FileAdded { path: d.path.clone() }),
                    _ => {}
                }
            }
            for old in &last.deps {
                if !p.deps.iter().any(|d| d.path == old.path) {
                    reasons.push(StaleReason::FileRemoved { path: old.path.clone() });
                }
            }
        }
        None => reasons.push(StaleReason::InputsRunFirst),
    }
    if reasons.is_empty() {
        reasons.push(StaleReason::Unrecorded);
    }
    reasons
}

/// `prefix.a.b value` pairs for every leaf of a JSON value.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
