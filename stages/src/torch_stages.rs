//! The libtorch stage kinds as the engine sees them — `train` and `evaluate`: their params,
//! checks and code versions, without libtorch. A node runs in the `wormflow-torch` helper
//! (built beside `wormflow`), so only processes that train or evaluate load libtorch; every
//! other command starts in milliseconds. The helper is one of the run's pool
//! (`StageContext::helpers`, protocol in wormflow_api::helper): it serves node after node,
//! so libtorch (and a GPU's context) starts once per worker, not once per node.
//!
//! A job file holds kind, node, params, inputs, out_dir, workspace, scratch and threads.
//! The helper reports progress, writes its provenance to `SCRATCH/provenance.json`, and
//! answers `ok` or `failed MESSAGE`. (`wormflow-torch JOB.json` runs one job by hand.)

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wormflow_api::cost::{CostInput, Estimate};
use wormflow_api::helper::{HelperError, Served};
use wormflow_api::{Finished, InputNode, Provenance, StageContext};

use crate::stage::Stage;

pub use crate::model_size::MODELS;
use crate::model_size::{
    has_hidden_size, hidden_for_target, n_params, Counting, DEFAULT_LOOKBACK, FORECAST_MODELS,
    LINEAR_WIDTH,
};

/// The hidden size a train node uses: `hidden`, else (Linear) the study's 302, else matched
/// to `params_target`; 0 for models without one.
pub fn hidden_size(p: &TrainParams) -> Result<i64> {
    Ok(match (p.model.as_str(), p.hidden, p.params_target) {
        (model, _, _) if !has_hidden_size(model) => 0,
        (_, h, _) if h > 0 => h,
        ("linear", _, _) => LINEAR_WIDTH,
        (model, _, target) => hidden_for_target(model, target, lookback_of(p), p.params_counting)?,
    })
}

/// The lookback a train node's model sees: `lookback`, else 48 (POCO's) for the
/// forecasting models; 0 for the study's, which see everything before a position.
pub fn lookback_of(p: &TrainParams) -> i64 {
    match (FORECAST_MODELS.contains(&p.model.as_str()), p.lookback) {
        (false, _) => 0,
        (true, 0) => DEFAULT_LOOKBACK,
        (true, l) => l,
    }
}

pub struct Train;
pub struct Evaluate;

/// How a train node's matmuls compute (torch/src/precision.rs says exactly what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout, as the study.
    #[default]
    Fp32,
    /// CUDA matmuls in TF32 (a CUDA mode; refused on the CPU).
    Tf32,
    /// bfloat16 matmuls from float32 master weights; the rest float32.
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// What a train node minimises (and early-stops on): the study's MSE, or the absolute or
/// Huber error the study's successor code (qsimeon/worm-graph `model/_utils.py`) and the
/// forecasting literature also use. Evaluate always reports MSE, whatever trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Mean squared error over recorded neurons and steps, as the study.
    #[default]
    Mse,
    /// Mean absolute error.
    Mae,
    /// Huber with δ = 1 (PyTorch's default): squared below 1, absolute above.
    Huber,
}

impl Loss {
    pub fn as_str(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber => "huber",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// baseline | linear | feedforward | ctrnn | lstm | transformer | attention (the
    /// study's) | nlinear | dlinear | tsmixer (the forecasting literature's)
    pub model: String,
    /// Hidden size; or 0 to pick it from `params_target`. Linear has no hidden size in the
    /// study: 0 is its fixed width of 302, and `params_target` never widens it. The
    /// Baseline, NLinear and DLinear have none (their size is their lookback): ignored, as
    /// `params_target`. TSMixer's is its feature-mixing width (POCO's `ff_dim`, 64).
    pub hidden: i64,
    /// Parameter budget (when hidden = 0): the smallest hidden size whose count reaches it.
    pub params_target: i64,
    /// Which count `params_target` is matched on: "study" (what the study's code registers,
    /// the paper's Table II — 580000 picks its hidden sizes) or "used" (what the model uses).
    pub params_counting: Counting,
    /// Dropout rate where the study's models have dropout (Feedforward's hidden layer; the
    /// Transformer's and Attention's positional encoding, attention weights and sublayers).
    /// The study uses 0.1; masks are drawn from the node's seeded generator.
    pub dropout: f64,
    pub epochs: u64,
    pub batch_size: i64,
    pub lr: f64,
    pub weight_decay: f64,
    pub plateau_factor: f64,
    pub plateau_patience: u64,
    pub early_stopping: u64,
    pub seed: u64,
    /// "auto" (CUDA if available), "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// CPU threads for libtorch (0 = the node's share of cores).
    pub threads: i64,
    /// Clip the gradient norm to this before each step (0 = no clipping, as in the study).
    pub grad_clip: f64,
    /// Ramp the learning rate linearly from lr/warmup_steps up to lr over the first
    /// optimizer steps (0 = none, as in the study). Adam's first steps move every weight by
    /// about lr whatever its gradient, which throws a model whose features are all ≥ 0
    /// (CTRNN's ReLU state) far off its start.
    pub warmup_steps: u64,
    /// Predict the change from the current step (output = input + model) instead of the
    /// next step itself. Off by default, as in the study; see the README's model card.
    pub residual: bool,
    /// A validation loss above this many times the untrained model's (or a non-finite loss)
    /// marks the run `diverged`: training stops, the best weights are kept, fits leave it out.
    pub diverged_above: f64,
    /// Save a checkpoint (in the store, by the node's key) every this many epochs, or
    /// sooner when `checkpoint_minutes` have passed since the last; a killed node resumes
    /// from it. How a node runs, not what it computes: not in the key.
    pub checkpoint_every: u64,
    pub checkpoint_minutes: f64,
    /// "fp32" (default, as the study) | "tf32" (CUDA) | "bf16": changes results, so it is
    /// in the key; recorded in the model card.
    pub precision: Precision,
    /// "mse" (default, as the study) | "mae" | "huber": the training objective (in the key;
    /// in the model card).
    pub loss: Loss,
    /// Steps each training window's loss is taken over: 1 (default, as the study) scores
    /// the next-step prediction at every position; k > 1 feeds the model the window's first
    /// T + 1 − k steps (teacher-forced context) and scores the k steps it then predicts on
    /// its own outputs, back-propagated through the rollout (POCO's `prediction` loss
    /// mode). Validation (early stopping) scores the same way. In the key and the card.
    pub horizon_train: i64,
    /// Past steps a forecasting model (nlinear, dlinear, tsmixer) sees at each position:
    /// 0 = 48, POCO's context. Refused for the study's models, which see all of the past.
    pub lookback: i64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            model: String::new(),
            hidden: 0,
            params_target: 0,
            params_counting: Counting::Study,
            dropout: 0.1,
            epochs: 500,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.01,
            plateau_factor: 0.1,
            plateau_patience: 10,
            early_stopping: 100,
            seed: 0,
            device: "auto".into(),
            threads: 0,
            grad_clip: 0.0,
            warmup_steps: 0,
            residual: false,
            diverged_above: 100.0,
            checkpoint_every: 10,
            checkpoint_minutes: 10.0,
            precision: Precision::Fp32,
            loss: Loss::Mse,
            horizon_train: 1,
            lookback: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateParams {
    /// Longest k of the k-step-ahead error curve.
    pub horizon: i64,
    /// Worms shown in the generation figure.
    pub generate_worms: usize,
    /// Generate from worms of this source dataset only ("" = any; Fig. 7 uses "Uzel2022").
    pub generate_dataset: String,
    /// Context steps before generating (as many are generated).
    pub context: i64,
    pub batch_size: i64,
    pub device: String,
    /// Clamp each generated step to the range of its context, as the study's `generate`.
    pub clamp: bool,
    /// Multi-step forecasting on a held-out part of the split: "" (off), "val" or "test".
    /// Needs the split node among the inputs (see `forecast.rs` in the torch crate).
    pub forecast_part: String,
    /// Context steps C each forecast starts from (POCO: 48).
    pub forecast_context: i64,
    /// Steps forecast H (POCO: 16).
    pub forecast_horizon: i64,
    /// Steps between consecutive forecast windows (POCO: 1).
    pub forecast_stride: i64,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        EvaluateParams {
            horizon: 50,
            generate_worms: 3,
            generate_dataset: String::new(),
            context: 180,
            batch_size: 256,
            device: "auto".into(),
            clamp: true,
            forecast_part: String::new(),
            forecast_context: 48,
            forecast_horizon: 16,
            forecast_stride: 1,
        }
    }
}

impl Stage for Train {
    const NAME: &'static str = "train";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_TRAIN");
    const CODE: &'static str = env!("WORMFLOW_CODE_TRAIN");
    const EXECUTION_PARAMS: &'static [&'static str] = &["checkpoint_every", "checkpoint_minutes"];
    const CHECKPOINTS: bool = true;
    type Params = TrainParams;

    fn check(p: &TrainParams) -> Result<(), String> {
        if !MODELS.contains(&p.model.as_str()) {
            return Err(format!(
                "params.model must be one of {}; got {:?}",
                MODELS.join(", "),
                p.model
            ));
        }
        let forecasting = FORECAST_MODELS.contains(&p.model.as_str());
        if p.lookback < 0 || (p.lookback > 0 && !forecasting) {
            return Err(format!(
                "params.lookback = {} applies to {} (how many past steps they see); {} sees all of the past: leave lookback out",
                p.lookback,
                FORECAST_MODELS.join(", "),
                p.model
            ));
        }
        if p.residual && p.model == "nlinear" {
            return Err("params.residual = true does not apply to nlinear: it already predicts relative to the last step (its own normalisation); leave residual out".into());
        }
        let needs_size = has_hidden_size(&p.model) && p.model != "linear"; // Linear: 0 = the study's 302
        if p.hidden < 0
            || p.params_target < 0
            || (needs_size && p.hidden == 0 && p.params_target == 0)
        {
            return Err(format!("params.hidden must be ≥ 1 (or 0 with params_target > 0); got hidden = {}, params_target = {}", p.hidden, p.params_target));
        }
        if p.horizon_train < 1 {
            return Err(format!(
                "params.horizon_train must be ≥ 1 (1 = the study's next-step loss); got {}",
                p.horizon_train
            ));
        }
        if !(0.0..1.0).contains(&p.dropout) {
            return Err(format!("params.dropout must be in [0, 1); got {}", p.dropout));
        }
        if p.batch_size < 1
            || !crate::validate::is_positive(p.lr)
            || !(p.plateau_factor > 0.0 && p.plateau_factor < 1.0)
        {
            return Err("need batch_size ≥ 1, lr > 0 and 0 < plateau_factor < 1".into());
        }
        if !matches!(p.device.as_str(), "auto" | "cpu") && !p.device.starts_with("cuda") {
            return Err(format!(
                "params.device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"; got {:?}",
                p.device
            ));
        }
        if p.epochs == 0 {
            return Err("params.epochs = 0 would store an untrained model; give at least 1 (the Baseline needs no training: model = \"baseline\")".into());
        }
        if p.threads < 0 {
            return Err(format!(
                "params.threads must be ≥ 0 (0 = the node's share of the cores); got {}",
                p.threads
            ));
        }
        if p.diverged_above.is_nan() || p.diverged_above <= 1.0 {
            return Err(format!("params.diverged_above must be > 1 (a multiple of the untrained model's validation loss); got {}", p.diverged_above));
        }
        if p.grad_clip.is_nan()
            || p.grad_clip < 0.0
            || p.weight_decay.is_nan()
            || p.weight_decay < 0.0
        {
            return Err(format!(
                "params.grad_clip and params.weight_decay must be ≥ 0; got {} and {}",
                p.grad_clip, p.weight_decay
            ));
        }
        if p.precision == Precision::Tf32 && p.device == "cpu" {
            return Err("params.precision = \"tf32\" is a CUDA matmul mode, but params.device = \"cpu\"; use \"fp32\" (the study's) or \"bf16\"".into());
        }
        if p.checkpoint_every == 0 || p.checkpoint_minutes.is_nan() || p.checkpoint_minutes <= 0.0 {
            return Err(format!(
                "params.checkpoint_every must be ≥ 1 (epochs) and params.checkpoint_minutes > 0; got {} and {} (a checkpoint after every epoch: checkpoint_every = 1)",
                p.checkpoint_every, p.checkpoint_minutes
            ));
        }
        check_memory(p)
    }

    fn run(p: TrainParams, ctx: &StageContext) -> Result<Provenance> {
        run_helper(Self::NAME, &serde_json::to_value(p)?, ctx)
    }

    fn estimate(p: &TrainParams, inputs: &[CostInput]) -> Option<Estimate> {
        crate::torch_cost::train(p, inputs)
    }

    /// Models that can share a stack: same architecture and size, residual and dropout,
    /// on the same device with the same threads. Seeds, data draws, learning rates and the
    /// other optimizer params may differ (and batch sizes and window lengths, which the
    /// helper sorts out: members whose windows differ in length train in separate stacks).
    fn group_key(p: &TrainParams) -> Option<String> {
        Some(format!(
            "model={} hidden={} residual={} dropout={} device={} threads={} precision={} loss={} horizon_train={} lookback={}",
            p.model,
            hidden_size(p).ok()?,
            p.residual,
            p.dropout,
            p.device,
            p.threads,
            p.precision.as_str(),
            p.loss.as_str(),
            p.horizon_train,
            lookback_of(p)
        ))
    }

    fn run_group(ps: Vec<TrainParams>, ctxs: &[StageContext], finished: &mut Finished) {
        let values: Result<Vec<Value>, _> = ps.iter().map(serde_json::to_value).collect();
        match values {
            Ok(values) if ctxs.len() > 1 => run_helper_group(Self::NAME, &values, ctxs, finished),
            _ => {
                for (k, (p, ctx)) in ps.into_iter().zip(ctxs).enumerate() {
                    finished(k, Self::run(p, ctx));
                }
            }
        }
    }
}

impl Stage for Evaluate {
    const NAME: &'static str = "evaluate";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_EVALUATE");
    const CODE: &'static str = env!("WORMFLOW_CODE_EVALUATE");
    type Params = EvaluateParams;

    fn estimate(p: &EvaluateParams, inputs: &[CostInput]) -> Option<Estimate> {
        crate::torch_cost::evaluate(p, inputs)
    }

    fn check(p: &EvaluateParams) -> Result<(), String> {
        if p.horizon < 1 || p.context < 2 || p.batch_size < 1 {
            return Err("need horizon ≥ 1, context ≥ 2 and batch_size ≥ 1".into());
        }
        if !matches!(p.forecast_part.as_str(), "" | "val" | "test") {
            return Err(format!(
                "params.forecast_part must be \"\" (off), \"val\" or \"test\"; got {:?}",
                p.forecast_part
            ));
        }
        if p.forecast_context < 1 || p.forecast_horizon < 1 || p.forecast_stride < 1 {
            return Err(
                "need forecast_context ≥ 1, forecast_horizon ≥ 1 and forecast_stride ≥ 1".into()
            );
        }
        Ok(())
    }

    fn run(p: EvaluateParams, ctx: &StageContext) -> Result<Provenance> {
        run_helper(Self::NAME, &serde_json::to_value(p)?, ctx)
    }
}

/// Steps per training window (L = 180 inputs + 1 target), for the memory estimate.
const WINDOW_STEPS: f64 = 181.0;

/// Refuse at plan time a model that cannot fit: weights, gradients and AdamW's two moments
/// (4 × 4 bytes per parameter) plus a batch's activations (≈ 16 floats per hidden unit and
/// step, the LSTM's gates and states), against the memory of the device it would use.
fn check_memory(p: &TrainParams) -> Result<(), String> {
    if p.model == "baseline" {
        return Ok(());
    }
    let hidden = hidden_size(p).map_err(|e| e.to_string())?;
    let lookback = lookback_of(p);
    let n = n_params(&p.model, hidden, lookback, Counting::Used).map_err(|e| e.to_string())? as f64;
    let neurons = crate::neurons::N_NEURONS as f64;
    // TSMixer mixes a whole (lookback × 302) window at each position it predicts.
    let per_step = if p.model == "tsmixer" {
        lookback as f64 * (6.0 * neurons + 2.0 * hidden as f64)
    } else {
        16.0 * hidden as f64 + 4.0 * neurons
    };
    let activations = p.batch_size as f64 * WINDOW_STEPS * per_step * 4.0;
    let needed = 16.0 * n + activations;
    let (available, what) = device_memory(&p.device);
    if needed > available {
        return Err(format!(
            "params.hidden = {hidden} makes a {} of {n:.3e} parameters, which needs about {:.1} GB to train (weights, gradients, AdamW state and a batch of {} windows), more than {what} ({:.1} GB); lower hidden (or params_target) or batch_size",
            p.model,
            needed / 1e9,
            p.batch_size,
            available / 1e9
        ));
    }
    Ok(())
}

/// Memory of the device a train node would use, as far as it can be known without
/// libtorch: this machine's RAM for the CPU; for CUDA the largest GPU memory made (192 GB),
/// the real limit is reported by libtorch when it runs.
fn device_memory(device: &str) -> (f64, &'static str) {
    const LARGEST_GPU: f64 = 192e9;
    let gpu_here = std::path::Path::new("/dev/nvidia0").exists();
    if device.starts_with("cuda") || (device == "auto" && gpu_here) {
        return (LARGEST_GPU, "the largest GPU's memory");
    }
    static RAM: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ram = *RAM.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        kb.map(|k| k * 1024.0).unwrap_or(f64::INFINITY)
    });
    (ram, "this machine's memory")
}

/// What the helper needs to rebuild the stage's context.
#[derive(Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub node: String,
    pub origin: wormflow_api::Origin,
    pub params: Value,
    pub inputs: Vec<InputNode>,
    pub out_dir: PathBuf,
    pub workspace: PathBuf,
    pub scratch: PathBuf,
    pub threads: usize,
    /// The node's checkpoint folder (`StageContext::checkpoints`).
    #[serde(default)]
    pub checkpoints: Option<PathBuf>,
}

/// The helper binary: beside the running executable (or WORMFLOW_TORCH).
fn helper() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WORMFLOW_TORCH") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let candidate = exe.with_file_name("wormflow-torch");
    if candidate.exists() {
        return Ok(candidate);
    }
    // Test binaries live one level down (target/release/deps).
    let up = exe.parent().and_then(|d| d.parent()).map(|d| d.join("wormflow-torch"));
    match up {
        Some(p) if p.exists() => Ok(p),
        _ => bail!("the libtorch helper `wormflow-torch` was not found next to {}; build the whole workspace (`make build`)", exe.display()),
    }
}

/// Write the node's job file (what the helper rebuilds its context from) into its scratch.
fn write_job(kind: &str, params: &Value, ctx: &StageContext) -> Result<PathBuf> {
    let job = Job {
        kind: kind.into(),
        node: ctx.node.into(),
        origin: ctx.origin.clone(),
        params: params.clone(),
        inputs: ctx.inputs.to_vec(),
        out_dir: ctx.out_dir.into(),
        workspace: ctx.workspace.into(),
        scratch: ctx.scratch.into(),
        threads: ctx.threads,
        checkpoints: ctx.checkpoints.map(PathBuf::from),
    };
    let job_path = ctx.scratch.join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
    Ok(job_path)
}

/// The helper's stderr during the node goes into the node's log.
fn keep_log(ctx: &StageContext, log: &str) {
    let _ = std::fs::write(ctx.scratch.join(wormflow_api::KIND_LOG), log);
}

/// What the helper recorded for the node (its scratch's provenance.json), and which helper
/// process ran it, as its how-manieth request: shows the helper's start being paid once per
/// worker (not part of any key).
fn provenance_of(ctx: &StageContext, served: &Served) -> Result<Provenance> {
    let prov: Value = serde_json::from_slice(
        &std::fs::read(ctx.scratch.join("provenance.json")).unwrap_or_else(|_| b"{}".to_vec()),
    )?;
    let mut prov = match prov {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    prov.insert(
        "helper".into(),
        json!({"program": "wormflow-torch", "pid": served.pid, "nodes_served": served.nodes_served}),
    );
    Ok(prov)
}

fn helper_error(e: HelperError) -> anyhow::Error {
    match e {
        HelperError::Failed { message, .. } => anyhow!("{message}"),
        HelperError::Cancelled => anyhow::Error::new(wormflow_api::cancel::Cancelled)
            .context("wormflow-torch was stopped"),
        HelperError::Lost(why) => anyhow!("wormflow-torch: {why}"),
    }
}

fn run_helper(kind: &str, params: &Value, ctx: &StageContext) -> Result<Provenance> {
    let job_path = write_job(kind, params, ctx)?;
    // A helper of the run's pool serves node after node (libtorch and CUDA start once per
    // worker).
    match ctx.helpers.run(&helper()?, &job_path, ctx.cancel, ctx.progress) {
        Ok(served) => {
            keep_log(ctx, &served.log);
            provenance_of(ctx, &served)
        }
        Err(e) => {
            if let HelperError::Failed { log, .. } = &e {
                keep_log(ctx, log);
            }
            Err(helper_error(e))
        }
    }
}

/// Several nodes in one helper request (`group`), trained there as one stack where their
/// shapes match; each node's result told to `finished` as the helper answers for it.
fn run_helper_group(kind: &str, ps: &[Value], ctxs: &[StageContext], finished: &mut Finished) {
    let mut told = vec![false; ctxs.len()];
    let mut tell = |k: usize, result: Result<Provenance>| {
        if !std::mem::replace(&mut told[k], true) {
            finished(k, result);
        }
    };
    let sent = || -> Result<(PathBuf, PathBuf)> {
        let jobs: Vec<PathBuf> =
            ps.iter().zip(ctxs).map(|(p, ctx)| write_job(kind, p, ctx)).collect::<Result<_>>()?;
        let group = ctxs[0].scratch.join("group.json");
        std::fs::write(&group, serde_json::to_vec(&jobs)?)?;
        Ok((helper()?, group))
    };
    let (program, group) = match sent() {
        Ok(sent) => sent,
        Err(e) => {
            for k in 0..ctxs.len() {
                tell(k, Err(anyhow!("{e:#}")));
            }
            return;
        }
    };
    let progress = |k: usize, update: &wormflow_api::Progress| (ctxs[k].progress)(update);
    let mut answered = |k: usize, answer: Result<(), String>, served: &Served| {
        keep_log(&ctxs[k], &served.log);
        tell(
            k,
            match answer {
                Ok(()) => provenance_of(&ctxs[k], served),
                Err(message) => Err(anyhow!("{message}")),
            },
        )
    };
    let helpers = ctxs[0].helpers;
    let ran =
        helpers.run_group(&program, &group, ctxs.len(), ctxs[0].cancel, &progress, &mut answered);
    if let Err(e) = ran {
        let cancelled = matches!(e, HelperError::Cancelled);
        let message = format!("{:#}", helper_error(e));
        for k in 0..ctxs.len() {
            tell(
                k,
                Err(if cancelled {
                    anyhow::Error::new(wormflow_api::cancel::Cancelled).context(message.clone())
                } else {
                    anyhow!("{message}")
                }),
            );
        }
    }
}
