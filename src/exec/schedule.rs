//! The run's bookkeeping, as steps an executor loop calls in turn:
//!
//! ```text
//! ready nodes → their keys → stored results settled at once → jobs (to an executor)
//! outcomes → done / failed / cancelled → dependents ready
//! ```
//!
//! It knows where every node stands and what the run counted; it never runs a node, so
//! executors (local workers, Slurm) and the loop that drives them stay small.

use std::collections::VecDeque;
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
    running: usize,
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
            summary: RunSummary::default(),
            stopping: false,
            keep_going: plan.keep_going,
        }
    }

    /// Nodes handed out and not yet settled.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Start no new node (an interrupt).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Jobs for up to `room` ready nodes, in order. On the way, each node's key is computed
    /// and a node whose result is stored is settled at once (its dependents may then be
    /// ready too). A job's node counts as running until its outcome is settled.
    pub fn start(&mut self, room: usize, resolver: &Resolver, threads: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        while !self.stopping && jobs.len() < room {
            let Some(i) = self.ready.pop_front() else { break };
            let inputs: Vec<(usize, ActionRecord)> = self.graph.inputs[i]
                .iter()
                .map(|&j| (j, self.results[j].clone().expect("inputs are done")))
                .collect();
            let outs: Vec<Hash> = inputs.iter().map(|(_, a)| a.output_hash).collect();
            let parts = match resolver.key(i, &outs) {
                Ok(p) => p,
                Err(e) => {
                    self.failed(i, &format!("{e:#}"));
                    continue;
                }
            };
            if !self.forced[i] {
                let known = self.stored[i].take().filter(|a| a.key == parts.key);
                if let Some(action) = known.or_else(|| self.store.cached_action(&parts.key)) {
                    self.summary.cached += 1;
                    self.reporter.cached(&self.graph.nodes[i].id, &parts.key, &action);
                    self.done(i, action);
                    continue;
                }
            }
            self.slots[i] = Slot::Running;
            self.running += 1;
            jobs.push(Job { index: i, threads, parts, force: self.forced[i], inputs });
        }
        jobs
    }

    /// A started node's outcome (from a worker, a Slurm job, or a submission that failed).
    pub fn settle(&mut self, i: usize, outcome: Result<Outcome>) {
        self.running -= 1;
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
