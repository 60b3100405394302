//! The run's bookkeeping, as steps an executor loop calls in turn:
//!
//! ```text
//! ready nodes → their keys → stored results settled at once → groups → batches (to an executor)
//! outcomes → done / failed / cancelled → dependents ready
//! ```
//!
//! Grouping: a node whose kind declares a group key (`StageKind::group_key`) waits, once
//! ready, for the other nodes of its stage with the same key that may still become ready;
//! then they leave together, in node order, in batches of at most `group_max` — one call of
//! the kind's `run_group`. Waiting ends early when nothing else is left to run (an input of
//! a member failed), so a group can never hold the run up. A batch of one node is the
//! ordinary case.
//!
//! It knows where every node stands and what the run counted; it never runs a node, so
//! executors (local workers, Slurm) and the loop that drives them stay small.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use anyhow::Result;

use super::report::Reporter;
use super::{Job, Outcome, RunSummary};
use crate::graph::Graph;
use crate::hash::Hash;
use crate::status::Resolver;
use crate::store::{ActionRecord, Store};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    Running,
    Done,
    Failed,
}

pub(super) struct Schedule<'a> {
    graph: &'a Graph,
    store: &'a Store,
    reporter: &'a Reporter,
    /// The workspace whose results/ shows each result (None: a `--set` run).
    shown: Option<&'a Path>,
    mask: Vec<bool>,
    forced: Vec<bool>,
    /// What was stored before the run, looked up in parallel (taken when its node is ready).
    stored: Vec<Option<ActionRecord>>,
    slots: Vec<Slot>,
    results: Vec<Option<ActionRecord>>,
    missing_inputs: Vec<usize>,
    ready: VecDeque<usize>,
    /// Nodes handed out (or waiting for their group) and not yet settled.
    running: usize,
    /// Each node's group (its stage and its kind's group key), if its kind groups.
    group_of: Vec<Option<String>>,
    group_max: usize,
    /// Batches that may run at once (`-j`, or Slurm's max_jobs).
    workers: usize,
    /// Ready nodes waiting for the rest of their group, by group.
    waiting: BTreeMap<String, Vec<Job>>,
    /// Batches handed to executors and not yet settled, and the batch of each such node.
    in_flight: usize,
    batch_of: Vec<usize>,
    batch_left: BTreeMap<usize, usize>,
    next_batch: usize,
    summary: RunSummary,
    /// No new node starts (after a failure without --keep-going, or an interrupt).
    stopping: bool,
    keep_going: bool,
}

/// What the schedule needs to know at the start of a run.
pub(super) struct Plan<'a> {
    pub graph: &'a Graph,
    pub store: &'a Store,
    pub reporter: &'a Reporter,
    pub shown: Option<&'a Path>,
    pub mask: Vec<bool>,
    pub forced: Vec<bool>,
    pub stored: Vec<Option<ActionRecord>>,
    pub keep_going: bool,
    /// See `Schedule::group_of`; empty: nothing groups.
    pub group_of: Vec<Option<String>>,
    /// The most nodes in one group's batch (at least 1).
    pub group_max: usize,
    /// Batches that may run at once.
    pub workers: usize,
}

impl<'a> Schedule<'a> {
    pub fn new(plan: Plan<'a>) -> Self {
        let graph = plan.graph;
        let n = graph.nodes.len();
        let missing_inputs: Vec<usize> = (0..n).map(|i| graph.inputs[i].len()).collect();
        let ready = (0..n).filter(|&i| plan.mask[i] && missing_inputs[i] == 0).collect();
        Schedule {
            graph,
            store: plan.store,
            reporter: plan.reporter,
            shown: plan.shown,
            mask: plan.mask,
            forced: plan.forced,
            stored: plan.stored,
            slots: vec![Slot::Pending; n],
            results: vec![None; n],
            missing_inputs,
            ready,
            running: 0,
            group_of: if plan.group_of.is_empty() { vec![None; n] } else { plan.group_of },
            group_max: plan.group_max.max(1),
            workers: plan.workers.max(1),
            waiting: BTreeMap::new(),
            in_flight: 0,
            batch_of: vec![usize::MAX; n],
            batch_left: BTreeMap::new(),
            next_batch: 0,
            summary: RunSummary::default(),
            stopping: false,
            keep_going: plan.keep_going,
        }
    }

    /// Nodes handed out (or waiting for their group) and not yet settled.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Batches handed to executors and not yet settled: what `-j` bounds.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Start no new node (an interrupt).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Batches for up to `room` executors, in order. On the way, each ready node's key is
    /// computed and a node whose result is stored is settled at once (its dependents may
    /// then be ready too); a node of a grouping kind waits for its group. A batch's nodes
    /// count as running until their outcomes are settled.
    pub fn start(&mut self, room: usize, resolver: &Resolver, threads: usize) -> Vec<Vec<Job>> {
        let mut batches = Vec::new();
        while !self.stopping && batches.len() < room {
            let Some(i) = self.ready.pop_front() else { break };
            let Some(job) = self.job_for(i, resolver, threads) else { continue };
            self.slots[i] = Slot::Running;
            self.running += 1;
            match self.group_of[i].clone() {
                Some(group) => self.waiting.entry(group).or_default().push(job),
                None => batches.push(vec![job]),
            }
        }
        if self.stopping {
            // Nodes waiting for their group never start: the summary says so.
            for job in std::mem::take(&mut self.waiting).into_values().flatten() {
                self.slots[job.index] = Slot::Pending;
                self.running -= 1;
            }
        }
        let idle = self.in_flight == 0 && batches.is_empty() && self.ready.is_empty();
        // Groups leave in node order (by their first member), as ungrouped nodes do.
        let mut groups: Vec<(usize, String)> = self
            .waiting
            .iter()
            .map(|(g, jobs)| (jobs.iter().map(|j| j.index).min().unwrap_or(0), g.clone()))
            .collect();
        groups.sort();
        for (_, group) in groups {
            if batches.len() >= room || (!idle && self.may_grow(&group)) {
                continue;
            }
            let mut members = self.waiting.remove(&group).unwrap_or_default();
            members.sort_by_key(|job| job.index);
            let mut chunks: Vec<Vec<Job>> = Vec::new();
            let size = batch_size(members.len(), self.group_max, self.workers);
            for job in members {
                match chunks.last_mut() {
                    Some(chunk) if chunk.len() < size => chunk.push(job),
                    _ => chunks.push(vec![job]),
                }
            }
            let fits = room - batches.len();
            if chunks.len() > fits {
                let rest: Vec<Job> = chunks.split_off(fits).into_iter().flatten().collect();
                self.waiting.insert(group, rest);
            }
            batches.extend(chunks);
        }
        for batch in &batches {
            let id = self.next_batch;
            self.next_batch += 1;
            self.in_flight += 1;
            self.batch_left.insert(id, batch.len());
            for job in batch {
                self.batch_of[job.index] = id;
            }
        }
        batches
    }

    /// Whether another node of `group` may still join it: one not yet taken from the
    /// ready queue, or one whose inputs are still to come.
    fn may_grow(&self, group: &str) -> bool {
        (0..self.graph.nodes.len()).any(|j| {
            self.mask[j]
                && self.slots[j] == Slot::Pending
                && self.group_of[j].as_deref() == Some(group)
        })
    }

    /// The job for ready node `i`, or None when it was settled on the way (its result is
    /// stored, or its key cannot be computed).
    fn job_for(&mut self, i: usize, resolver: &Resolver, threads: usize) -> Option<Job> {
        let inputs: Vec<(usize, ActionRecord)> = self.graph.inputs[i]
            .iter()
            .map(|&j| (j, self.results[j].clone().expect("inputs are done")))
            .collect();
        let outs: Vec<Hash> = inputs.iter().map(|(_, a)| a.output_hash).collect();
        let parts = match resolver.key(i, &outs) {
            Ok(p) => p,
            Err(e) => {
                self.failed(i, &format!("{e:#}"));
                return None;
            }
        };
        if !self.forced[i] {
            let known = self.stored[i].take().filter(|a| a.key == parts.key);
            if let Some(action) = known.or_else(|| self.store.cached_action(&parts.key)) {
                self.summary.cached += 1;
                self.reporter.cached(&self.graph.nodes[i].id, &parts.key, &action);
                self.done(i, action);
                return None;
            }
        }
        Some(Job { index: i, threads, parts, force: self.forced[i], inputs })
    }

    /// A started node's outcome (from a worker, a Slurm job, or a submission that failed).
    pub fn settle(&mut self, i: usize, outcome: Result<Outcome>) {
        self.running -= 1;
        if let Some(left) = self.batch_left.get_mut(&self.batch_of[i]) {
            *left -= 1;
            if *left == 0 {
                self.batch_left.remove(&self.batch_of[i]);
                self.in_flight -= 1;
            }
        }
        let id = &self.graph.nodes[i].id;
        match outcome {
            Ok(Outcome::Ran(action, secs)) => {
                self.summary.ran += 1;
                self.reporter.done(id, &action, secs);
                self.done(i, action);
            }
            Ok(Outcome::FoundStored(action)) => {
                self.summary.cached += 1;
                self.reporter.cached(id, &action.key, &action);
                self.done(i, action);
            }
            Ok(Outcome::Pulled(action)) => {
                self.summary.pulled += 1;
                self.reporter.pulled(id, &action);
                self.done(i, action);
            }
            Err(e) if wormflow_api::cancel::is_cancelled(&e) => {
                self.slots[i] = Slot::Failed;
                self.summary.skipped += 1;
                self.reporter.skipped(id, "cancelled by the interrupt; nothing of it was stored");
            }
            Err(e) => {
                if crate::error::is_environment(&e) {
                    self.summary.environment_failures += 1;
                }
                self.failed(i, &format!("{e:#}"));
            }
        }
    }

    /// Node `i` has its result: show it in results/ (unless a `--set` run) and release the
    /// dependents whose inputs are all done.
    fn done(&mut self, i: usize, action: ActionRecord) {
        self.slots[i] = Slot::Done;
        let node = &self.graph.nodes[i].id;
        for message in wormflow_api::warnings_of(&action.provenance) {
            self.reporter.warn(&format!("{node}: {message}"));
            self.summary.warnings.push((node.clone(), message));
        }
        if let Some(workspace) = self.shown {
            for w in crate::results::show(workspace, self.store, &self.graph.nodes[i], &action) {
                self.reporter.warn(&format!("{node}: {w}"));
            }
        }
        self.results[i] = Some(action);
        for &d in &self.graph.dependents[i] {
            self.missing_inputs[d] -= 1;
            if self.missing_inputs[d] == 0 && self.mask[d] {
                self.ready.push_back(d);
            }
        }
    }

    fn failed(&mut self, i: usize, error: &str) {
        self.slots[i] = Slot::Failed;
        self.summary.failed += 1;
        self.reporter.failed(&self.graph.nodes[i].id, None, error);
        self.stopping |= !self.keep_going;
    }

    /// Each node's result key, for the store's record of what this pipeline reached.
    pub fn reached(&self) -> std::collections::BTreeMap<String, Hash> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((self.graph.nodes[i].id.clone(), a.as_ref()?.key)))
            .collect()
    }

    /// Say why each selected node that never started did not, and close the run's account.
    pub fn finish(mut self) -> RunSummary {
        for i in 0..self.graph.nodes.len() {
            if !self.mask[i] || self.slots[i] != Slot::Pending {
                continue;
            }
            self.summary.skipped += 1;
            let failed_up: Vec<&str> = self.graph.inputs[i]
                .iter()
                .filter(|&&j| self.slots[j] != Slot::Done)
                .map(|&j| self.graph.nodes[j].id.as_str())
                .collect();
            let why = if failed_up.is_empty() {
                "not started after a failure (use --keep-going to run independent nodes)"
                    .to_string()
            } else {
                format!("input {} did not finish", failed_up.join(", "))
            };
            self.reporter.skipped(&self.graph.nodes[i].id, &why);
        }
        self.reporter.finish(&self.summary);
        self.summary
    }
}

/// How many of a group's `n` nodes go in one batch: at most `group_max`, and no more than
/// it takes to give every worker a batch (a group of 3 on 2 workers: 2 + 1, not 3 on one
/// while the other idles). From constants only, so the same run groups the same way.
fn batch_size(n: usize, group_max: usize, workers: usize) -> usize {
    let batches = n.div_ceil(group_max).max(workers.min(n)).max(1);
    n.div_ceil(batches)
}
