//! `run -n --cost` and `status --cost`: what the nodes that would run cost, by stage and in
//! total, before anything runs. A kind that models its own cost (`StageKind::estimate`:
//! train) gives each node's figure; any other kind is estimated from the store's history —
//! the median seconds of its stored runs — or, with no history, is listed as not estimated.
//! Every figure says where it came from.

use std::collections::BTreeMap;

use serde::Serialize;
use wormflow_api::cost::{CostInput, Estimate, Hardware, StoredOutputs};

use crate::graph::Graph;
use crate::kinds::Registry;
use crate::status::NodeState;
use crate::store::Store;

/// Where a node's figure came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Source {
    /// The kind's own model (`StageKind::estimate`).
    Model,
    /// The median of this many stored runs of the kind.
    History { runs: usize },
    /// Neither: the kind has no model and the store no run of it.
    Unknown,
}

/// One stage's share of what would run.
#[derive(Debug, Clone, Serialize)]
pub struct StageCost {
    pub stage: String,
    pub kind: String,
    pub nodes: usize,
    /// Estimated device-seconds by hardware, of the nodes that have a figure.
    pub cpu_seconds: f64,
    pub gpu_seconds: f64,
    /// Nodes without a figure.
    pub unknown: usize,
    pub source: Source,
    /// The first node's basis, as an example of how the figures were made.
    pub basis: String,
    /// Every distinct assumption made for the stage's nodes.
    pub assumptions: Vec<String>,
}

/// Seconds of stored runs of each kind, from every record in the store, and the hardware
/// they ran on (a CUDA device in their provenance, else the CPU).
fn history(store: &Store) -> BTreeMap<String, Vec<(f64, Hardware)>> {
    let mut by_kind: BTreeMap<String, Vec<(f64, Hardware)>> = BTreeMap::new();
    for (_, record) in store.all_actions() {
        let Ok(a) = record else { continue };
        let Some(seconds) = a.provenance.get("seconds").and_then(|s| s.as_f64()) else { continue };
        let gpu = a
            .provenance
            .get("device")
            .and_then(|d| d.as_str())
            .is_some_and(|d| d.starts_with("cuda"));
        by_kind
            .entry(a.kind)
            .or_default()
            .push((seconds, if gpu { Hardware::Gpu } else { Hardware::Cpu }));
    }
    by_kind
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The cost of running `nodes` (indices into `graph`), by stage in graph order.
pub fn estimate(
    graph: &Graph,
    registry: &Registry,
    store: &Store,
    states: &[Option<NodeState>],
    nodes: &[usize],
) -> Vec<StageCost> {
    let past = history(store);
    let mut stages: Vec<StageCost> = Vec::new();
    for &i in nodes {
        let node = &graph.nodes[i];
        let stored: Vec<Option<StoredOutputs>> = graph.inputs[i]
            .iter()
            .map(|&j| match &states[j] {
                Some(NodeState::Fresh { action, .. }) => Some(StoredOutputs(
                    action
                        .outputs
                        .iter()
                        .map(|f| (f.path.clone(), store.object_path(&f.hash)))
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        let inputs: Vec<CostInput> = graph.inputs[i]
            .iter()
            .zip(&stored)
            .map(|(&j, dir)| CostInput {
                stage: &graph.nodes[j].stage,
                kind: &graph.nodes[j].kind,
                params: &graph.nodes[j].params,
                stored: dir.as_ref(),
            })
            .collect();
        let modelled = registry.get(&node.kind).and_then(|k| k.estimate(&node.params, &inputs));
        let (estimate, source): (Option<Estimate>, Source) = match modelled {
            Some(e) => (Some(e), Source::Model),
            None => match past.get(&node.kind) {
                Some(runs) if !runs.is_empty() => {
                    let gpu = runs.iter().filter(|r| r.1 == Hardware::Gpu).count();
                    let hardware = if 2 * gpu > runs.len() { Hardware::Gpu } else { Hardware::Cpu };
                    let seconds = median(runs.iter().map(|r| r.0).collect());
                    let basis = format!("the median of {} stored {} runs", runs.len(), node.kind);
                    let e = Estimate { seconds, hardware, basis, assumptions: Vec::new() };
                    (Some(e), Source::History { runs: runs.len() })
                }
                _ => (None, Source::Unknown),
            },
        };
        if stages.last().is_none_or(|s| s.stage != node.stage) {
            stages.push(StageCost {
                stage: node.stage.clone(),
                kind: node.kind.clone(),
                nodes: 0,
                cpu_seconds: 0.0,
                gpu_seconds: 0.0,
                unknown: 0,
                basis: estimate.as_ref().map(|e| e.basis.clone()).unwrap_or_default(),
                source,
                assumptions: Vec::new(),
            });
        }
        let s = stages.last_mut().expect("pushed");
        s.nodes += 1;
        match estimate {
            Some(e) => {
                match e.hardware {
                    Hardware::Cpu => s.cpu_seconds += e.seconds,
                    Hardware::Gpu => s.gpu_seconds += e.seconds,
                }
                for a in e.assumptions {
                    if !s.assumptions.contains(&a) {
                        s.assumptions.push(a);
                    }
                }
            }
            None => s.unknown += 1,
        }
    }
    stages
}

fn hours(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if seconds < 3600.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The table `--cost` prints: one line per stage, the total, then how and what was assumed.
pub fn print(stages: &[StageCost]) {
    let width = stages.iter().map(|s| s.stage.len()).max().unwrap_or(5).max(5);
    println!("{:<width$}  {:>5}  {:>10}  {:>10}  from", "stage", "nodes", "CPU", "GPU");
    let (mut cpu, mut gpu, mut unknown) = (0.0, 0.0, 0);
    for s in stages {
        let from = match &s.source {
            Source::Model => format!("{}'s cost model", s.kind),
            Source::History { runs } => format!("history ({runs} runs)"),
            Source::Unknown => "not estimated (no model, no stored run)".into(),
        };
        let cell = |x: f64| if x > 0.0 { hours(x) } else { "-".into() };
        let partly = if s.unknown > 0 && s.unknown < s.nodes {
            format!("; {} nodes not estimated", s.unknown)
        } else {
            String::new()
        };
        println!(
            "{:<width$}  {:>5}  {:>10}  {:>10}  {from}{partly}",
            s.stage,
            s.nodes,
            cell(s.cpu_seconds),
            cell(s.gpu_seconds)
        );
        cpu += s.cpu_seconds;
        gpu += s.gpu_seconds;
        unknown += s.unknown;
    }
    println!(
        "{:<width$}  {:>5}  {:>10}  {:>10}  ({:.2} CPU core-hours, a thread per node; {:.2} GPU-hours, a node at a time{})",
        "total",
        stages.iter().map(|s| s.nodes).sum::<usize>(),
        hours(cpu),
        hours(gpu),
        cpu / 3600.0,
        gpu / 3600.0,
        if unknown > 0 { format!("; {unknown} nodes not estimated") } else { String::new() }
    );
    for s in stages.iter().filter(|s| !s.basis.is_empty() || !s.assumptions.is_empty()) {
        if !s.basis.is_empty() {
            println!("  {}: e.g. {}", s.stage, s.basis);
        }
        for a in &s.assumptions {
            println!("  {}: assumed: {a}", s.stage);
        }
    }
}
