//! The `train` kind's work (run by the `wormflow-torch` helper; the kind's params and
//! checks are in torch_stages.rs). Fit one model to next-step prediction on the sampled windows.
//!
//! Inputs: a node with `recordings.parquet` (preprocessed) and one with `windows.parquet`.
//! The windows become tensors once, on the device; batches are index selections.
//! Loss: MSE over recorded neurons of the next step. AdamW, optionally warmed up linearly
//! over the first `warmup_steps` optimizer steps; the learning rate drops by
//! `plateau_factor` after `plateau_patience` epochs without validation improvement
//! (ReduceLROnPlateau); training stops after `early_stopping` epochs without improvement
//! or at `epochs`. The weights of the best validation epoch are kept.
//!
//! Outputs: `weights.safetensors` (tensor names as `wormflow show` lists them, e.g.
//! `embedding.weight`, `lstm.weight_ih_l0`; loadable with `safetensors.torch.load_file`),
//! `metrics.parquet` (epoch, train_loss, val_loss, lr, seconds; row 0 the untrained model),
//! `model.parquet` (the model card, `summaries::ModelCard`).
//! On CPU the same inputs, seed and threads give byte-identical weights.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};
use wormflow_api::{Progress, StageContext};

use crate::models::{self, Counting, Model, Options};
use crate::tensors::{masked_mse, masked_sse, predict, window_set, WindowSet};
pub use wormflow_stages::metrics::{Epoch, Learning};
use wormflow_stages::rng::stream;
use wormflow_stages::summaries::{self, ModelCard};
use wormflow_stages::table::read_recordings;
pub use wormflow_stages::torch_stages::TrainParams as Params;
use wormflow_stages::windows::read_windows;

pub use wormflow_stages::torch_stages::hidden_size;

/// The device a `device` param names, checked against what this machine has.
pub fn pick_device(name: &str) -> Result<Device> {
    Ok(match name {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        cuda if cuda.starts_with("cuda") => {
            if !tch::Cuda::is_available() {
                bail!("device {name:?} was requested, but no CUDA device is available here (libtorch sees none); use device = \"auto\" or \"cpu\"");
            }
            let index = cuda
                .strip_prefix("cuda:")
                .map(str::parse::<usize>)
                .transpose()
                .context("device must look like \"cuda:0\"")?
                .unwrap_or(0);
            if index >= tch::Cuda::device_count() as usize {
                bail!("device {name:?}: only {} CUDA devices here", tch::Cuda::device_count());
            }
            Device::Cuda(index)
        }
        other => bail!("unknown device {other:?}; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""),
    })
}

/// Train one model (called by the `wormflow-torch` helper).
pub fn run(p: &Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
    let device = pick_device(&p.device)?;
    let threads = if p.threads > 0 { p.threads } else { ctx.threads as i64 };
    tch::set_num_threads(threads as i32);
    let mut phases = Phases { start: helper_start_seconds(), ..Phases::default() };
    let clock = Instant::now();
    let data = TrainingData::load(ctx, device)?;
    let hidden = hidden_size(p)?;
    let vs = nn::VarStore::new(device);
    let options = Options { hidden, residual: p.residual, dropout: p.dropout };
    let model = seeded_build(&p.model, options, &vs, p.seed)?;
    let n_params: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    phases.load = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let outcome = if p.model == "baseline" {
        evaluate_only(&*model, &data)
    } else {
        fit(p, &*model, &vs, &data, ctx)?
    };
    phases.validation = outcome.validation_seconds;
    phases.train = clock.elapsed().as_secs_f64() - phases.validation;
    let clock = Instant::now();
    write_outputs(ctx, p, &outcome, hidden, n_params, device, threads, &data)?;
    phases.write = clock.elapsed().as_secs_f64();
    // Into the node's log (the helper's stderr): where a node's time went.
    eprintln!(
        "phases (s): helper start {:.3}, load and build {:.3}, training {:.3}, validation {:.3}, writing {:.3}",
        phases.start, phases.load, phases.train, phases.validation, phases.write
    );
    let mut prov = Map::new();
    // Measured, so recorded rather than written into an output: model.parquet stays the
    // same bytes for the same inputs and seed (tests/slurm.rs compares it across hosts).
    prov.insert(
        "phases".into(),
        json!({"start": phases.start, "load": phases.load, "train": phases.train,
               "validation": phases.validation, "write": phases.write}),
    );
    prov.insert("device".into(), json!(device_name(device)));
    prov.insert("torch".into(), json!(env!("WORMFLOW_TORCH_VERSION")));
    prov.insert("best_val_loss".into(), json!(outcome.best_val));
    if outcome.learning.is_failure() {
        prov.insert(
            wormflow_api::WARNINGS.into(),
            json!([format!("{}: {}", outcome.learning.as_str(), outcome.learning_note)]),
        );
    }
    Ok(prov)
}

/// Where one node's time went, in seconds: in the node's log and its record's provenance
/// (`wormflow show NODE`).
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    /// The helper's own start (process, libtorch, CUDA) — paid by the first node it serves.
    start: f64,
    /// Reading the windows onto the device and building the model.
    load: f64,
    /// Epochs of optimizer steps (validation passes excluded).
    train: f64,
    /// Validation passes: the untrained model's and one per epoch.
    validation: f64,
    /// Writing weights, metrics and the model card.
    write: f64,
}

/// How long this process took to start, for the first node it serves; 0 for later ones
/// (the helper was already up). The process's age from /proc covers the dynamic loading of
/// libtorch before `main`.
fn helper_start_seconds() -> f64 {
    static PAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if PAID.swap(true, Ordering::SeqCst) {
        return 0.0;
    }
    process_age().unwrap_or(0.0)
}

/// Seconds since this process started (Linux: /proc/self/stat's start time, in clock ticks
/// since boot, against /proc/uptime).
fn process_age() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after "pid (comm) ": state is field 3, starttime field 22.
    let started: f64 = stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks > 0.0).then(|| (uptime - started / ticks).max(0.0))
}

/// libtorch's random generator is global to the process: seed and initialise under one lock,
/// so a model's initial weights depend on its seed alone even where several models are
/// built in one process (tests, benches). Batches are shuffled with our own seeded streams;
/// dropout masks come from the same generator, re-seeded by `fit` (one node per process).
pub fn seeded_build(
    model: &str,
    options: Options,
    vs: &nn::VarStore,
    seed: u64,
) -> Result<Box<dyn Model>> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed as i64);
    let built = models::build(model, options, &vs.root())?;
    if options.residual {
        // Start exactly at the Baseline: a residual model's readout begins at zero.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.starts_with("readout.") {
                    let _ = t.zero_();
                }
            }
        });
    }
    Ok(built)
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Training and validation windows as tensors.
pub struct TrainingData {
    pub train: WindowSet,
    pub val: WindowSet,
}

impl TrainingData {
    pub fn load(ctx: &StageContext, device: Device) -> Result<TrainingData> {
        let (mut worms, mut windows) = (Vec::new(), Vec::new());
        let (mut has_recordings, mut has_windows) = (false, false);
        for input in ctx.inputs {
            if input.dir.join("recordings.parquet").exists() {
                has_recordings = true;
                worms.extend(read_recordings(&input.dir)?);
            }
            if input.dir.join("windows.parquet").exists() {
                has_windows = true;
                windows.extend(read_windows(&input.dir.join("windows.parquet"))?);
            }
        }
        if !has_recordings || !has_windows {
            bail!("train needs a preprocess node (recordings.parquet) and a sample node (windows.parquet) among its inputs (`needs`)");
        }
        Ok(TrainingData {
            train: window_set(&worms, &windows, "train", device)?,
            val: window_set(&worms, &windows, "val", device)?,
        })
    }
}

pub struct Outcome {
    pub metrics: Vec<Epoch>,
    pub best_val: f64,
    pub best_epoch: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    pub learning: Learning,
    /// What the losses did, in words, when the run did not learn.
    pub learning_note: String,
    /// The best epoch's weights, by name.
    pub weights: Vec<(String, Tensor)>,
    /// Seconds spent in validation passes (the untrained one and one per epoch).
    pub validation_seconds: f64,
}

/// Masked MSE of `model` over a whole window set, in batches, without gradients.
pub fn loss_over(model: &dyn Model, set: &WindowSet, batch: i64) -> f64 {
    tch::no_grad(|| {
        let (mut sse, mut count) = (0.0, 0.0);
        let mut start = 0;
        while start < set.len() {
            let n = batch.min(set.len() - start);
            let mask = set.mask.narrow(0, start, n);
            let (s, c) = masked_sse(
                &predict(model, &set.x.narrow(0, start, n), &mask, false),
                &set.y.narrow(0, start, n),
                &mask,
            );
            sse += s.double_value(&[]);
            count += c.double_value(&[]);
            start += n;
        }
        sse / count
    })
}

fn evaluate_only(model: &dyn Model, data: &TrainingData) -> Outcome {
    let clock = Instant::now();
    let val = loss_over(model, &data.val, 256);
    let validation_seconds = clock.elapsed().as_secs_f64();
    let train = loss_over(model, &data.train, 256);
    Outcome {
        metrics: vec![Epoch { epoch: 0, train_loss: train, val_loss: val, lr: 0.0, seconds: 0.0 }],
        best_val: val,
        best_epoch: 0,
        steps: 0,
        learning: Learning::NotTrained,
        learning_note: String::new(),
        weights: Vec::new(),
        validation_seconds,
    }
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut w: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().to_device(Device::Cpu).copy()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn fit(
    p: &Params,
    model: &dyn Model,
    vs: &nn::VarStore,
    data: &TrainingData,
    ctx: &StageContext,
) -> Result<Outcome> {
    let mut opt =
        nn::AdamW { beta1: 0.9, beta2: 0.999, wd: p.weight_decay, eps: 1e-8, amsgrad: false }
            .build(vs, p.lr)?;
    let n_train = data.train.len();
    let mut lr = p.lr;
    // Epoch 0 is the untrained model: kept if training never does better (for a residual
    // model that is exactly the Baseline).
    let validating = Instant::now();
    let initial = loss_over(model, &data.val, p.batch_size.max(256));
    let mut validation_seconds = validating.elapsed().as_secs_f64();
    let (mut best_val, mut best_epoch, mut weights) =
        (if initial.is_finite() { initial } else { f64::INFINITY }, 0, snapshot(vs));
    let (mut plateau_best, mut plateau_bad) = (f64::INFINITY, 0);
    let mut step = 0u64; // optimizer steps so far (for the warm-up)
                         // The rate of optimizer step n (1-based): ramps linearly up to lr over warmup_steps.
    let warmed = |lr: f64, n: u64| {
        if n < p.warmup_steps {
            lr * n as f64 / p.warmup_steps as f64
        } else {
            lr
        }
    };
    let mut metrics = vec![Epoch {
        epoch: 0,
        train_loss: loss_over(model, &data.train, p.batch_size.max(256)),
        val_loss: initial,
        lr,
        seconds: 0.0,
    }];
    // Dropout masks: libtorch's generator (this process trains this node only), seeded from
    // the node's seed, so the same inputs and seed give the same weights on CPU.
    tch::manual_seed(stream(p.seed, "dropout", 0).random::<i64>());
    let mut diverged = None;
    for epoch in 1..=p.epochs {
        if ctx.cancel.load(Ordering::Relaxed) {
            bail!("cancelled");
        }
        let clock = Instant::now();
        let mut order: Vec<i64> = (0..n_train).collect();
        order.shuffle(&mut stream(p.seed, "batches", epoch));
        let (mut sum, mut seen) = (0.0, 0i64);
        for chunk in order.chunks(p.batch_size as usize) {
            if ctx.cancel.load(Ordering::Relaxed) {
                bail!("cancelled"); // SIGTERM from the engine: stop within a batch
            }
            step += 1;
            if step <= p.warmup_steps {
                opt.set_lr(warmed(lr, step));
            }
            let idx = Tensor::from_slice(chunk).to_device(data.train.x.device());
            let mask = data.train.mask.index_select(0, &idx);
            let loss = masked_mse(
                &predict(model, &data.train.x.index_select(0, &idx), &mask, true),
                &data.train.y.index_select(0, &idx),
                &mask,
            );
            if p.grad_clip > 0.0 {
                opt.backward_step_clip_norm(&loss, p.grad_clip);
            } else {
                opt.backward_step(&loss);
            }
            sum += loss.double_value(&[]) * chunk.len() as f64;
            seen += chunk.len() as i64;
        }
        let train_loss = sum / seen as f64;
        let validating = Instant::now();
        let val_loss = loss_over(model, &data.val, p.batch_size.max(256));
        validation_seconds += validating.elapsed().as_secs_f64();
        // The learning rate the epoch's last step used (below lr while warming up).
        metrics.push(Epoch {
            epoch: epoch as i64,
            train_loss,
            val_loss,
            lr: warmed(lr, step),
            seconds: clock.elapsed().as_secs_f64(),
        });
        (ctx.progress)(&Progress {
            fraction: epoch as f64 / p.epochs as f64,
            message: format!("epoch {epoch}/{}: train {train_loss:.4} val {val_loss:.4}", p.epochs),
            epoch: Some(epoch),
            epochs: Some(p.epochs),
            train_loss: Some(train_loss),
            val_loss: Some(val_loss),
        });
        if !train_loss.is_finite() || !val_loss.is_finite() || val_loss > p.diverged_above * initial
        {
            diverged = Some(format!(
                "at epoch {epoch} the training loss was {train_loss:.3e} and the validation loss {val_loss:.3e} ({:.3e} × the untrained model's {initial:.3e}); training stopped, the weights of epoch {best_epoch} are kept; lower params.lr or set params.grad_clip",
                val_loss / initial
            ));
            break;
        }
        if val_loss < best_val {
            (best_val, best_epoch, weights) = (val_loss, epoch, snapshot(vs));
        }
        // ReduceLROnPlateau (relative threshold 1e-4, as PyTorch's default).
        if val_loss < plateau_best * (1.0 - 1e-4) {
            (plateau_best, plateau_bad) = (val_loss, 0);
        } else {
            plateau_bad += 1;
            if plateau_bad > p.plateau_patience {
                lr *= p.plateau_factor;
                opt.set_lr(lr);
                plateau_bad = 0;
            }
        }
        if epoch - best_epoch >= p.early_stopping {
            break;
        }
    }
    let (learning, learning_note) = match diverged {
        Some(note) => (Learning::Diverged, note),
        None if best_epoch == 0 => (
            Learning::NeverImproved,
            format!(
                "no epoch of {} beat the untrained model's validation loss {initial:.4e}; the stored weights are the initial ones{}",
                metrics.len() - 1,
                if p.residual { " (for a residual model: exactly the Baseline, which on data nothing can predict is the expected result)" } else { "" }
            ),
        ),
        None => (Learning::Learned, String::new()),
    };
    Ok(Outcome {
        metrics,
        best_val,
        best_epoch,
        steps: step,
        learning,
        learning_note,
        weights,
        validation_seconds,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    ctx: &StageContext,
    p: &Params,
    o: &Outcome,
    hidden: i64,
    n_params: i64,
    device: Device,
    threads: i64,
    data: &TrainingData,
) -> Result<()> {
    let meta = ctx.file_metadata();
    crate::weights::write(&ctx.out_dir.join("weights.safetensors"), &o.weights, &meta)?;
    wormflow_stages::metrics::write_epochs(
        &ctx.out_dir.join("metrics.parquet"),
        &o.metrics,
        &meta,
    )?;
    let card = ModelCard {
        architecture: p.model.clone(),
        hidden,
        residual: p.residual,
        n_params,
        n_params_study: models::n_params(&p.model, hidden, Counting::Study)?,
        params_target: p.params_target,
        params_counting: p.params_counting,
        dropout: p.dropout,
        device: device_name(device),
        torch: env!("WORMFLOW_TORCH_VERSION").into(),
        seed: p.seed as i64,
        threads,
        epochs_run: o.metrics.last().map_or(0, |m| m.epoch),
        best_epoch: o.best_epoch as i64,
        best_val_loss: o.best_val,
        learning: o.learning,
        learning_note: o.learning_note.clone(),
        train_windows: data.train.len(),
        val_windows: data.val.len(),
        window: data.train.x.size()[1],
        steps: o.steps as i64,
    };
    summaries::write(&ctx.out_dir.join("model.parquet"), &card, &meta)?;
    Ok(())
}
