//! What a node would cost, known before it runs (`wormflow run -n --cost`, `status
//! --cost`). A kind that can model its own cost says so in [`crate::StageKind::estimate`]
//! from its params and what is known of its inputs; the engine estimates the other kinds
//! from the store's history (the median time of that kind's stored runs) and says which
//! figure came from where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One input of a node whose cost is asked for.
pub struct CostInput<'a> {
    /// The upstream stage's name and kind.
    pub stage: &'a str,
    pub kind: &'a str,
    /// Its params (as planned).
    pub params: &'a Value,
    /// Its outputs, when its current result is already stored (else it has yet to run).
    pub stored: Option<&'a StoredOutputs>,
}

/// A stored node's output files: each output's path (as the node wrote it) and where its
/// bytes are in the store (read-only).
#[derive(Debug, Clone, Default)]
pub struct StoredOutputs(pub BTreeMap<String, PathBuf>);

impl StoredOutputs {
    /// The stored file of output `name` (e.g. `"sample.parquet"`), if the node wrote one.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.0.get(name).map(PathBuf::as_path)
    }
}

/// Where an estimated node would spend its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardware {
    Cpu,
    Gpu,
}

/// An estimate of one node's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Estimate {
    /// Wall seconds on `hardware` (device-seconds: a GPU node's time is GPU time).
    pub seconds: f64,
    pub hardware: Hardware,
    /// How it was made, in a line: the formula's terms and where its rates come from.
    pub basis: String,
    /// What it had to assume (unknown worm counts, a rate borrowed from another model…).
    pub assumptions: Vec<String>,
}
