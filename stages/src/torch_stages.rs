//! The libtorch stage kinds as the engine sees them — `train` and `evaluate`: their params,
//! checks and code versions, without libtorch. Running one starts the `wormflow-torch`
//! helper (built beside `wormflow`) on a job file, so only processes that train or evaluate
//! load libtorch; every other command starts in milliseconds.
//!
//! Protocol: `wormflow-torch JOB.json` where the job holds kind, node, params, inputs,
//! out_dir, workspace, scratch and threads. The helper prints `progress FRACTION MESSAGE`
//! lines on stdout, writes its provenance to `SCRATCH/provenance.json`, and exits 0; on
//! failure it prints the error on stderr and exits 1.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wormflow_api::{InputNode, Provenance, StageContext};

use crate::stage::Stage;

/// The architectures `train` knows (see models/mod.rs for what each is).
pub const MODELS: &[&str] = &["baseline", "linear", "feedforward", "ctrnn", "lstm", "transformer", "attention"];

pub struct Train;
pub struct Evaluate;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// baseline | linear | feedforward | ctrnn | lstm | transformer | attention
    pub model: String,
    /// Hidden size; or 0 to pick it from `params_target`.
    pub hidden: i64,
    /// Parameter budget: the hidden size whose count is closest (when hidden = 0).
    pub params_target: i64,
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
    /// Clip the gradient norm to this before each step (0 = no clipping); keeps recurrent
    /// models from diverging over long windows.
    pub grad_clip: f64,
    /// Ramp the learning rate linearly from lr/warmup_steps up to lr over the first
    /// optimizer steps (0 = none, as in the study). Adam's first steps move every weight by
    /// about lr whatever its gradient, which throws a model whose features are all ≥ 0
    /// (CTRNN's ReLU state) far off its start.
    pub warmup_steps: u64,
    /// Predict the change from the current step (output = input + model) instead of the
    /// next step itself. Off by default, as in the study; see the README's model card.
    pub residual: bool,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            model: String::new(),
            hidden: 0,
            params_target: 0,
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
            grad_clip: 1.0,
            warmup_steps: 0,
            residual: false,
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
    /// Context steps before generating (as many are generated).
    pub context: i64,
    pub batch_size: i64,
    pub device: String,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        EvaluateParams { horizon: 50, generate_worms: 3, context: 180, batch_size: 256, device: "auto".into() }
    }
}

impl Stage for Train {
    const NAME: &'static str = "train";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_TRAIN");
    type Params = TrainParams;

    fn check(p: &TrainParams) -> Result<(), String> {
        if !MODELS.contains(&p.model.as_str()) {
            return Err(format!("params.model must be one of {}; got {:?}", MODELS.join(", "), p.model));
        }
        if p.model != "baseline" && (p.hidden < 0 || (p.hidden == 0 && p.params_target <= 0)) {
            return Err(format!("params.hidden must be ≥ 1 (or 0 with params_target > 0); got hidden = {}, params_target = {}", p.hidden, p.params_target));
        }
        if p.batch_size < 1 || !(p.lr > 0.0) || !(p.plateau_factor > 0.0 && p.plateau_factor < 1.0) {
            return Err("need batch_size ≥ 1, lr > 0 and 0 < plateau_factor < 1".into());
        }
        if !matches!(p.device.as_str(), "auto" | "cpu") && !p.device.starts_with("cuda") {
            return Err(format!("params.device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"; got {:?}", p.device));
        }
        Ok(())
    }

    fn run(p: TrainParams, ctx: &StageContext) -> Result<Provenance> {
        run_helper(Self::NAME, &serde_json::to_value(p)?, ctx)
    }
}

impl Stage for Evaluate {
    const NAME: &'static str = "evaluate";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_EVALUATE");
    type Params = EvaluateParams;

    fn check(p: &EvaluateParams) -> Result<(), String> {
        if p.horizon < 1 || p.context < 2 || p.batch_size < 1 {
            return Err("need horizon ≥ 1, context ≥ 2 and batch_size ≥ 1".into());
        }
        Ok(())
    }

    fn run(p: EvaluateParams, ctx: &StageContext) -> Result<Provenance> {
        run_helper(Self::NAME, &serde_json::to_value(p)?, ctx)
    }
}

/// What the helper needs to rebuild the stage's context.
#[derive(Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub node: String,
    pub params: Value,
    pub inputs: Vec<InputNode>,
    pub out_dir: PathBuf,
    pub workspace: PathBuf,
    pub scratch: PathBuf,
    pub threads: usize,
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

fn run_helper(kind: &str, params: &Value, ctx: &StageContext) -> Result<Provenance> {
    let job = Job {
        kind: kind.into(),
        node: ctx.node.into(),
        params: params.clone(),
        inputs: ctx.inputs.to_vec(),
        out_dir: ctx.out_dir.into(),
        workspace: ctx.workspace.into(),
        scratch: ctx.scratch.into(),
        threads: ctx.threads,
    };
    let job_path = ctx.scratch.join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
    let mut child = Command::new(helper()?)
        .arg(&job_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start wormflow-torch")?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        if ctx.cancel.load(Ordering::Relaxed) {
            let _ = child.kill();
            break;
        }
        if let Some(rest) = line.strip_prefix("progress ") {
            let (fraction, message) = rest.split_once(' ').unwrap_or((rest, ""));
            (ctx.progress)(fraction.parse().unwrap_or(0.0), message);
        }
    }
    let status = child.wait()?;
    let errors = err_reader.join().unwrap_or_default();
    if !status.success() {
        let why = errors.trim();
        return Err(anyhow!("{}", if why.is_empty() { format!("wormflow-torch failed ({status})") } else { why.to_string() }));
    }
    let prov: Value = serde_json::from_slice(&std::fs::read(ctx.scratch.join("provenance.json")).unwrap_or_else(|_| b"{}".to_vec()))?;
    Ok(match prov {
        Value::Object(m) => m,
        _ => Map::from_iter([("helper".to_string(), json!("wormflow-torch"))]),
    })
}
