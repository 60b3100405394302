//! What a torch node would cost (`StageKind::estimate`), with step times from the fitted
//! table (`step_cost.rs`):
//! - train: epochs × (steps per epoch × step time + a validation pass) + a fixed per-node
//!   cost. Every node is assumed to run its whole `epochs` budget — early stopping only
//!   shortens it, so this is an upper bound and says so.
//! - evaluate: forward passes — one over the validation windows, `horizon` more for the
//!   k-step curve (each rolls the model forward once more), and `context` single-window
//!   passes per generated worm.

use std::path::Path;

use wormflow_api::cost::{CostInput, Estimate, Hardware};

use crate::step_cost::{Rate, StepModel};
use crate::torch_stages::{hidden_size, lookback_of, EvaluateParams, Precision, TrainParams};
use crate::windows::{read_split, sliding_starts, Part};

/// Seconds a node costs besides its epochs: loading its windows onto the device and writing
/// its outputs (the `load` and `write` phases of the default pipeline's train nodes on
/// 2 cores: 0.1–0.4 s), and a helper's start, paid once per helper rather than per node.
const PER_NODE_SECONDS: f64 = 0.4;

/// A forward pass costs about a third of a training step (no backward, no optimizer).
const FORWARD_SHARE: f64 = 1.0 / 3.0;

/// Worms assumed for `n_worms = 0` (all) before preprocess has run: the study's pool.
const ASSUMED_POOL: i64 = 284;

/// Forecast windows per worm assumed before the split has run: a 20 % test part of a
/// study-length recording (≈ 1,000 steps at 0.667 s) at stride 1.
const ASSUMED_FORECAST_WINDOWS: i64 = 200;

/// How many training and validation windows of which length the node will see.
struct Volume {
    train: i64,
    val: i64,
    window: i64,
}

fn rows_of(path: &Path) -> Option<i64> {
    let file = std::fs::File::open(path).ok()?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).ok()?;
    Some(parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows())
}

/// From the sample node's stored summary when it has run, else from its params (and the
/// preprocessed worm count, when preprocess has run).
fn volume(inputs: &[CostInput], assumptions: &mut Vec<String>) -> Option<Volume> {
    let sample = inputs.iter().find(|i| i.kind == "sample")?;
    if let Some(file) = sample.stored.and_then(|s| s.file("sample.parquet")) {
        if let Ok(s) = crate::summaries::read::<crate::summaries::SampleSummary>(file) {
            let window = s.window_length - 1;
            return Some(Volume { train: s.n_train_windows, val: s.n_val_windows, window });
        }
    }
    let p: crate::sample::Params = serde_json::from_value(sample.params.clone()).ok()?;
    let pool = inputs
        .iter()
        .filter(|i| i.kind == "preprocess")
        .find_map(|i| rows_of(i.stored?.file("worms.parquet")?));
    let pool = pool.unwrap_or_else(|| {
        assumptions.push(format!(
            "the worm pool is not known until preprocess has run (run it first for exact volumes): assumed {ASSUMED_POOL} worms for the validation set{}",
            if p.n_worms == 0 { " and n_worms = 0" } else { "" }
        ));
        ASSUMED_POOL
    });
    let worms = if p.n_worms == 0 { pool } else { (p.n_worms as i64).min(pool) };
    let per_worm = p.n_windows as i64;
    Some(Volume { train: worms * per_worm, val: pool * per_worm, window: p.window as i64 })
}

fn hardware_of(device: &str, assumptions: &mut Vec<String>) -> Hardware {
    match device {
        "cpu" => Hardware::Cpu,
        d if d.starts_with("cuda") => Hardware::Gpu,
        _ => {
            assumptions.push(
                "device = \"auto\": estimated for a CPU (set device = \"cuda\" for a GPU estimate)"
                    .to_string(),
            );
            Hardware::Cpu
        }
    }
}

/// The step-time rates of `model` on `hardware`, saying so when they are another's.
fn rate_of(hardware: Hardware, model: &str, assumptions: &mut Vec<String>) -> Option<Rate> {
    let rate = StepModel::measured().rate(hardware, model)?;
    if let Some(other) = &rate.borrowed_from {
        assumptions
            .push(format!("no {model} step times measured on this hardware: {other}'s rates used"));
    }
    Some(rate)
}

pub fn train(p: &TrainParams, inputs: &[CostInput]) -> Option<Estimate> {
    let mut assumptions = Vec::new();
    let hardware = hardware_of(&p.device, &mut assumptions);
    let v = volume(inputs, &mut assumptions)?;
    if p.model == "baseline" {
        return Some(Estimate {
            seconds: PER_NODE_SECONDS,
            hardware,
            basis: "baseline: one validation pass".into(),
            assumptions,
        });
    }
    let (hidden, lookback) = (hidden_size(p).ok()?, lookback_of(p));
    let rate = rate_of(hardware, &p.model, &mut assumptions)?;
    if p.precision != Precision::Fp32 {
        assumptions.push(format!(
            "precision = {}: fp32 step times used (no measurement of it yet)",
            p.precision.as_str()
        ));
    }
    // A k-step rollout runs the model k times over (at most) the window.
    let passes = p.horizon_train.max(1) as f64;
    let step = passes * rate.step_seconds(&p.model, hidden, lookback, p.batch_size, v.window);
    let steps = (v.train + p.batch_size - 1) / p.batch_size;
    let val_batch = p.batch_size.max(256);
    let val_steps = (v.val + val_batch - 1) / val_batch;
    let val_step =
        passes * FORWARD_SHARE * rate.step_seconds(&p.model, hidden, lookback, val_batch, v.window);
    let epoch = steps as f64 * step + val_steps as f64 * val_step;
    // The untrained model's pass over both sets, then the epochs.
    let seconds =
        PER_NODE_SECONDS + epoch * p.epochs as f64 + val_step * (val_steps + steps) as f64;
    let mut basis = format!(
        "{} epochs (the budget: an upper bound) × ({steps} steps × {:.1} ms + {val_steps} validation batches × {:.1} ms); {} H={hidden} B={} L={}",
        p.epochs,
        step * 1e3,
        val_step * 1e3,
        p.model,
        p.batch_size,
        v.window
    );
    if p.horizon_train > 1 {
        basis.push_str(&format!(
            "; {}-step rollouts: {} passes a step",
            p.horizon_train, p.horizon_train
        ));
    }
    Some(Estimate { seconds, hardware, basis, assumptions })
}

/// Forecast windows an evaluate node will score: counted from the stored split by the rule
/// its forecasts use (`windows::sliding_starts`), else assumed.
fn forecast_windows(
    p: &EvaluateParams,
    part: Part,
    inputs: &[CostInput],
    assumptions: &mut Vec<String>,
) -> i64 {
    let len = (p.forecast_context + p.forecast_horizon) as u64;
    let stride = p.forecast_stride.max(1) as u64;
    let stored = inputs
        .iter()
        .filter(|i| i.kind == "split")
        .find_map(|i| read_split(i.stored?.file("split.parquet")?).ok());
    match stored {
        Some(rows) => {
            rows.iter().map(|r| sliding_starts(&r.ranges_of(part), len, stride).len() as i64).sum()
        }
        None => {
            assumptions.push(format!(
                "the split has not run: assumed {ASSUMED_FORECAST_WINDOWS} forecast windows per worm of {ASSUMED_POOL}"
            ));
            ASSUMED_FORECAST_WINDOWS * ASSUMED_POOL
        }
    }
}

pub fn evaluate(p: &EvaluateParams, inputs: &[CostInput]) -> Option<Estimate> {
    let mut assumptions = Vec::new();
    let hardware = hardware_of(&p.device, &mut assumptions);
    let trained: TrainParams =
        serde_json::from_value(inputs.iter().find(|i| i.kind == "train")?.params.clone()).ok()?;
    let v = volume(inputs, &mut assumptions)?;
    if trained.model == "baseline" {
        return Some(Estimate {
            seconds: PER_NODE_SECONDS,
            hardware,
            basis: "baseline: copies its input".into(),
            assumptions,
        });
    }
    let (hidden, lookback) = (hidden_size(&trained).ok()?, lookback_of(&trained));
    let rate = rate_of(hardware, &trained.model, &mut assumptions)?;
    let batch = p.batch_size.max(1);
    let batches = (v.val + batch - 1) / batch;
    let pass = FORWARD_SHARE * rate.step_seconds(&trained.model, hidden, lookback, batch, v.window);
    let one_window =
        FORWARD_SHARE * rate.step_seconds(&trained.model, hidden, lookback, 1, v.window);
    let generated = p.generate_worms as f64 * p.context as f64 * one_window;
    let mut seconds = PER_NODE_SECONDS + (1 + p.horizon) as f64 * batches as f64 * pass + generated;
    let mut basis = format!(
        "{} passes × {batches} batches × {:.1} ms + {} generated worms × {} steps × {:.2} ms; {} H={hidden} L={}",
        1 + p.horizon,
        pass * 1e3,
        p.generate_worms,
        p.context,
        one_window * 1e3,
        trained.model,
        v.window
    );
    if let Some(part) = Part::parse(&p.forecast_part) {
        let windows = forecast_windows(p, part, inputs, &mut assumptions);
        let forecast_batches = (windows + batch - 1) / batch;
        let step = FORWARD_SHARE
            * rate.step_seconds(&trained.model, hidden, lookback, batch, p.forecast_context);
        seconds += (forecast_batches * p.forecast_horizon) as f64 * step;
        basis.push_str(&format!(
            " + forecasts: {windows} windows, {} steps each × {:.1} ms a batch",
            p.forecast_horizon,
            step * 1e3
        ));
    }
    Some(Estimate { seconds, hardware, basis, assumptions })
}
