//! What training produced besides weights: `metrics.parquet`, one row per epoch — epoch
//! (int64), train_loss, val_loss, lr, seconds (f64) — and how the training ended ([`Learning`]).

use std::path::Path;

use anyhow::Result;

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

/// One row of metrics.parquet. Row 0 is epoch 0: the untrained model's losses, before any
/// step (its `train_loss` is measured on the training windows without an update, `seconds`
/// is 0), so every run's curve starts where its initialisation put it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

pub fn write_epochs(path: &Path, rows: &[Epoch], metadata: &parquet_io::Metadata) -> Result<()> {
    parquet_io::write_rows(path, rows, metadata)
}

pub fn read_epochs(path: &Path) -> Result<Vec<Epoch>> {
    parquet_io::read_rows(path)
}
