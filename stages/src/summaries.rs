//! The small tables nodes write about what they did, defined once as typed rows: the crate
//! that writes one (train and evaluate run in wormflow-torch) and the ones that read it
//! (evaluate, fit, report, `wormflow compare`) share these structs, so a column cannot be
//! renamed on one side only. Each is a Parquet file (see parquet_io): one row for a node's
//! summary, so a sweep's summaries scan as one table from results/.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::metrics::Learning;
use crate::parquet_io::{self, Metadata};

/// `sample.parquet` (one row): what a sample node drew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// Worms whose training halves were drawn.
    pub n_worms: i64,
    /// Time steps in those training halves (the x of data scaling).
    pub train_steps: i64,
    pub n_train_windows: i64,
    pub n_val_windows: i64,
    /// Window length L + 1 (input steps plus the one-step target).
    pub window_length: i64,
    /// (worm, half) pairs too short for one window, left out.
    pub n_too_short: i64,
}

/// `model.parquet` (one row): train's model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub architecture: String,
    pub hidden: i64,
    pub residual: bool,
    /// Parameters the forward pass uses.
    pub n_params: i64,
    /// Parameters the study's code registers (the paper's Table II).
    pub n_params_study: i64,
    /// The `params_target` that chose `hidden` (0: none).
    pub params_target: i64,
    pub params_counting: crate::model_size::Counting,
    pub dropout: f64,
    pub device: String,
    pub torch: String,
    pub seed: i64,
    pub threads: i64,
    pub epochs_run: i64,
    pub best_epoch: i64,
    pub best_val_loss: f64,
    pub learning: Learning,
    pub learning_note: String,
    pub train_windows: i64,
    pub val_windows: i64,
    /// Input window length L.
    pub window: i64,
    /// Optimizer steps taken.
    pub steps: i64,
    /// The epoch training resumed after, from a checkpoint of an interrupted attempt (0: it
    /// ran from the start in one go).
    pub resumed_from_epoch: i64,
    /// How its matmuls computed: fp32, tf32 or bf16 (torch_stages::Precision).
    pub precision: String,
    /// What it minimised: mse, mae or huber (torch_stages::Loss).
    pub loss: String,
    /// Steps ahead each window's loss was taken over (1: next step at every position, as
    /// the study; k: a k-step rollout from the window's first steps).
    pub horizon_train: i64,
    /// Past steps a forecasting model sees at each position (0: the study's models, which
    /// see all of the past).
    pub lookback: i64,
}

/// `eval.parquet` (one row): evaluate's verdict on one trained model, with what a sweep
/// table needs from its training beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub model: String,
    pub hidden: i64,
    pub residual: bool,
    pub n_params: i64,
    pub n_params_study: i64,
    pub learning: Learning,
    pub learning_note: String,
    pub epochs_run: i64,
    pub best_epoch: i64,
    pub steps: i64,
    /// From the sample node: the data scaling x and the worms behind it.
    pub train_steps: i64,
    pub n_worms: i64,
    /// Masked MSE pooled over every recorded (window, step, neuron) element of the fixed
    /// validation windows.
    pub val_loss: f64,
    /// The Baseline's (copy the input) loss on the same elements.
    pub baseline_loss: f64,
    /// val_loss / baseline_loss: below 1 beats copying the input.
    pub ratio: f64,
}

/// `by_dataset.parquet`: the same losses per source dataset (one row each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetLoss {
    pub dataset: String,
    pub n_windows: i64,
    pub val_loss: f64,
    pub baseline_loss: f64,
    pub ratio: f64,
}

/// `neurons.parquet`: per worm × recorded neuron one-step validation error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronError {
    pub dataset: String,
    pub worm: String,
    pub neuron: String,
    /// The neuron's class: the name with its left/right suffix dropped when the mirror
    /// neuron exists (AVAL, AVAR → AVA), else the name.
    pub class: String,
    /// Target values pooled (windows × steps).
    pub n_values: i64,
    pub mse: f64,
    pub baseline_mse: f64,
    /// Variance of the target values: the MSE of predicting their mean.
    pub variance: f64,
    /// 1 − mse / variance (negative when worse than the mean).
    pub variance_explained: f64,
    pub baseline_variance_explained: f64,
}

/// `kstep.parquet`: k-step-ahead error per source dataset (the model generates k steps
/// from its own predictions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KStepError {
    pub dataset: String,
    pub k: i64,
    /// Recorded values behind each k (windows × neurons), to pool datasets by.
    pub n_values: i64,
    pub mse: f64,
    pub baseline_mse: f64,
}

/// `forecast.parquet`: multi-step forecasting error per worm × recorded neuron × step
/// ahead, on every window of a held-out part (sums' means over the part's windows): the
/// model's, copy-the-last-context-step's and mean-of-the-context's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastError {
    /// Which part of the split the windows come from ("val" or "test").
    pub part: String,
    pub dataset: String,
    pub worm: String,
    pub neuron: String,
    /// Steps ahead, 1…H.
    pub step: i64,
    pub n_windows: i64,
    pub mse: f64,
    pub mae: f64,
    pub copy_mse: f64,
    pub copy_mae: f64,
    pub mean_mse: f64,
    pub mean_mae: f64,
}

/// `forecast_skill.parquet`: per source dataset (and "all") × step ahead, the errors pooled
/// over each worm's recorded neurons and windows, and skill = 1 − MSE / MSE(reference)
/// computed per worm and averaged over worms (POCO averages its score over recordings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastSkill {
    pub part: String,
    pub dataset: String,
    pub step: i64,
    pub n_worms: i64,
    pub mse: f64,
    pub mae: f64,
    pub copy_mse: f64,
    pub mean_mse: f64,
    /// 1 − MSE / MSE(copy the last context step), averaged over worms.
    pub skill_vs_copy: f64,
    /// 1 − MSE / MSE(mean of the context), averaged over worms.
    pub skill_vs_mean: f64,
}

/// `generation.parquet` (Fig. 7): true and generated activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedStep {
    pub dataset: String,
    pub worm: String,
    pub neuron: String,
    /// Steps from the start of the shown stretch of the validation half.
    pub step: i64,
    pub truth: f64,
    /// Null during the context the model was given.
    pub generated: Option<f64>,
}

/// Write a one-row summary.
pub fn write<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    row: &T,
    metadata: &Metadata,
) -> Result<()> {
    parquet_io::write_rows(path, std::slice::from_ref(row), metadata)
}

/// Read a one-row summary.
pub fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    parquet_io::read_row(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn summaries_round_trip_with_enums_as_plain_strings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.parquet");
        let e = Evaluation {
            model: "lstm".into(),
            hidden: 24,
            residual: true,
            n_params: 1000,
            n_params_study: 1002,
            learning: Learning::Diverged,
            learning_note: "boom".into(),
            epochs_run: 3,
            best_epoch: 1,
            steps: 30,
            train_steps: 5000,
            n_worms: 4,
            val_loss: 0.5,
            baseline_loss: 0.6,
            ratio: 0.5 / 0.6,
        };
        let meta = [("wormflow.node".to_string(), "evaluate[model=lstm]".to_string())];
        write(&path, &e, &meta).unwrap();
        assert_eq!(read::<Evaluation>(&path).unwrap(), e);
        let batch = &parquet_io::read_batches(&path).unwrap()[0];
        assert_eq!(
            batch.schema().field_with_name("learning").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(batch.schema().field_with_name("hidden").unwrap().data_type(), &DataType::Int64);
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let kv = parquet::file::reader::FileReader::metadata(&reader)
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap();
        assert!(kv.iter().any(
            |k| k.key == "wormflow.node" && k.value.as_deref() == Some("evaluate[model=lstm]")
        ));
        // Optional columns are nullable even when no row is null; required ones never are.
        let rows = [GeneratedStep {
            dataset: "d".into(),
            worm: "w".into(),
            neuron: "AVAL".into(),
            step: 0,
            truth: 1.0,
            generated: Some(1.0),
        }];
        let gen = dir.path().join("g.parquet");
        parquet_io::write_rows(&gen, &rows, &meta).unwrap();
        let schema = parquet_io::read_batches(&gen).unwrap()[0].schema();
        assert!(schema.field_with_name("generated").unwrap().is_nullable());
        assert!(!schema.field_with_name("truth").unwrap().is_nullable());
    }
}
