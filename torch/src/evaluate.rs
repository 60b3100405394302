//! The `evaluate` kind's work (run by the `wormflow-torch` helper; params and checks are in
//! torch_stages.rs): how good a trained model is, on the fixed validation set.
//!
//! Inputs: a train node (weights.safetensors, model.json), a preprocess node (recordings) and
//! a sample node (windows.parquet, sample.json). Outputs:
//! - `eval.json`: model, hidden, n_params, train_steps, val_loss (masked MSE), the Baseline's
//!   loss on the same windows and their ratio, both per source dataset too.
//! - `kstep.parquet`: k-step-ahead error (k = 1…`horizon`): from each validation window's
//!   first L + 1 − horizon steps the model generates `horizon` steps autoregressively (its
//!   predictions fed back); columns k, mse, baseline_mse (the last context step repeated).
//! - `generation.parquet` (Fig. 7): for up to `generate_worms` worms, `context` steps of the
//!   validation half as context, then as many generated with the study's sliding context (the
//!   last L steps, L the training window length) and, with `clamp`, each step clamped to its
//!   context's range as the study's `generate`; columns worm, neuron, step, truth,
//!   generated (null during the context).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Map, Value};
use tch::{nn, Device, Kind, Tensor};
use wormflow_api::StageContext;

use crate::models::{self, Model};
use wormflow_stages::neurons::{self, N_NEURONS};
use wormflow_stages::parquet_io::write_batch;
use wormflow_stages::table::{read_recordings, Worm};
use crate::tensors::{predict, window_set, WindowSet};
use crate::train::pick_device;
pub use wormflow_stages::torch_stages::EvaluateParams as Params;
use wormflow_stages::windows::{read_split, read_windows};

/// Evaluate one trained model (called by the `wormflow-torch` helper).
pub fn run(p: &Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
    let device = pick_device(&p.device)?;
    tch::set_num_threads(ctx.threads as i32);
    let find = |file: &str| ctx.inputs.iter().find(|i| i.dir.join(file).exists()).map(|i| i.dir.join(file));
    let card_path = find("model.json").context("evaluate needs a train node (model.json) among its inputs")?;
    let card: Value = serde_json::from_slice(&std::fs::read(&card_path)?)?;
    let arch = card["architecture"].as_str().context("model.json has no architecture")?.to_string();
    let hidden = card["hidden"].as_i64().unwrap_or(0);
    let recordings_dir = find("recordings.parquet").context("evaluate needs a preprocess node among its inputs")?;
    let worms = read_recordings(recordings_dir.parent().expect("a directory"))?;
    let windows = read_windows(&find("windows.parquet").context("evaluate needs a sample node among its inputs")?)?;
    let summary: Value = match find("sample.json") {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => Value::Null,
    };

    let mut vs = nn::VarStore::new(device);
    let residual = card["residual"].as_bool().unwrap_or(false);
    let options = models::Options { hidden, residual, dropout: 0.0 }; // evaluation: no dropout
    let model = models::build(&arch, options, &vs.root())?;
    if arch != "baseline" {
        let weights = find("weights.safetensors").context("no weights.safetensors among the inputs")?;
        vs.load(&weights).with_context(|| format!("cannot load {}", weights.display()))?;
    }
    let baseline = models::build("baseline", models::Options { hidden: 0, residual: false, dropout: 0.0 }, &vs.root())?;
    let val = window_set(&worms, &windows, "val", device)?;
    let (loss, per_ds) = losses(&*model, &val, p.batch_size);
    let (base, base_ds) = losses(&*baseline, &val, p.batch_size);
    let per_dataset: Map<String, Value> = per_ds
        .iter()
        .map(|(d, l)| (d.clone(), json!({"val_loss": l, "baseline_loss": base_ds[d], "ratio": l / base_ds[d]})))
        .collect();
    (ctx.progress)(0.3, "k-step errors");
    let kstep = kstep_errors(&*model, &val, p.horizon, p.batch_size)?;
    write_kstep(&ctx.out_dir.join("kstep.parquet"), &kstep)?;
    (ctx.progress)(0.7, "generation");
    let split_path = find("split.parquet");
    let starts = match split_path {
        Some(sp) => read_split(&sp)?.into_iter().map(|r| ((r.dataset, r.worm), r.val.0)).collect(),
        None => val_starts(&windows),
    };
    // The sliding context is the training window length L (as the study's BLOCK_SIZE).
    let window = val.x.size()[1];
    write_generation(&ctx.out_dir.join("generation.parquet"), &*model, &worms, &starts, p, window, device)?;
    let eval = json!({
        "model": arch,
        "hidden": hidden,
        "n_params": card["n_params"],
        "n_params_study": card["n_params_study"],
        "residual": residual,
        "learning": card["learning"],
        "learning_note": card["learning_note"],
        "train_steps": summary["train_steps"],
        "n_worms": summary["n_worms"],
        "val_loss": loss,
        "baseline_loss": base,
        "ratio": loss / base,
        "per_dataset": per_dataset,
    });
    std::fs::write(ctx.out_dir.join("eval.json"), serde_json::to_vec_pretty(&eval)?)?;
    let mut prov = Map::new();
    prov.insert("val_loss".into(), json!(loss));
    Ok(prov)
}

/// Where each worm's validation half starts, from the windows when no split is given.
fn val_starts(windows: &[wormflow_stages::windows::Window]) -> BTreeMap<(String, String), u64> {
    let mut m: BTreeMap<(String, String), u64> = BTreeMap::new();
    for w in windows.iter().filter(|w| w.set == "val") {
        let e = m.entry((w.dataset.clone(), w.worm.clone())).or_insert(w.start);
        *e = (*e).min(w.start);
    }
    m
}

/// Masked MSE overall and per source dataset.
fn losses(model: &dyn Model, set: &WindowSet, batch: i64) -> (f64, BTreeMap<String, f64>) {
    tch::no_grad(|| {
        let mut per: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut start = 0;
        while start < set.len() {
            let n = batch.min(set.len() - start);
            let mask = set.mask.narrow(0, start, n);
            let pred = predict(model, &set.x.narrow(0, start, n), &mask, false);
            let y = set.y.narrow(0, start, n);
            // Per-window sums, brought to the host once per batch (not once per window:
            // each transfer is a device sync).
            let (sse, count) = per_window_sse(&pred, &y, &mask);
            for (i, (s, c)) in sse.into_iter().zip(count).enumerate() {
                let e = per.entry(set.datasets[start as usize + i].clone()).or_default();
                e.0 += s;
                e.1 += c;
            }
            start += n;
        }
        let (s, c) = per.values().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        (s / c, per.into_iter().map(|(d, (s, c))| (d, s / c)).collect())
    })
}

/// Squared error and recorded values of each window in a batch (B, T, 302), on the host.
fn per_window_sse(pred: &Tensor, y: &Tensor, mask: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let steps = pred.size()[1] as f64;
    let sse = ((pred - y).square() * mask).sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double);
    let count = mask.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double) * steps;
    (to_host(sse), to_host(count))
}

/// A 1-D double tensor as a Vec on the host (one device sync).
fn to_host(t: Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_device(tch::Device::Cpu)).expect("a 1-D double tensor")
}

/// How a model generates from its own predictions.
#[derive(Clone, Copy)]
struct Rollout {
    /// The context is cropped to its last `window` steps before each prediction (the
    /// study's sliding context; the length the model was trained on).
    window: i64,
    /// Clamp each generated step to the range of the context it came from, as the study's
    /// `generate` does (against values running away).
    clamp: bool,
}

/// Feed the model its own predictions for `steps` steps after `context` (B, T, 302).
fn rollout(model: &dyn Model, context: &Tensor, mask: &Tensor, steps: i64, how: Rollout) -> Tensor {
    let mut seq = context.shallow_clone();
    let mut generated = Vec::with_capacity(steps as usize);
    for _ in 0..steps {
        let len = seq.size()[1];
        let cond = seq.narrow(1, (len - how.window).max(0), len.min(how.window));
        let mut next = predict(model, &cond, mask, false).select(1, -1).unsqueeze(1);
        if how.clamp {
            next = next.clamp_tensor(Some(cond.min()), Some(cond.max()));
        }
        let next = next * mask;
        generated.push(next.shallow_clone());
        seq = Tensor::cat(&[seq, next], 1);
    }
    Tensor::cat(&generated, 1)
}

/// (k, model mse, baseline mse) for k = 1..=horizon.
fn kstep_errors(model: &dyn Model, set: &WindowSet, horizon: i64, batch: i64) -> Result<Vec<(i64, f64, f64)>> {
    let steps = set.x.size()[1] + 1; // L + 1 steps per window
    if horizon >= steps - 1 {
        bail!("horizon {horizon} leaves no context in windows of {steps} steps; lower params.horizon");
    }
    let context_len = steps - horizon;
    let full = Tensor::cat(&[set.x.shallow_clone(), set.y.narrow(1, set.y.size()[1] - 1, 1)], 1); // all L + 1 steps
    tch::no_grad(|| {
        let mut sse = vec![0.0; horizon as usize];
        let mut base = vec![0.0; horizon as usize];
        let mut count = 0.0;
        let mut start = 0;
        while start < set.len() {
            let n = batch.min(set.len() - start);
            let mask = set.mask.narrow(0, start, n);
            let window = full.narrow(0, start, n);
            let context = window.narrow(1, 0, context_len);
            let truth = window.narrow(1, context_len, horizon);
            // k-step errors: unclamped, the window never longer than the training windows.
            let gen = rollout(model, &context, &mask, horizon, Rollout { window: steps - 1, clamp: false });
            let last = context.narrow(1, context_len - 1, 1);
            count += mask.sum(Kind::Double).double_value(&[]);
            // One (horizon,) vector per batch for the model and for the Baseline.
            let per_k = |pred: &Tensor| {
                to_host(((pred - &truth).square() * &mask).sum_dim_intlist([0i64, 2].as_slice(), false, Kind::Double))
            };
            for (k, (m, b)) in per_k(&gen).into_iter().zip(per_k(&last.expand_as(&truth))).enumerate() {
                sse[k] += m;
                base[k] += b;
            }
            start += n;
        }
        Ok((0..horizon).map(|k| (k + 1, sse[k as usize] / count, base[k as usize] / count)).collect())
    })
}

fn write_kstep(path: &std::path::Path, rows: &[(i64, f64, f64)]) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        ("k", Arc::new(UInt64Array::from(rows.iter().map(|r| r.0 as u64).collect::<Vec<_>>())) as ArrayRef),
        ("mse", Arc::new(Float64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())) as ArrayRef),
        ("baseline_mse", Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())) as ArrayRef),
    ])?;
    write_batch(path, batch)
}

/// Context from the start of each worm's validation half, then as many generated steps.
fn write_generation(
    path: &std::path::Path,
    model: &dyn Model,
    worms: &[Worm],
    val_start: &BTreeMap<(String, String), u64>,
    p: &Params,
    window: i64,
    device: Device,
) -> Result<()> {
    let (mut worm_col, mut neuron_col, mut step_col, mut truth_col, mut gen_col) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut shown = 0;
    for w in worms.iter().filter(|w| p.generate_dataset.is_empty() || w.dataset == p.generate_dataset) {
        if shown >= p.generate_worms {
            break;
        }
        let Some(&start) = val_start.get(&(w.dataset.clone(), w.worm.clone())) else { continue };
        let (start, len) = (start as usize, 2 * p.context as usize);
        if start + len > w.n_steps() {
            continue;
        }
        shown += 1;
        let mut data = vec![0f32; len * N_NEURONS];
        let mut mask = vec![0f32; N_NEURONS];
        for (n, trace) in w.traces.iter().enumerate() {
            if let Some(t) = trace {
                mask[n] = 1.0;
                for k in 0..len {
                    data[k * N_NEURONS + n] = t[start + k];
                }
            }
        }
        let all = Tensor::from_slice(&data).view([1, len as i64, N_NEURONS as i64]).to_device(device);
        let m = Tensor::from_slice(&mask).view([1, 1, N_NEURONS as i64]).to_device(device);
        let how = Rollout { window, clamp: p.clamp };
        let gen = tch::no_grad(|| rollout(model, &all.narrow(1, 0, p.context), &m, p.context, how)).to_device(Device::Cpu);
        let gen: Vec<f32> = Vec::<f32>::try_from(gen.flatten(0, -1))?;
        for (n, trace) in w.traces.iter().enumerate() {
            let Some(t) = trace else { continue };
            for k in 0..len {
                worm_col.push(format!("{}/{}", w.dataset, w.worm));
                neuron_col.push(neurons::names()[n].clone());
                step_col.push(k as u64);
                truth_col.push(t[start + k] as f64);
                gen_col.push((k >= p.context as usize).then(|| gen[(k - p.context as usize) * N_NEURONS + n] as f64));
            }
        }
    }
    write_batch(path, RecordBatch::try_from_iter([
        ("worm", Arc::new(StringArray::from(worm_col)) as ArrayRef),
        ("neuron", Arc::new(StringArray::from(neuron_col)) as ArrayRef),
        ("step", Arc::new(UInt64Array::from(step_col)) as ArrayRef),
        ("truth", Arc::new(Float64Array::from(truth_col)) as ArrayRef),
        ("generated", Arc::new(Float64Array::from(gen_col)) as ArrayRef),
    ])?)
}
