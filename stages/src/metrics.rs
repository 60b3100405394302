//! What training produced besides weights: `metrics.parquet`, one row per epoch — epoch
//! (u64), train_loss, val_loss, lr, seconds (f64) — and how the training ended ([`Learning`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float64Array, UInt64Array};
use arrow::record_batch::RecordBatch;

use serde::{Deserialize, Serialize};

use crate::parquet_io;

/// How a training run ended, as its losses tell (model.json and eval.json `learning`). Only
/// `learned` models are points of a scaling fit unless the fit is told to keep the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Learning {
    /// Validation loss went below the untrained model's.
    #[default]
    Learned,
    /// No epoch beat the untrained model (best epoch 0): the stored weights are the initial ones.
    NeverImproved,
    /// A loss became non-finite or rose past `diverged_above` × the untrained model's.
    Diverged,
    /// The Baseline: nothing to train.
    NotTrained,
}

impl Learning {
    pub fn as_str(self) -> &'static str {
        match self {
            Learning::Learned => "learned",
            Learning::NeverImproved => "never_improved",
            Learning::Diverged => "diverged",
            Learning::NotTrained => "not_trained",
        }
    }

    /// Whether a scaling fit may count it as a trained model's point.
    pub fn is_failure(self) -> bool {
        matches!(self, Learning::NeverImproved | Learning::Diverged)
    }
}

/// One row of metrics.parquet.
pub struct Epoch {
    pub epoch: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

pub fn write_epochs(path: &Path, rows: &[Epoch]) -> Result<()> {
    let f64s = |f: fn(&Epoch) -> f64| Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        ("epoch", Arc::new(UInt64Array::from(rows.iter().map(|r| r.epoch).collect::<Vec<_>>())) as ArrayRef),
        ("train_loss", f64s(|r| r.train_loss)),
        ("val_loss", f64s(|r| r.val_loss)),
        ("lr", f64s(|r| r.lr)),
        ("seconds", f64s(|r| r.seconds)),
    ])?;
    parquet_io::write_batch(path, batch)
}

pub fn read_epochs(path: &Path) -> Result<Vec<Epoch>> {
    let mut out = Vec::new();
    for b in parquet_io::read_batches(path)? {
        let f = |n: &str| b.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Float64Array>()).cloned().with_context(|| format!("{}: no column {n}", path.display()));
        let epoch = b.column_by_name("epoch").and_then(|c| c.as_any().downcast_ref::<UInt64Array>()).cloned().context("no epoch column")?;
        let (t, v, l, s) = (f("train_loss")?, f("val_loss")?, f("lr")?, f("seconds")?);
        for r in 0..b.num_rows() {
            out.push(Epoch { epoch: epoch.value(r), train_loss: t.value(r), val_loss: v.value(r), lr: l.value(r), seconds: s.value(r) });
        }
    }
    Ok(out)
}
