//! `run` (and `run --dry-run`) and `exec`, what a Slurm job runs.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::{Executor, RunArgs};
use crate::exec::report::Reporter;
use crate::exec::slurm::Slurm;
use crate::exec::{run_local, RunOptions, RunSummary};
use crate::kinds::Registry;
use crate::stale::{in_words, StaleReason};
use crate::status::{NodeState, Resolver};
use crate::store::Store;
use crate::workspace::Planned;

pub fn run_once(
    p: &Planned,
    store: &Store,
    registry: &Registry,
    args: &RunArgs,
) -> Result<RunSummary> {
    let reporter = Reporter::with_verbosity(args.json, args.verbosity);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let pull = match (args.pull, &args.remote) {
        (true, name) => Some(Arc::new(p.remote(name.as_deref(), false)?)),
        (false, Some(_)) => {
            bail!("--remote names the remote for --pull; add --pull (or use `wormflow pull`)")
        }
        (false, None) => None,
    };
    let slurm = match args.executor {
        Executor::Slurm => Some(Slurm::new((*p.settings()?).clone(), &p.file, &p.overrides)?),
        Executor::Local => None,
    };
    // Overrides of where results are shared or jobs run change no result.
    let changes_results = |o: &String| !(o.starts_with("remotes.") || o.starts_with("slurm."));
    let show_results = args.results || !p.overrides.iter().any(changes_results);
    if !show_results {
        reporter.warn("--set: results are stored but not shown in results/ (which keeps showing the pipeline as its file says); add --results to show them");
    }
    let opts = RunOptions {
        jobs,
        keep_going: args.keep_going,
        targets: args.nodes.clone(),
        force: args.force.clone(),
        pull,
        slurm,
        pipeline: Some(p.file.clone()),
        group_max: args.group_max,
        show_results,
    };
    run_local(&p.graph, store, &p.workspace, registry, &opts, &reporter)
}

/// `wormflow exec KEY…`: run the node a Slurm job was submitted for (or the nodes of one
/// group, together), after checking that the pipeline still gives each the same key.
pub(super) fn exec_cmd(p: &Planned, registry: &Registry, keys: &[String]) -> Result<ExitCode> {
    let store = Store::open(&p.store_root)?;
    let _lock = store.lock_shared()?;
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut batch = Vec::new();
    for key in keys {
        batch.push(submitted_job(p, &store, &resolver, key, threads)?);
    }
    // JSON events into the job's output: the driver forwards the progress ones.
    let reporter = Reporter::new(true);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let helpers = wormflow_api::helper::HelperPool::new();
    let mut failed = None;
    // Each node reported as it is stored (the driver forwards the job's events).
    let mut settled = |i: usize, outcome: anyhow::Result<crate::exec::Outcome>| {
        let node = &p.graph.nodes[i].id;
        match outcome {
            Ok(crate::exec::Outcome::Ran(action, secs)) => reporter.done(node, &action, secs),
            Ok(
                crate::exec::Outcome::FoundStored(action) | crate::exec::Outcome::Pulled(action),
            ) => reporter.cached(node, &action.key, &action),
            Err(e) => {
                reporter.failed(node, None, &format!("{e:#}"));
                failed = Some(e);
            }
        }
    };
    let run = (&cancel, &helpers);
    crate::exec::execute_batch(&resolver, registry, &reporter, batch, run, None, &mut settled);
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The job `wormflow run --executor slurm` described under `key`, checked against the
/// pipeline as it is now.
fn submitted_job(
    p: &Planned,
    store: &Store,
    resolver: &Resolver,
    key: &str,
    threads: usize,
) -> Result<crate::exec::Job> {
    let key: crate::hash::Hash =
        key.parse().map_err(|_| anyhow!("{key:?} is not a node key (64 hex digits)"))?;
    let spec_path = crate::exec::slurm::job_file(store, &key, "json");
    let spec: crate::exec::slurm::JobSpec = serde_json::from_slice(
        &std::fs::read(&spec_path).with_context(|| format!("no job description at {}; `wormflow exec` runs nodes submitted by `run --executor slurm`", spec_path.display()))?,
    )
    .with_context(|| format!("{} is damaged", spec_path.display()))?;
    let &i = p.graph.index.get(&spec.node).ok_or_else(|| {
        anyhow!("node {} is no longer in {}; resubmit", spec.node, p.file.display())
    })?;
    let mut inputs = Vec::new();
    for (&j, k) in p.graph.inputs[i].iter().zip(&spec.inputs) {
        let action = store.cached_action(k).ok_or_else(|| {
            anyhow!(
                "{}: input {} (result {}) is not in the store {}; is it on a shared path?",
                spec.node,
                p.graph.nodes[j].id,
                k.short(),
                store.root.display()
            )
        })?;
        inputs.push((j, action));
    }
    let outs: Vec<_> = inputs.iter().map(|(_, a)| a.output_hash).collect();
    let parts = resolver.key(i, &outs)?;
    if parts.key != key {
        bail!("{}: the pipeline changed since this job was submitted (key {} now, {} then); nothing run", spec.node, parts.key.short(), key.short());
    }
    Ok(crate::exec::Job { index: i, threads, parts, force: spec.force, inputs })
}

pub fn exit_for(s: &RunSummary) -> ExitCode {
    if s.environment_failures > 0 {
        ExitCode::from(3)
    } else if s.failed > 0 || s.skipped > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The nodes `run` would run (stale, waiting, or forced), with every node's state.
fn would_run(
    p: &Planned,
    store: &Store,
    (nodes, force): (&[String], &[String]),
) -> Result<(Vec<usize>, Vec<Option<NodeState>>)> {
    let resolver = Resolver::new(&p.graph, store, &p.workspace);
    let mask = p.graph.targets(nodes).map_err(|e| anyhow!(e))?;
    let forced: HashSet<usize> =
        p.graph.select(force).map_err(|e| anyhow!(e))?.into_iter().collect();
    let states = resolver.states(Some(&mask));
    let would = (0..states.len())
        .filter(|&i| match &states[i] {
            Some(NodeState::Fresh { .. }) => forced.contains(&i),
            Some(_) => true,
            None => false,
        })
        .collect();
    Ok((would, states))
}

/// `--cost` (of `status`): what bringing the pipeline up to date would cost.
pub(super) fn cost_report(p: &Planned, registry: &Registry, json: bool) -> Result<()> {
    let store = Store::open_existing(&p.store_root);
    let (would, states) = would_run(p, &store, (&[], &[]))?;
    print_cost(p, registry, &store, (&states, &would), json);
    Ok(())
}

/// What the nodes `would` cost (`cost.rs`), printed or as one JSON event.
fn print_cost(
    p: &Planned,
    registry: &Registry,
    store: &Store,
    (states, would): (&[Option<NodeState>], &[usize]),
    json: bool,
) {
    let stages = crate::cost::estimate(&p.graph, registry, store, states, would);
    if json {
        println!("{}", json!({"event": "cost", "stages": stages}));
    } else {
        crate::cost::print(&stages);
    }
}

pub(super) fn dry_run_report(
    p: &Planned,
    registry: &Registry,
    args: &RunArgs,
    cost: bool,
) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let (would, states) = would_run(p, &store, (&args.nodes, &args.force))?;
    for &i in &would {
        let state = states[i].as_ref().expect("a node that would run has a state");
        let node = &p.graph.nodes[i].id;
        let (reasons, words) = match state {
            // A fresh node runs only when forced.
            NodeState::Fresh { .. } => (vec![StaleReason::Forced], StaleReason::Forced.to_string()),
            NodeState::Stale { reasons, .. } => (reasons.clone(), in_words(reasons)),
            NodeState::Waiting { inputs } => (
                Vec::new(),
                format!("may run after {} (runs only if their output changes)", inputs.join(", ")),
            ),
            NodeState::Error(e) => (Vec::new(), format!("error: {e}")),
        };
        if args.json {
            let event = json!({
                "event": "would-run",
                "node": node,
                "state": state.label(),
                "reasons": reasons,
                "after": super::status::waiting_on(state),
                "error": super::status::error_of(state),
            });
            println!("{event}");
        } else {
            println!("would run {node}: {words}");
        }
    }
    if !args.json {
        println!("{} of {} nodes would run", would.len(), states.iter().flatten().count());
    }
    if cost {
        print_cost(p, registry, &store, (&states, &would), args.json);
    }
    Ok(ExitCode::SUCCESS)
}
