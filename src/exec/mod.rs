//! Executors. Ready nodes run on a pool of threads in this process, or — with
//! `--executor slurm` — as Slurm jobs (`slurm.rs`), except kinds marked `local`.
//! With a remote (`run --pull`), a node whose result the remote has is fetched, not run.

pub mod command;
mod node_log;
pub mod report;
mod schedule;
pub mod slurm;
mod workdir;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde_json::{Map, Value};

use crate::graph::Graph;
use crate::kinds::{Registry, StageContext};
use crate::remote::Remote;
use crate::status::{KeyParts, Resolver};
use crate::store::{output_tree_hash, ActionRecord, Store};
use report::Reporter;
use schedule::Schedule;

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
    /// The pipeline file, whose reach is recorded in the store's roots for `gc`.
    pub pipeline: Option<std::path::PathBuf>,
    /// The most nodes of one group (nodes whose kind may run them at once, e.g. models
    /// trained as one stack) in one batch; 1 turns grouping off.
    pub group_max: usize,
    /// Whether results/ (and each node's ref, what `status` and `explain` compare with)
    /// show this run's results: not for a run with `--set` overrides unless asked, so
    /// results/ always shows the pipeline as its file says.
    pub show_results: bool,
}

/// Set by Ctrl-C: stop starting nodes, cancel running ones (and their Slurm jobs).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Fetched from the remote (`run --pull`) instead of run.
    pub pulled: usize,
    /// Of the failed nodes, those that failed for the machine's sake (the store's disk is
    /// full): the run then exits 3, not 1.
    pub environment_failures: usize,
    /// (node, message) for every warning a used result carries (see `wormflow_api::WARNINGS`).
    pub warnings: Vec<(String, String)>,
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

/// Where a batch goes: this process's worker threads, or — with `--executor slurm` — Slurm
/// jobs (but for kinds marked to run locally). Outcomes come back on one channel, per node.
struct Executors<'a> {
    workers: mpsc::Sender<Vec<Job>>,
    slurm: Option<&'a slurm::Slurm>,
    graph: &'a Graph,
    store: &'a Store,
    reporter: &'a Reporter,
}

impl Executors<'_> {
    /// Hand the batch over; the nodes it could not start (sbatch refused them), with why.
    fn submit(&self, batch: Vec<Job>) -> Vec<(usize, anyhow::Error)> {
        match self.slurm {
            Some(slurm) if !slurm.runs_locally(&self.graph.nodes[batch[0].index].kind) => {
                let indices: Vec<usize> = batch.iter().map(|job| job.index).collect();
                match slurm.submit(self.graph, self.store, batch, self.reporter) {
                    Ok(()) => Vec::new(),
                    Err(e) => {
                        let message = format!("{e:#}");
                        indices.into_iter().map(|i| (i, anyhow!("{message}"))).collect()
                    }
                }
            }
            _ => {
                self.workers.send(batch).expect("workers are alive");
                Vec::new()
            }
        }
    }

    fn cancel(&self) {
        if let Some(slurm) = self.slurm {
            slurm.cancel_all();
        }
    }
}

/// Run the selected part of the graph, each stale node once, in dependency order: on a
/// pool of threads here, and with `opts.slurm` as Slurm jobs (but for `local` kinds).
pub fn run_local(
    graph: &Graph,
    store: &Store,
    workspace: &Path,
    registry: &Registry,
    opts: &RunOptions,
    reporter: &Reporter,
) -> Result<RunSummary> {
    let n = graph.nodes.len();
    let mask = graph.targets(&opts.targets).map_err(|e| anyhow!(e))?;
    let mut forced = vec![false; n];
    for i in graph.select(&opts.force).map_err(|e| anyhow!(e))? {
        forced[i] = true;
    }
    let _store_lock = store.lock_shared()?;
    if opts.show_results {
        crate::results::remove_litter(workspace);
    }
    let resolver = Resolver::new(graph, store, workspace);
    // What is stored already, looked up in parallel (records and stats) before scheduling:
    // a no-op run then only checks each key against it.
    let stored: Vec<Option<ActionRecord>> = resolver
        .states(Some(&mask))
        .into_iter()
        .map(|state| match state {
            Some(crate::status::NodeState::Fresh { action, .. }) => Some(*action),
            _ => None,
        })
        .collect();
    reporter.begin(mask.iter().filter(|m| **m).count());
    let mut s = Schedule::new(schedule::Plan {
        graph,
        store,
        reporter,
        shown: opts.show_results.then_some(workspace),
        mask,
        forced,
        stored,
        keep_going: opts.keep_going,
        group_of: graph
            .nodes
            .iter()
            .map(|node| {
                let key = registry.get(&node.kind)?.group_key(&node.params)?;
                Some(format!("{}\u{0}{key}", node.stage))
            })
            .collect(),
        group_max: opts.group_max,
        // Local workers each get a batch of a group (none idles while one runs three); a
        // Slurm job is its own allocation, so there a group is packed into as few as may be.
        workers: if opts.slurm.is_some() { 1 } else { opts.jobs.max(1) },
    });
    let cancel = AtomicBool::new(false);
    // Long-lived helper processes (e.g. the libtorch helper), reused node after node; they
    // are stopped when the run ends (the pool is dropped).
    let helpers = wormflow_api::helper::HelperPool::new();
    let monitor_stop = AtomicBool::new(false);
    let capacity = match &opts.slurm {
        Some(slurm) => slurm.max_jobs(),
        None => opts.jobs.max(1),
    };
    // Each locally running node gets its share of the cores, so parallel nodes do not
    // oversubscribe the CPU (libtorch's spinning thread pools degrade badly when they do).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let local_threads = (cores / opts.jobs.max(1)).max(1);

    // One queue shared by the workers (std's receiver is single-consumer, hence the mutex).
    let (job_tx, job_rx) = mpsc::channel::<Vec<Job>>();
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Outcome>)>();

    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            let done_tx = done_tx.clone();
            let (resolver, cancel, job_rx, helpers) = (&resolver, &cancel, &job_rx, &helpers);
            let pull = opts.pull.as_deref();
            scope.spawn(move || {
                while let Ok(batch) = {
                    let rx = job_rx.lock().expect("job queue lock");
                    rx.recv()
                } {
                    // Each node settles as soon as it is stored: its dependents may start
                    // while the rest of its group still runs.
                    let mut gone = false;
                    let mut settled = |i: usize, outcome: Result<Outcome>| {
                        gone |= done_tx.send((i, outcome)).is_err();
                    };
                    let run = (cancel, helpers);
                    execute_batch(resolver, registry, reporter, batch, run, pull, &mut settled);
                    if gone {
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
        let executors =
            Executors { workers: job_tx, slurm: opts.slurm.as_ref(), graph, store, reporter };

        loop {
            if INTERRUPTED.load(Ordering::Relaxed) && !cancel.swap(true, Ordering::Relaxed) {
                s.stop();
                executors.cancel();
            }
            for batch in s.start(capacity - s.in_flight(), &resolver, local_threads) {
                for (i, e) in executors.submit(batch) {
                    s.settle(i, Err(e));
                }
            }
            if s.running() == 0 {
                break;
            }
            // Wake up now and then to notice Ctrl-C.
            match done_rx.recv_timeout(Duration::from_millis(200)) {
                Ok((i, outcome)) => s.settle(i, outcome),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("workers outlive the loop")
                }
            }
        }
        monitor_stop.store(true, Ordering::Relaxed);
        drop(executors);
    });
    resolver.save_stat_cache();
    if let Some(file) = &opts.pipeline {
        let mut ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        if let Err(e) = crate::store::roots::Roots::record(
            store,
            &crate::store::roots::pipeline_id(file),
            &ids,
            s.reached(),
        ) {
            reporter.warn(&format!(
                "{e:#}; `gc` from another pipeline may not know what this one uses"
            ));
        }
    }
    Ok(s.finish())
}

/// Where a batch's nodes go as each is settled: (node index, outcome).
pub type Settled<'a> = dyn FnMut(usize, Result<Outcome>) + 'a;

/// Run a batch: one node, or the nodes of one group in one `run_group` call. Each node's
/// outcome goes to `settled` once, as soon as it is known.
pub fn execute_batch(
    resolver: &Resolver,
    registry: &Registry,
    reporter: &Reporter,
    batch: Vec<Job>,
    run: (&AtomicBool, &wormflow_api::helper::HelperPool),
    pull: Option<&Remote>,
    settled: &mut Settled,
) {
    if batch.len() == 1 {
        let job = batch.into_iter().next().expect("one job");
        let i = job.index;
        return settled(i, execute(resolver, registry, reporter, job, run, pull));
    }
    execute_group(resolver, registry, reporter, batch, run, pull, settled)
}

/// Run one node in a fresh work directory and store its outputs; nothing is stored on error.
pub fn execute(
    resolver: &Resolver,
    registry: &Registry,
    reporter: &Reporter,
    job: Job,
    (cancel, helpers): (&AtomicBool, &wormflow_api::helper::HelperPool),
    pull: Option<&Remote>,
) -> Result<Outcome> {
    let node = match prepare(resolver, registry, reporter, job, pull)? {
        Prepared::Settled(outcome) => return Ok(*outcome),
        Prepared::Ready(node) => node,
    };
    let result = {
        let progress = node.progress(reporter);
        let ctx = node.context(resolver, (cancel, helpers), &progress);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.kind.run(&ctx)))
            .unwrap_or_else(|panic| {
                let msg = wormflow_api::panic_message(&*panic);
                Err(anyhow!("{}: the stage panicked: {msg}", node.node.id))
            })
    };
    node.conclude(resolver.store, result, cancel)
}

/// Run the nodes of one group at once (`StageKind::run_group`): each prepared (and
/// settled at once if stored meanwhile or pulled), run together, concluded one by one —
/// one node's failure is its own.
fn execute_group(
    resolver: &Resolver,
    registry: &Registry,
    reporter: &Reporter,
    batch: Vec<Job>,
    (cancel, helpers): (&AtomicBool, &wormflow_api::helper::HelperPool),
    pull: Option<&Remote>,
    settled: &mut Settled,
) {
    let mut ready = Vec::new();
    for job in batch {
        let i = job.index;
        match prepare(resolver, registry, reporter, job, pull) {
            Ok(Prepared::Ready(node)) => ready.push(node),
            Ok(Prepared::Settled(outcome)) => settled(i, Ok(*outcome)),
            Err(e) => settled(i, Err(e)),
        }
    }
    if ready.is_empty() {
        return;
    }
    // Each member is concluded (stored) and settled as soon as the kind says it finished.
    let mut concluded = vec![false; ready.len()];
    {
        let progress: Vec<_> = ready.iter().map(|node| node.progress(reporter)).collect();
        let contexts: Vec<StageContext> = ready
            .iter()
            .zip(&progress)
            .map(|(node, progress)| node.context(resolver, (cancel, helpers), progress))
            .collect();
        let mut finished = |k: usize, result: Result<Map<String, Value>>| {
            if concluded.get(k) == Some(&false) {
                concluded[k] = true;
                settled(ready[k].job.index, ready[k].conclude(resolver.store, result, cancel));
            }
        };
        let kind = std::sync::Arc::clone(&ready[0].kind);
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            kind.run_group(&contexts, &mut finished)
        }));
        for (k, c) in contexts.iter().enumerate() {
            let why = match &ran {
                Err(panic) => {
                    format!("the stage panicked: {}", wormflow_api::panic_message(&**panic))
                }
                Ok(()) => "the kind's run_group gave no result for it".to_string(),
            };
            // Members already told of keep their outcome (`finished` ignores a second word).
            finished(k, Err(anyhow!("{}: {why}", c.node)));
        }
    }
}

/// A node about to run, or settled before it had to.
enum Prepared<'a> {
    Ready(Box<ReadyNode<'a>>),
    Settled(Box<Outcome>),
}

/// A node whose key is locked and whose inputs are in place in its work directory.
struct ReadyNode<'a> {
    job: Job,
    node: &'a crate::graph::NodeRecipe,
    kind: std::sync::Arc<dyn crate::kinds::StageKind>,
    work: workdir::WorkDir,
    inputs: Vec<crate::kinds::InputNode>,
    log: node_log::NodeLog,
    origin: wormflow_api::Origin,
    started: SystemTime,
    clock: Instant,
    /// The node's checkpoint folder, for a kind that resumes.
    checkpoints: Option<std::path::PathBuf>,
    _key_lock: crate::store::LockGuard,
}

/// Lock the node's key; settle it if its result is stored meanwhile or the remote has it;
/// otherwise put its inputs in place.
fn prepare<'a>(
    resolver: &'a Resolver,
    registry: &Registry,
    reporter: &Reporter,
    job: Job,
    pull: Option<&Remote>,
) -> Result<Prepared<'a>> {
    let graph = resolver.graph;
    let store = resolver.store;
    let node = &graph.nodes[job.index];
    let key_lock = store.lock_key(&job.parts.key)?;
    if !job.force {
        if let Some(action) = store.cached_action(&job.parts.key) {
            return Ok(Prepared::Settled(Box::new(Outcome::FoundStored(action))));
        }
        if let Some(remote) = pull {
            match remote.fetch(store, &job.parts.key) {
                Ok(Some(action)) => {
                    return Ok(Prepared::Settled(Box::new(Outcome::Pulled(action))))
                }
                Ok(None) => {}
                // A remote that cannot serve the result is no reason not to compute it.
                Err(e) => {
                    reporter.warn(&format!("{}: not pulled ({e:#}); running it here", node.id))
                }
            }
        }
    }
    let kind = std::sync::Arc::clone(
        registry
            .get(&node.kind)
            .ok_or_else(|| anyhow!("{}: unknown kind {:?}", node.id, node.kind))?,
    );
    reporter.start(&node.id, &job.parts.key);
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut work = workdir::WorkDir::create(store)?;
    let inputs =
        work.materialize_inputs(store, graph, node, &job.inputs, kind.isolates_inputs())?;
    let log = node_log::NodeLog::new(&node.id, &node.kind, &job.parts.key.hex());
    let checkpoints = match kind.checkpoints() {
        true => {
            let dir = store.checkpoint_dir(&job.parts.key);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Some(dir)
        }
        false => None,
    };
    let origin = wormflow_api::Origin {
        node: node.id.clone(),
        stage: node.stage.clone(),
        kind: node.kind.clone(),
        key: job.parts.key.hex(),
        wormflow_version: env!("CARGO_PKG_VERSION").into(),
    };
    Ok(Prepared::Ready(Box::new(ReadyNode {
        job,
        node,
        kind,
        work,
        inputs,
        log,
        origin,
        started,
        clock,
        checkpoints,
        _key_lock: key_lock,
    })))
}

impl ReadyNode<'_> {
    /// Where the node's progress goes: its bar (or plain lines) and its log.
    fn progress<'b>(
        &'b self,
        reporter: &'b Reporter,
    ) -> impl Fn(&wormflow_api::Progress) + Sync + 'b {
        move |update: &wormflow_api::Progress| {
            reporter.progress(&self.node.id, update);
            self.log.progress(update);
        }
    }

    fn context<'b>(
        &'b self,
        resolver: &'b Resolver,
        (cancel, helpers): (&'b AtomicBool, &'b wormflow_api::helper::HelperPool),
        progress: &'b (dyn Fn(&wormflow_api::Progress) + Sync),
    ) -> StageContext<'b> {
        StageContext {
            node: &self.node.id,
            origin: &self.origin,
            params: &self.node.params,
            inputs: &self.inputs,
            out_dir: &self.work.out,
            workspace: &resolver.workspace,
            scratch: &self.work.scratch,
            threads: self.job.threads.max(1),
            cancel,
            checkpoints: self.checkpoints.as_deref(),
            helpers,
            progress,
        }
    }

    /// Keep the node's log and, if it ran to the end and the run goes on, store its
    /// outputs and record.
    fn conclude(
        &self,
        store: &Store,
        result: Result<Map<String, Value>>,
        cancel: &AtomicBool,
    ) -> Result<Outcome> {
        let node = self.node;
        // A node still running when the run was cancelled is not stored, even if it got
        // to the end: the user asked for the run to stop, not for whatever finishes next.
        let result = match result {
            Ok(_) if cancel.load(Ordering::Relaxed) => {
                Err(anyhow::Error::new(wormflow_api::cancel::Cancelled))
            }
            other => other,
        };
        let result = result.map_err(|e| when_store_is_full(store, e));
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        self.log.keep(store, &node.id, &self.work.scratch, error.as_deref());
        self.work.check_inputs_untouched(store, &node.id)?;
        let stage_provenance = result?;
        let outputs = self
            .work
            .ingest_outputs(store, &node.id, self.kind.allows_empty_output(&node.params))
            .map_err(|e| when_store_is_full(store, e))?;
        let seconds = self.clock.elapsed().as_secs_f64();
        let threads = self.job.threads.max(1);
        let action = ActionRecord {
            schema: crate::store::ACTION_SCHEMA,
            node: node.id.clone(),
            key: self.job.parts.key,
            kind: node.kind.clone(),
            stage_version: node.version.clone(),
            code: (*node.code).clone(),
            params: node.params.clone(),
            inputs: self.job.parts.inputs.clone(),
            deps: self.job.parts.deps.clone(),
            output_hash: output_tree_hash(&outputs),
            outputs,
            provenance: provenance(self.started, seconds, threads, stage_provenance),
        };
        store.write_action(&action)?;
        // Finished: nothing left to resume.
        if let Some(dir) = &self.checkpoints {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(Outcome::Ran(action, seconds))
    }
}

/// A node that failed while the store's file system is full (a command's own output, or
/// the store's copy, ran out of space): the machine's fault, not the node's — said as
/// such, and the run exits 3.
fn when_store_is_full(store: &Store, e: anyhow::Error) -> anyhow::Error {
    let out_of_space = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    });
    match store.free_bytes() {
        Some(free) if out_of_space || free < FULL_BELOW => crate::error::environment(anyhow!(
            "{e:#} — the store's file system ({}) is full ({free} bytes free): free space (`wormflow gc` removes what no pipeline uses) or move the store, then run again",
            store.root.display()
        )),
        _ if out_of_space => crate::error::environment(e),
        _ => e,
    }
}

/// Below this many free bytes the store's file system counts as full.
const FULL_BELOW: u64 = 1 << 20;

fn provenance(
    started: SystemTime,
    seconds: f64,
    threads: usize,
    stage: Map<String, Value>,
) -> Map<String, Value> {
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
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
