//! Executors. Ready nodes run on a pool of threads in this process, or — with
//! `--executor slurm` — as Slurm jobs (`slurm.rs`), except kinds marked `local`.
//! With a remote (`run --pull`), a node whose result the remote has is fetched, not run.

pub mod command;
pub mod report;
pub mod slurm;
mod workdir;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};
use serde_json::{Map, Value};

use crate::graph::Graph;
use crate::hash::Hash;
use crate::kinds::{Registry, StageContext};
use crate::remote::Remote;
use crate::status::{KeyParts, Resolver};
use crate::store::{output_tree_hash, ActionRecord, Store};
use report::Reporter;

pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    /// Node ids or stage names; empty = the whole pipeline.
    pub targets: Vec<String>,
    /// Node ids or stage names to rerun even if a result is stored.
    pub force: Vec<String>,
    /// Fetch a node's result from this remote, when it has one, instead of running it.
    pub pull: Option<Arc<Remote>>,
    /// Submit nodes to Slurm instead of running them here.
    pub slurm: Option<slurm::Slurm>,
}

/// Set by Ctrl-C: stop starting nodes, cancel running ones (and their Slurm jobs).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Fetched from the remote (`run --pull`) instead of run.
    pub pulled: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    Running,
    Done,
    Failed,
}

/// What a worker (or a Slurm job) hands back for one node.
pub enum Outcome {
    Ran(ActionRecord, f64),
    /// Another process stored the result while this one waited for the key's lock.
    FoundStored(ActionRecord),
    /// The remote had it.
    Pulled(ActionRecord),
}

pub struct Job {
    pub index: usize,
    /// Threads the node may use.
    pub threads: usize,
    pub parts: KeyParts,
    pub force: bool,
    pub inputs: Vec<(usize, ActionRecord)>,
}

/// Run the selected part of the graph, each stale node once, in dependency order.
pub fn run_local(
    graph: &Graph,
    store: &Store,
    workspace: &Path,
    registry: &Registry,
    opts: &RunOptions,
    reporter: &Reporter,
) -> Result<RunSummary> {
    let n = graph.nodes.len();
    let mask = if opts.targets.is_empty() {
        vec![true; n]
    } else {
        graph.with_ancestors(&graph.select(&opts.targets).map_err(|e| anyhow!(e))?)
    };
    let mut forced = vec![false; n];
    for i in graph.select(&opts.force).map_err(|e| anyhow!(e))? {
        forced[i] = true;
    }
    let _store_lock = store.lock_shared()?;
    let resolver = Resolver::new(graph, store, workspace);
    let total = mask.iter().filter(|m| **m).count();
    reporter.begin(total);

    let mut slots = vec![Slot::Pending; n];
    let mut results: Vec<Option<ActionRecord>> = vec![None; n];
    let mut missing_inputs: Vec<usize> = (0..n).map(|i| graph.inputs[i].len()).collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| mask[i] && missing_inputs[i] == 0).collect();
    let mut summary = RunSummary::default();
    let mut stopping = false;
    let mut running = 0usize;
    let cancel = AtomicBool::new(false);
    let monitor_stop = AtomicBool::new(false);

    // One queue shared by the workers (std's receiver is single-consumer, hence the mutex).
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Outcome>)>();

    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..opts.jobs.max(1) {
            let done_tx = done_tx.clone();
            let (resolver, cancel, job_rx) = (&resolver, &cancel, &job_rx);
            let pull = opts.pull.as_deref();
            scope.spawn(move || {
                while let Ok(job) = { let rx = job_rx.lock().expect("job queue lock"); rx.recv() } {
                    let i = job.index;
                    let outcome = execute(resolver, registry, reporter, job, cancel, pull);
                    if done_tx.send((i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(slurm) = &opts.slurm {
            let (done_tx, monitor_stop) = (done_tx.clone(), &monitor_stop);
            scope.spawn(move || slurm.monitor(store, reporter, &done_tx, monitor_stop));
        }
        drop(done_tx);
        let capacity = match &opts.slurm {
            Some(s) => s.max_jobs(),
            None => opts.jobs.max(1),
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let local_threads = (cores / opts.jobs.max(1)).max(1);

        let mark_done = |i: usize,
                         action: ActionRecord,
                         slots: &mut Vec<Slot>,
                         results: &mut Vec<Option<ActionRecord>>,
                         missing: &mut Vec<usize>,
                         ready: &mut VecDeque<usize>| {
            slots[i] = Slot::Done;
            crate::results::link(workspace, store, &action);
            results[i] = Some(action);
            for &d in &graph.dependents[i] {
                missing[d] -= 1;
                if missing[d] == 0 && mask[d] {
                    ready.push_back(d);
                }
            }
        };

        let result = (|| -> Result<()> { loop {
            if INTERRUPTED.load(Ordering::Relaxed) && !stopping {
                stopping = true;
                cancel.store(true, Ordering::Relaxed);
                if let Some(slurm) = &opts.slurm {
                    slurm.cancel_all();
                }
            }
            while !stopping && running < capacity {
                let Some(i) = ready.pop_front() else { break };
                let node = &graph.nodes[i];
                let input_actions: Vec<(usize, ActionRecord)> =
                    graph.inputs[i].iter().map(|&j| (j, results[j].clone().expect("inputs are done"))).collect();
                let outs: Vec<Hash> = input_actions.iter().map(|(_, a)| a.output_hash).collect();
                let parts = match resolver.key(i, &outs) {
                    Ok(p) => p,
                    Err(e) => {
                        slots[i] = Slot::Failed;
                        summary.failed += 1;
                        reporter.failed(&node.id, None, &format!("{e:#}"));
                        stopping |= !opts.keep_going;
                        continue;
                    }
                };
                if !forced[i] {
                    if let Some(action) = store.cached_action(&parts.key) {
                        summary.cached += 1;
                        reporter.cached(&node.id, &parts.key, &action);
                        mark_done(i, action, &mut slots, &mut results, &mut missing_inputs, &mut ready);
                        continue;
                    }
                }
                slots[i] = Slot::Running;
                running += 1;
                let job = Job { index: i, threads: local_threads, parts, force: forced[i], inputs: input_actions };
                match &opts.slurm {
                    Some(slurm) if !slurm.runs_locally(&node.kind) => {
                        if let Err(e) = slurm.submit(graph, store, job, reporter) {
                            running -= 1;
                            slots[i] = Slot::Failed;
                            summary.failed += 1;
                            reporter.failed(&node.id, None, &format!("{e:#}"));
                            stopping |= !opts.keep_going;
                        }
                    }
                    _ => job_tx.send(job).expect("workers are alive"),
                }
            }
            if running == 0 {
                break;
            }
            let (i, outcome) = match done_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(x) => x,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("workers outlive the loop"),
            };
            running -= 1;
            let node = &graph.nodes[i];
            match outcome {
                Ok(Outcome::Ran(action, secs)) => {
                    summary.ran += 1;
                    reporter.done(&node.id, &action, secs);
                    mark_done(i, action, &mut slots, &mut results, &mut missing_inputs, &mut ready);
                }
                Ok(Outcome::FoundStored(action)) => {
                    summary.cached += 1;
                    reporter.cached(&node.id, &action.key, &action);
                    mark_done(i, action, &mut slots, &mut results, &mut missing_inputs, &mut ready);
                }
                Ok(Outcome::Pulled(action)) => {
                    summary.pulled += 1;
                    reporter.pulled(&node.id, &action);
                    mark_done(i, action, &mut slots, &mut results, &mut missing_inputs, &mut ready);
                }
                Err(e) => {
                    slots[i] = Slot::Failed;
                    summary.failed += 1;
                    reporter.failed(&node.id, None, &format!("{e:#}"));
                    stopping |= !opts.keep_going;
                }
            }
        }
        Ok(())
        })();
        monitor_stop.store(true, Ordering::Relaxed);
        drop(job_tx);
        result
    })?;
    resolver.save_stat_cache();

    for i in 0..n {
        if mask[i] && slots[i] == Slot::Pending {
            summary.skipped += 1;
            let failed_up: Vec<&str> = graph.inputs[i]
                .iter()
                .filter(|&&j| slots[j] != Slot::Done)
                .map(|&j| graph.nodes[j].id.as_str())
                .collect();
            let why = if failed_up.is_empty() {
                "not started after a failure (use --keep-going to run independent nodes)".to_string()
            } else {
                format!("input {} did not finish", failed_up.join(", "))
            };
            reporter.skipped(&graph.nodes[i].id, &why);
        }
    }
    reporter.finish(&summary);
    Ok(summary)
}

/// Run one node in a fresh work directory and store its outputs; nothing is stored on error.
pub fn execute(resolver: &Resolver, registry: &Registry, reporter: &Reporter, job: Job, cancel: &AtomicBool, pull: Option<&Remote>) -> Result<Outcome> {
    let graph = resolver.graph;
    let store = resolver.store;
    let node = &graph.nodes[job.index];
    let _key_lock = store.lock_key(&job.parts.key)?;
    if !job.force {
        if let Some(action) = store.cached_action(&job.parts.key) {
            return Ok(Outcome::FoundStored(action));
        }
        if let Some(remote) = pull {
            match remote.fetch(store, &job.parts.key) {
                Ok(Some(action)) => return Ok(Outcome::Pulled(action)),
                Ok(None) => {}
                // A remote that cannot serve the result is no reason not to compute it.
                Err(e) => reporter.warn(&format!("{}: not pulled ({e:#}); running it here", node.id)),
            }
        }
    }
    let kind = registry.get(&node.kind).ok_or_else(|| anyhow!("{}: unknown kind {:?}", node.id, node.kind))?;
    reporter.start(&node.id, &job.parts.key);
    let started = SystemTime::now();
    let clock = Instant::now();
    let work = workdir::WorkDir::create(store)?;
    let inputs = work.materialize_inputs(store, graph, node, &job.inputs)?;
    let progress = |fraction: f64, message: &str| reporter.progress(&node.id, fraction, message);
    // Each running node gets its share of the cores, so parallel nodes do not oversubscribe
    // the CPU (libtorch's spinning thread pools degrade badly when they do).
    let threads = job.threads.max(1);
    let ctx = StageContext {
        node: &node.id,
        params: &node.params,
        inputs: &inputs,
        out_dir: &work.out,
        workspace: &resolver.workspace,
        scratch: &work.scratch,
        threads,
        cancel,
        progress: &progress,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run(&ctx)))
        .unwrap_or_else(|panic| {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(anyhow!("{}: the stage panicked: {}", node.id, msg.unwrap_or_default()))
        });
    work.keep_log(store, &node.id);
    let stage_provenance = result?;
    let outputs = work.ingest_outputs(store, &node.id, kind.allows_empty_output(&node.params))?;
    let seconds = clock.elapsed().as_secs_f64();
    let action = ActionRecord {
        schema: 1,
        node: node.id.clone(),
        key: job.parts.key,
        kind: node.kind.clone(),
        stage_version: node.version.clone(),
        params: node.params.clone(),
        inputs: job.parts.inputs,
        deps: job.parts.deps,
        output_hash: output_tree_hash(&outputs),
        outputs,
        provenance: provenance(started, seconds, threads, stage_provenance),
    };
    store.write_action(&action)?;
    Ok(Outcome::Ran(action, seconds))
}

fn provenance(started: SystemTime, seconds: f64, threads: usize, stage: Map<String, Value>) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("wormflow_version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    p.insert("host".into(), Value::from(hostname()));
    p.insert("started".into(), Value::from(humantime::format_rfc3339_seconds(started).to_string()));
    p.insert("seconds".into(), Value::from((seconds * 1000.0).round() / 1000.0));
    p.insert("threads".into(), Value::from(threads));
    p.extend(stage);
    p
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}
