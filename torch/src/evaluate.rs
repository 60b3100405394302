//! The `evaluate` kind's work (run by the `wormflow-torch` helper; params and checks are in
//! torch_stages.rs): how good a trained model is, on the fixed validation set.
//!
//! Inputs: a train node (weights.safetensors, model.parquet), a preprocess node
//! (recordings) and a sample node (windows.parquet, sample.parquet). Outputs, each a typed
//! row of `wormflow_stages::summaries`:
//! - `eval.parquet` (one row, [`Evaluation`]): the model, its training's outcome, val_loss
//!   (masked MSE pooled over every recorded (window, step, neuron) element), the
//!   Baseline's loss on the same elements and their ratio.
//! - `by_dataset.parquet` ([`DatasetLoss`]): the same per source dataset.
//! - `neurons.parquet` ([`NeuronError`]): per worm × recorded neuron, one-step MSE, the
//!   Baseline's, the target's variance and the variance explained.
//! - `kstep.parquet` ([`KStepError`]): k-step-ahead error (k = 1…`horizon`) per source: from
//!   each validation window's first L + 1 − horizon steps the model generates `horizon`
//!   steps autoregressively (its predictions fed back); the Baseline repeats the last
//!   context step.
//! - `generation.parquet` (Fig. 7, [`GeneratedStep`]): for up to `generate_worms` worms,
//!   `context` steps of the validation half as context, then as many generated with the
//!   study's sliding context (the last L steps, L the training window length) and, with
//!   `clamp`, each step clamped to its context's range as the study's `generate`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map};
use tch::{nn, Device, Kind, Tensor};
use wormflow_api::{Progress, StageContext};

use crate::models::{self, Model};
use crate::tensors::{predict, window_set, WindowSet};
use crate::train::pick_device;
use wormflow_stages::neurons::{self, N_NEURONS};
use wormflow_stages::parquet_io::write_rows;
use wormflow_stages::summaries::{
    self, DatasetLoss, Evaluation, GeneratedStep, KStepError, ModelCard, NeuronError, SampleSummary,
};
use wormflow_stages::table::{read_recordings, Worm};
pub use wormflow_stages::torch_stages::EvaluateParams as Params;
use wormflow_stages::windows::{read_split, read_windows, Part};

/// Evaluate one trained model (called by the `wormflow-torch` helper).
pub fn run(p: &Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
    let device = pick_device(&p.device)?;
    tch::set_num_threads(ctx.threads as i32);
    let meta = ctx.file_metadata();
    let find = |file: &str| {
        ctx.inputs.iter().find(|i| i.dir.join(file).exists()).map(|i| i.dir.join(file))
    };
    let card: ModelCard = summaries::read(
        &find("model.parquet")
            .context("evaluate needs a train node (model.parquet) among its inputs")?,
    )?;
    let recordings_dir =
        find("recordings.parquet").context("evaluate needs a preprocess node among its inputs")?;
    let worms = read_recordings(recordings_dir.parent().expect("a directory"))?;
    let windows = read_windows(
        &find("windows.parquet").context("evaluate needs a sample node among its inputs")?,
    )?;
    let sample: Option<SampleSummary> =
        find("sample.parquet").map(|p| summaries::read(&p)).transpose()?;

    let mut vs = nn::VarStore::new(device);
    let options = models::Options {
        hidden: card.hidden,
        residual: card.residual,
        dropout: 0.0,
        lookback: card.lookback,
    }; // evaluation: no dropout
    let model = models::build(&card.architecture, options, &vs.root())?;
    if card.architecture != "baseline" {
        let weights =
            find("weights.safetensors").context("no weights.safetensors among the inputs")?;
        vs.load(&weights).with_context(|| format!("cannot load {}", weights.display()))?;
    }
    let baseline = models::build(
        "baseline",
        models::Options { hidden: 0, residual: false, dropout: 0.0, lookback: 0 },
        &vs.root(),
    )?;
    let val = window_set(&worms, &windows, "val", device)?;
    let warmup = models::warmup_steps(&card.architecture, card.lookback);
    if warmup >= val.x.size()[1] {
        bail!(
            "{} needs windows longer than its lookback of {} steps; the sample's windows have {}: raise the sample stage's window",
            card.architecture,
            warmup + 1,
            val.x.size()[1]
        );
    }
    let errors = one_step_errors(&*model, &*baseline, &val, p.batch_size, warmup);
    let (loss, base) = errors.pooled();
    write_rows(&ctx.out_dir.join("by_dataset.parquet"), &errors.by_dataset(), &meta)?;
    write_rows(&ctx.out_dir.join("neurons.parquet"), &errors.by_neuron(), &meta)?;
    (ctx.progress)(&Progress::new(0.3, "k-step errors"));
    write_rows(
        &ctx.out_dir.join("kstep.parquet"),
        &kstep_errors(&*model, &val, p.horizon, p.batch_size)?,
        &meta,
    )?;
    (ctx.progress)(&Progress::new(0.7, "generation"));
    let starts = match find("split.parquet") {
        Some(sp) => read_split(&sp)?
            .into_iter()
            .filter_map(|r| Some(((r.dataset.clone(), r.worm.clone()), r.first_start(Part::Val)?)))
            .collect(),
        None => val_starts(&windows),
    };
    // The sliding context is the training window length L (as the study's BLOCK_SIZE).
    let window = val.x.size()[1];
    write_rows(
        &ctx.out_dir.join("generation.parquet"),
        &generation(&*model, &worms, &starts, p, window, device)?,
        &meta,
    )?;
    let mut prov = Map::new();
    if let Some(part) = Part::parse(&p.forecast_part) {
        (ctx.progress)(&Progress::new(0.85, "forecasts"));
        let split = read_split(&find("split.parquet").with_context(|| {
            format!(
                "params.forecast_part = {:?} needs the split node among the inputs: add your split stage to `needs`",
                p.forecast_part
            )
        })?)?;
        let protocol = crate::forecast::Protocol {
            part,
            context: p.forecast_context,
            horizon: p.forecast_horizon,
            stride: p.forecast_stride,
            batch: p.batch_size,
        };
        let (rows, skill) = crate::forecast::forecast(&*model, &worms, &split, &protocol, device)?;
        if skill.is_empty() {
            bail!(
                "no {} window of {} + {} steps fits in any worm; lower forecast_context or forecast_horizon, or give the part more steps",
                p.forecast_part,
                p.forecast_context,
                p.forecast_horizon
            );
        }
        write_rows(&ctx.out_dir.join("forecast.parquet"), &rows, &meta)?;
        write_rows(&ctx.out_dir.join("forecast_skill.parquet"), &skill, &meta)?;
        if let Some(all) = skill.iter().find(|s| s.dataset == "all" && s.step == 1) {
            prov.insert("forecast_skill_step1".into(), json!(all.skill_vs_copy));
        }
    }
    let eval = Evaluation {
        model: card.architecture.clone(),
        hidden: card.hidden,
        residual: card.residual,
        n_params: card.n_params,
        n_params_study: card.n_params_study,
        learning: card.learning,
        learning_note: card.learning_note.clone(),
        epochs_run: card.epochs_run,
        best_epoch: card.best_epoch,
        steps: card.steps,
        train_steps: sample.as_ref().map_or(0, |s| s.train_steps),
        n_worms: sample.as_ref().map_or(0, |s| s.n_worms),
        val_loss: loss,
        baseline_loss: base,
        ratio: loss / base,
    };
    summaries::write(&ctx.out_dir.join("eval.parquet"), &eval, &meta)?;
    prov.insert("val_loss".into(), json!(loss));
    Ok(prov)
}

/// Sums of one-step errors per (dataset, worm, neuron), for the model and the Baseline.
#[derive(Default, Clone, Copy)]
struct Sums {
    sse: f64,
    baseline_sse: f64,
    /// Σ y and Σ y² of the targets, for their variance.
    sum: f64,
    sum_sq: f64,
    n: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.sse += o.sse;
        self.baseline_sse += o.baseline_sse;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.n += o.n;
    }
}

struct OneStepErrors {
    /// (dataset, worm, neuron slot) → sums over the worm's validation windows.
    cells: BTreeMap<(String, String, usize), Sums>,
    windows_per_dataset: BTreeMap<String, i64>,
}

impl OneStepErrors {
    fn pooled(&self) -> (f64, f64) {
        let mut all = Sums::default();
        self.cells.values().for_each(|c| all.add(c));
        (all.sse / all.n, all.baseline_sse / all.n)
    }

    fn by_dataset(&self) -> Vec<DatasetLoss> {
        let mut per: BTreeMap<&str, Sums> = BTreeMap::new();
        for ((d, _, _), c) in &self.cells {
            per.entry(d).or_default().add(c);
        }
        per.into_iter()
            .map(|(d, c)| DatasetLoss {
                dataset: d.to_string(),
                n_windows: self.windows_per_dataset[d],
                val_loss: c.sse / c.n,
                baseline_loss: c.baseline_sse / c.n,
                ratio: c.sse / c.baseline_sse,
            })
            .collect()
    }

    fn by_neuron(&self) -> Vec<NeuronError> {
        self.cells
            .iter()
            .map(|((d, w, slot), c)| {
                let name = &neurons::names()[*slot];
                let variance = (c.sum_sq / c.n - (c.sum / c.n).powi(2)).max(0.0);
                let (mse, baseline_mse) = (c.sse / c.n, c.baseline_sse / c.n);
                NeuronError {
                    dataset: d.clone(),
                    worm: w.clone(),
                    neuron: name.clone(),
                    class: neurons::class_of(name).to_string(),
                    n_values: c.n as i64,
                    mse,
                    baseline_mse,
                    variance,
                    variance_explained: 1.0 - mse / variance,
                    baseline_variance_explained: 1.0 - baseline_mse / variance,
                }
            })
            .collect()
    }
}

/// One pass over the validation windows: squared errors of the model and the Baseline and
/// the targets' moments, per window and neuron, brought to the host once per batch (each
/// transfer is a device sync). Both are scored from position `warmup` on (a lookback
/// model's first positions see a padded past; `models::warmup_steps`).
fn one_step_errors(
    model: &dyn Model,
    baseline: &dyn Model,
    set: &WindowSet,
    batch: i64,
    warmup: i64,
) -> OneStepErrors {
    tch::no_grad(|| {
        let mut out =
            OneStepErrors { cells: BTreeMap::new(), windows_per_dataset: BTreeMap::new() };
        let scored = set.x.size()[1] - warmup;
        let steps = scored as f64;
        let mut start = 0;
        while start < set.len() {
            let n = batch.min(set.len() - start);
            let (x, y, mask) = (
                set.x.narrow(0, start, n),
                set.y.narrow(0, start, n),
                set.mask.narrow(0, start, n),
            );
            let per_neuron = |t: Tensor| {
                to_host(t.sum_dim_intlist([1i64].as_slice(), false, Kind::Double).flatten(0, -1))
            };
            let from = |t: Tensor| t.narrow(1, warmup, scored);
            let y = from(y);
            let sse = per_neuron((from(predict(model, &x, &mask, false)) - &y).square());
            let base = per_neuron((from(predict(baseline, &x, &mask, false)) - &y).square());
            let (sum, sum_sq) = (per_neuron(y.shallow_clone()), per_neuron(y.square()));
            let recorded = to_host(mask.to_kind(Kind::Double).flatten(0, -1));
            for b in 0..n as usize {
                let i = start as usize + b;
                *out.windows_per_dataset.entry(set.datasets[i].clone()).or_default() += 1;
                for slot in (0..N_NEURONS).filter(|&s| recorded[b * N_NEURONS + s] > 0.0) {
                    let k = b * N_NEURONS + slot;
                    let cell = Sums {
                        sse: sse[k],
                        baseline_sse: base[k],
                        sum: sum[k],
                        sum_sq: sum_sq[k],
                        n: steps,
                    };
                    out.cells
                        .entry((set.datasets[i].clone(), set.worms[i].clone(), slot))
                        .or_default()
                        .add(&cell);
                }
            }
            start += n;
        }
        out
    })
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

/// A 1-D double tensor as a Vec on the host (one device sync).
fn to_host(t: Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_device(tch::Device::Cpu)).expect("a 1-D double tensor")
}

/// How a model generates from its own predictions.
#[derive(Clone, Copy)]
pub(crate) struct Rollout {
    /// The context is cropped to its last `window` steps before each prediction (the
    /// study's sliding context; the length the model was trained on).
    pub(crate) window: i64,
    /// Clamp each generated step to the range of the context it came from, as the study's
    /// `generate` does (against values running away).
    pub(crate) clamp: bool,
}

/// Feed the model its own predictions for `steps` steps after `context` (B, T, 302).
pub(crate) fn rollout(
    model: &dyn Model,
    context: &Tensor,
    mask: &Tensor,
    steps: i64,
    how: Rollout,
) -> Tensor {
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
fn kstep_errors(
    model: &dyn Model,
    set: &WindowSet,
    horizon: i64,
    batch: i64,
) -> Result<Vec<KStepError>> {
    let steps = set.x.size()[1] + 1; // L + 1 steps per window
    if horizon >= steps - 1 {
        bail!(
            "horizon {horizon} leaves no context in windows of {steps} steps; lower params.horizon"
        );
    }
    let context_len = steps - horizon;
    let full = Tensor::cat(&[set.x.shallow_clone(), set.y.narrow(1, set.y.size()[1] - 1, 1)], 1); // all L + 1 steps
    let h = horizon as usize;
    tch::no_grad(|| {
        // dataset → (model sse per k, Baseline sse per k, recorded values per k)
        let mut per: BTreeMap<&str, (Vec<f64>, Vec<f64>, f64)> = BTreeMap::new();
        let mut start = 0;
        while start < set.len() {
            let n = batch.min(set.len() - start);
            let mask = set.mask.narrow(0, start, n);
            let window = full.narrow(0, start, n);
            let context = window.narrow(1, 0, context_len);
            let truth = window.narrow(1, context_len, horizon);
            // k-step errors: unclamped, the window never longer than the training windows.
            let gen = rollout(
                model,
                &context,
                &mask,
                horizon,
                Rollout { window: steps - 1, clamp: false },
            );
            let last = context.narrow(1, context_len - 1, 1);
            // One (n, horizon) block per batch for the model and for the Baseline.
            let per_k = |pred: &Tensor| {
                to_host(
                    ((pred - &truth).square() * &mask)
                        .sum_dim_intlist([2i64].as_slice(), false, Kind::Double)
                        .flatten(0, -1),
                )
            };
            let (model_sse, base_sse) = (per_k(&gen), per_k(&last.expand_as(&truth)));
            let recorded = to_host(mask.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double));
            for b in 0..n as usize {
                let e = per
                    .entry(&set.datasets[start as usize + b])
                    .or_insert_with(|| (vec![0.0; h], vec![0.0; h], 0.0));
                for k in 0..h {
                    e.0[k] += model_sse[b * h + k];
                    e.1[k] += base_sse[b * h + k];
                }
                e.2 += recorded[b];
            }
            start += n;
        }
        Ok(per
            .into_iter()
            .flat_map(|(d, (m, b, count))| {
                (0..h).map(move |k| KStepError {
                    dataset: d.to_string(),
                    k: k as i64 + 1,
                    n_values: count as i64,
                    mse: m[k] / count,
                    baseline_mse: b[k] / count,
                })
            })
            .collect())
    })
}

/// Context from the start of each worm's validation half, then as many generated steps.
fn generation(
    model: &dyn Model,
    worms: &[Worm],
    val_start: &BTreeMap<(String, String), u64>,
    p: &Params,
    window: i64,
    device: Device,
) -> Result<Vec<GeneratedStep>> {
    let mut rows = Vec::new();
    let mut shown = 0;
    for w in
        worms.iter().filter(|w| p.generate_dataset.is_empty() || w.dataset == p.generate_dataset)
    {
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
        let all =
            Tensor::from_slice(&data).view([1, len as i64, N_NEURONS as i64]).to_device(device);
        let m = Tensor::from_slice(&mask).view([1, 1, N_NEURONS as i64]).to_device(device);
        let how = Rollout { window, clamp: p.clamp };
        let gen = tch::no_grad(|| rollout(model, &all.narrow(1, 0, p.context), &m, p.context, how))
            .to_device(Device::Cpu);
        let gen: Vec<f32> = Vec::<f32>::try_from(gen.flatten(0, -1))?;
        for (n, trace) in w.traces.iter().enumerate() {
            let Some(t) = trace else { continue };
            for k in 0..len {
                rows.push(GeneratedStep {
                    dataset: w.dataset.clone(),
                    worm: w.worm.clone(),
                    neuron: neurons::names()[n].clone(),
                    step: k as i64,
                    truth: t[start + k] as f64,
                    generated: (k >= p.context as usize)
                        .then(|| gen[(k - p.context as usize) * N_NEURONS + n] as f64),
                });
            }
        }
    }
    Ok(rows)
}
