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

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map};
use tch::{nn, Device, Tensor};
use wormflow_api::StageContext;

use crate::fit;
use crate::models::{self, Counting, Model, Options};
use crate::stacked::Stack;
use crate::tensors::{masked_sse, predict, window_set, WindowSet};
pub use wormflow_stages::metrics::{Epoch, Learning};
use wormflow_stages::summaries::{self, ModelCard};
use wormflow_stages::table::read_recordings;
pub use wormflow_stages::torch_stages::TrainParams as Params;
use wormflow_stages::windows::read_windows;

pub use wormflow_stages::torch_stages::{hidden_size, lookback_of};

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

/// A training window of T inputs (T + 1 steps) must leave the model a context before the
/// steps it is scored on: T + 1 − horizon_train steps, at least a lookback model's lookback.
fn check_window(p: &Params, window: i64) -> Result<()> {
    let context = window + 1 - p.horizon_train;
    let lookback = lookback_of(p);
    let needs = models::warmup_steps(&p.model, lookback) + 1;
    if context < needs {
        bail!(
            "params.horizon_train = {} in windows of {} steps (the sample stage's window = {window}) leaves a context of {context} steps; {} needs {needs}{}: raise the sample's window to at least {} or lower horizon_train{}",
            p.horizon_train,
            window + 1,
            p.model,
            if needs > 1 { format!(" (its lookback = {lookback})") } else { String::new() },
            needs + p.horizon_train - 1,
            if needs > 1 { " or lookback" } else { "" }
        );
    }
    Ok(())
}

/// Train one model (called by the `wormflow-torch` helper): a group of one.
pub fn run(p: &Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
    let mut result = None;
    run_group(&[(p.clone(), ctx)], &mut |_, r| result = Some(r));
    result.expect("run_group tells of every member")
}

/// Train several nodes at once (the helper's `group` job): nodes whose architecture and
/// shapes match train as one stack (`stacked.rs`, `fit.rs`), the others (another window
/// length, the Baseline) on their own. Each node's result goes to `finished` once, as soon
/// as its stack is done (its outputs written); a node whose data cannot be loaded fails
/// alone, at once.
pub fn run_group(nodes: &[(Params, &StageContext)], finished: &mut wormflow_api::Finished) {
    let start = helper_start_seconds();
    let clock = Instant::now();
    // Load each node's windows; a failure is that node's alone.
    let mut loaded = Vec::new();
    for (k, (p, ctx)) in nodes.iter().enumerate() {
        let setup = || -> Result<(Device, i64, TrainingData)> {
            let device = pick_device(&p.device)?;
            let (hidden, data) = (hidden_size(p)?, TrainingData::load(ctx, device)?);
            check_window(p, data.train.x.size()[1])?;
            Ok((device, hidden, data))
        };
        match setup() {
            Ok(ready) => loaded.push((k, ready)),
            Err(e) => finished(k, Err(e)),
        }
    }
    let threads =
        nodes.first().map_or(
            1,
            |(p, ctx)| {
                if p.threads > 0 {
                    p.threads
                } else {
                    ctx.threads as i64
                }
            },
        );
    tch::set_num_threads(threads as i32);
    let load = clock.elapsed().as_secs_f64();
    // Stacks: same architecture, hidden size, window length, device, residual, dropout,
    // precision, loss, training horizon and lookback.
    type Shape<'p> = (String, i64, i64, String, bool, (u64, &'p str, &'p str, i64, i64));
    let mut stacks: BTreeMap<Shape, Vec<usize>> = BTreeMap::new();
    for (at, (k, (device, hidden, data))) in loaded.iter().enumerate() {
        let p = &nodes[*k].0;
        let shape = (
            p.model.clone(),
            *hidden,
            data.train.x.size()[1],
            device_name(*device),
            p.residual,
            (
                p.dropout.to_bits(),
                p.precision.as_str(),
                p.loss.as_str(),
                p.horizon_train,
                lookback_of(p),
            ),
        );
        stacks.entry(shape).or_default().push(at);
    }
    // On a CPU a stack gains only while it fits the caches: split it (see `cpu_stack_limit`).
    let stacks: Vec<Vec<usize>> = stacks
        .into_iter()
        .flat_map(|((model, hidden, _, device, _, rest), members)| {
            let lookback = rest.4;
            let limit = match device.as_str() {
                "cpu" => cpu_stack_limit(&model, hidden, lookback),
                _ => usize::MAX,
            };
            members.chunks(limit).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect();
    let group_nodes: Vec<&str> = nodes.iter().map(|(_, ctx)| ctx.node).collect();
    for members in &stacks {
        let clock = Instant::now();
        let first = &loaded[members[0]];
        let (model, device, hidden) = (&nodes[first.0].0.model, first.1 .0, first.1 .1);
        let stacked: Vec<&str> = members.iter().map(|&at| nodes[loaded[at].0].1.node).collect();
        let mut told = vec![false; members.len()];
        // A member's node is written, and told of, as soon as that member stops.
        let mut stopped = |j: usize, outcome: Outcome, n_params: i64| {
            let (k, (device, hidden, data)) = &loaded[members[j]];
            let (p, ctx) = &nodes[*k];
            let phases = Phases {
                start,
                load,
                train: clock.elapsed().as_secs_f64() - outcome.validation_seconds,
                validation: outcome.validation_seconds,
                write: 0.0,
            };
            let group = Group { nodes: &group_nodes, stacked: &stacked };
            let shape = (*hidden, n_params, *device, threads);
            let written = finish_node(p, ctx, &outcome, shape, data, phases, group);
            told[j] = true;
            finished(*k, written);
        };
        let trained: Result<()> = (|| {
            if model == "baseline" {
                for (j, &at) in members.iter().enumerate() {
                    stopped(j, evaluate_only(&loaded[at].1 .2), 0);
                }
                return Ok(());
            }
            let p = &nodes[first.0].0;
            let options = Options {
                hidden,
                residual: p.residual,
                dropout: p.dropout,
                lookback: lookback_of(p),
            };
            let seeds: Vec<u64> = members.iter().map(|&at| nodes[loaded[at].0].0.seed).collect();
            let mut stack = Stack::new(model, options, &seeds, device)?;
            stack.compute = crate::precision::apply(p.precision, device)?;
            let n_params: i64 =
                stack.params.iter().map(|t| t.numel() as i64).sum::<i64>() / stack.len();
            let fit_members: Vec<fit::Member> = members
                .iter()
                .map(|&at| {
                    let (k, (_, _, data)) = &loaded[at];
                    fit::Member { params: &nodes[*k].0, data, ctx: nodes[*k].1 }
                })
                .collect();
            fit::fit(&mut stack, &fit_members, &mut |j, outcome| stopped(j, outcome, n_params))
        })();
        if let Err(e) = trained {
            // The members still training when it failed (or was cancelled).
            let message = format!("{e:#}");
            let cancelled = wormflow_api::cancel::is_cancelled(&e);
            for (_, &at) in members.iter().enumerate().filter(|(j, _)| !told[*j]) {
                let error = if cancelled {
                    anyhow::Error::new(wormflow_api::cancel::Cancelled)
                } else {
                    anyhow::anyhow!("{message}")
                };
                finished(loaded[at].0, Err(error));
            }
        }
    }
}

/// The most models one CPU stack holds. Measured on 2 cores (`make bench`, "M models as one
/// stack"): ≈25K Feedforward and CTRNN gain 1.5–3.5× at M = 4–16 and less at 64, ≈580K ones
/// at most 1.15× at M = 4 and lose beyond; the LSTM alone runs libtorch's fused kernel,
/// which beats any stack of the cell on a CPU. So: one LSTM; others up to 16, with the
/// stack's parameters under 2.4 million. A GPU takes the whole group.
fn cpu_stack_limit(model: &str, hidden: i64, lookback: i64) -> usize {
    if model == "lstm" {
        return 1;
    }
    let per_model = models::n_params(model, hidden, lookback, Counting::Used).unwrap_or(1).max(1);
    (2_400_000 / per_model).clamp(1, 16) as usize
}

/// Whether CUDA MPS serves this machine (its control pipe exists), so that several helpers
/// on one GPU share it rather than time-slice it. Recorded, never started: starting a
/// daemon is the machine owner's call (README, "Many models at once").
fn cuda_mps_running() -> bool {
    let dir =
        std::env::var_os("CUDA_MPS_PIPE_DIRECTORY").unwrap_or_else(|| "/tmp/nvidia-mps".into());
    std::path::Path::new(&dir).join("control").exists()
}

/// Who a node was trained with (recorded in its provenance).
struct Group<'a> {
    /// The nodes of the helper's job.
    nodes: &'a [&'a str],
    /// The nodes of the stack this one was part of (itself included).
    stacked: &'a [&'a str],
}

/// Write one trained node's outputs and say what its provenance records.
fn finish_node(
    p: &Params,
    ctx: &StageContext,
    outcome: &Outcome,
    (hidden, n_params, device, threads): (i64, i64, Device, i64),
    data: &TrainingData,
    mut phases: Phases,
    group: Group,
) -> Result<wormflow_api::Provenance> {
    let clock = Instant::now();
    write_outputs(ctx, p, outcome, hidden, n_params, device, threads, data)?;
    phases.write = clock.elapsed().as_secs_f64();
    // Into the node's log (the helper's stderr): where a node's time went.
    eprintln!(
        "{}: phases (s): helper start {:.3}, load and build {:.3}, training {:.3}, validation {:.3}, writing {:.3}; trained in a stack of {}",
        ctx.node, phases.start, phases.load, phases.train, phases.validation, phases.write, group.stacked.len()
    );
    let mut prov = Map::new();
    // Measured, so recorded rather than written into an output: model.parquet stays the
    // same bytes for the same inputs and seed (tests/slurm.rs compares it across hosts).
    prov.insert(
        wormflow_api::PHASES.into(),
        json!({"start": phases.start, "load": phases.load, "train": phases.train,
               "validation": phases.validation, "write": phases.write}),
    );
    prov.insert(
        "group".into(),
        json!({"size": group.stacked.len(), "stacked_with": group.stacked, "job": group.nodes}),
    );
    prov.insert("device".into(), json!(device_name(device)));
    if device.is_cuda() {
        prov.insert("cuda_mps".into(), json!(cuda_mps_running()));
    }
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

/// Run `f`, which seeds libtorch's random generator and draws from it, alone: the
/// generator is global to the process, and several threads (tests, benches) may draw.
pub fn with_generator<T>(f: impl FnOnce() -> T) -> T {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

/// Build a model with the initial weights its seed gives (under `with_generator`, so they
/// depend on the seed alone). Batches are shuffled with our own seeded streams; dropout
/// masks are drawn per model and step (`stacked::Draws`).
pub fn seeded_build(
    model: &str,
    options: Options,
    vs: &nn::VarStore,
    seed: u64,
) -> Result<Box<dyn Model>> {
    with_generator(|| build_seeded(model, options, vs, seed))
}

fn build_seeded(
    model: &str,
    options: Options,
    vs: &nn::VarStore,
    seed: u64,
) -> Result<Box<dyn Model>> {
    tch::manual_seed(seed as i64);
    let built = models::build(model, options, &vs.root())?;
    if options.residual {
        // Start exactly at the Baseline: a residual model's output layer begins at zero.
        let output = models::output_layers(model);
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if output.iter().any(|layer| name.starts_with(&format!("{layer}."))) {
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
    /// The epoch training resumed after (a checkpoint), 0 when it started afresh.
    pub resumed_from: u64,
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

/// The Baseline: nothing to train, its losses are those of copying the input.
fn evaluate_only(data: &TrainingData) -> Outcome {
    let options = Options { hidden: 0, residual: false, dropout: 0.0, lookback: 0 };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = &*models::build("baseline", options, &vs.root()).expect("the Baseline builds");
    let clock = Instant::now();
    let val = loss_over(model, &data.val, 256);
    let validation_seconds = clock.elapsed().as_secs_f64();
    let train = loss_over(model, &data.train, 256);
    Outcome {
        resumed_from: 0,
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
        n_params_study: models::n_params(&p.model, hidden, lookback_of(p), Counting::Study)?,
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
        resumed_from_epoch: o.resumed_from as i64,
        precision: p.precision.as_str().into(),
        loss: p.loss.as_str().into(),
        horizon_train: p.horizon_train,
        lookback: lookback_of(p),
    };
    summaries::write(&ctx.out_dir.join("model.parquet"), &card, &meta)?;
    Ok(())
}
