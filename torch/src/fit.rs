//! Training a stack of models (`stacked.rs`) at once, each member on its own terms: its own
//! windows and batch order, AdamW state, learning rate (warm-up, ReduceLROnPlateau), early
//! stopping, divergence check and best weights. Members with fewer windows have shorter
//! epochs; a member that stops leaves the later steps. Every node trains this way — alone
//! it is a stack of one — so a node's result does not depend on its company.
//!
//! Shapes are the member's own: at each step the members present are bucketed by how many
//! windows their batch has, and each bucket runs as one stacked pass (no padding, so a
//! member's arithmetic has the same shapes whatever shares its stack).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use rand::seq::SliceRandom;
use tch::{Kind, Tensor};
use wormflow_api::{Progress, StageContext};

use crate::stacked::{Draws, Stack, Weights};
use crate::tensors::WindowSet;
use crate::train::{Outcome, Params, TrainingData};
use wormflow_stages::metrics::{Epoch, Learning};
use wormflow_stages::rng::stream;
use wormflow_stages::torch_stages::Loss;

/// One member of a stack: its node's params, data and context.
pub struct Member<'a> {
    pub params: &'a Params,
    pub data: &'a TrainingData,
    pub ctx: &'a StageContext<'a>,
}

/// AdamW (decoupled weight decay, PyTorch's update) over stacked parameters, with each
/// member's own step count and learning rate; a member absent from a step is left as is.
pub struct AdamW {
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

/// Saving a member's training state, and resuming from it (`wormflow_api::checkpoint`).
/// Everything random in training is drawn from (seed, epoch) or (seed, step) streams, so
/// weights, AdamW moments and the course's counters are the whole state: a resumed node
/// continues exactly where the saved one was (on CPU, the same bytes as never stopped).
mod checkpoints {
    use std::time::Instant;

    use anyhow::{bail, Context, Result};
    use serde::{Deserialize, Serialize};
    use tch::Tensor;

    use super::{AdamW, Course, Member};
    use crate::stacked::Stack;
    use wormflow_stages::metrics::Epoch;

    const TENSORS: &str = "state.safetensors";
    const COURSE: &str = "course.json";

    /// A course in numbers, floats as their bits (JSON text would round them).
    #[derive(Serialize, Deserialize)]
    struct Saved {
        /// Whose it is: a checkpoint of another key or torch is never used.
        key: String,
        torch: String,
        epoch: u64,
        lr: u64,
        steps: u64,
        initial: u64,
        best_val: u64,
        best_epoch: u64,
        plateau_best: u64,
        plateau_bad: u64,
        /// (epoch, train_loss, val_loss, lr, seconds) per epoch so far.
        metrics: Vec<(i64, u64, u64, u64, u64)>,
        validation_seconds: u64,
    }

    pub(super) fn save(
        dir: &std::path::Path,
        stack: &Stack,
        adam: &AdamW,
        k: usize,
        m: &Member,
        c: &mut Course,
    ) {
        let result = wormflow_api::checkpoint::save(dir, |into| {
            let mut tensors: Vec<(String, Tensor)> = Vec::new();
            tch::no_grad(|| {
                for (j, name) in stack.names.iter().enumerate() {
                    let at =
                        |t: &Tensor| t.get(k as i64).detach().to_device(tch::Device::Cpu).copy();
                    tensors.push((format!("param/{name}"), at(&stack.params[j])));
                    tensors.push((format!("exp_avg/{name}"), at(&adam.exp_avg[j])));
                    tensors.push((format!("exp_avg_sq/{name}"), at(&adam.exp_avg_sq[j])));
                }
            });
            for (name, t) in &c.weights {
                tensors.push((format!("best/{name}"), t.shallow_clone()));
            }
            Tensor::write_safetensors(&tensors, into.join(TENSORS))?;
            let saved = Saved {
                key: m.ctx.origin.key.clone(),
                torch: env!("WORMFLOW_TORCH_VERSION").into(),
                epoch: c.epoch,
                lr: c.lr.to_bits(),
                steps: c.steps,
                initial: c.initial.to_bits(),
                best_val: c.best_val.to_bits(),
                best_epoch: c.best_epoch,
                plateau_best: c.plateau_best.to_bits(),
                plateau_bad: c.plateau_bad,
                metrics: c
                    .metrics
                    .iter()
                    .map(|e| {
                        (
                            e.epoch,
                            e.train_loss.to_bits(),
                            e.val_loss.to_bits(),
                            e.lr.to_bits(),
                            e.seconds.to_bits(),
                        )
                    })
                    .collect(),
                validation_seconds: c.validation_seconds.to_bits(),
            };
            std::fs::write(into.join(COURSE), serde_json::to_vec(&saved)?)?;
            Ok(())
        });
        c.saved = (c.epoch, Instant::now());
        match result {
            Ok(()) => eprintln!("{}: checkpoint after epoch {}", m.ctx.node, c.epoch),
            // Training goes on; the next attempt would start from an older checkpoint.
            Err(e) => eprintln!(
                "{}: warning: could not save a checkpoint after epoch {} ({e:#}); training goes on",
                m.ctx.node, c.epoch
            ),
        }
    }

    /// Restore member `k` from its newest whole checkpoint, if it has one that is its own.
    pub(super) fn resume(
        dir: &std::path::Path,
        stack: &mut Stack,
        adam: &mut AdamW,
        k: usize,
        m: &Member,
        c: &mut Course,
    ) {
        let (latest, discarded) = wormflow_api::checkpoint::latest(dir);
        let say = |what: &str| {
            eprintln!("{}: {what}", m.ctx.node);
            (m.ctx.progress)(&wormflow_api::Progress::notice(0.0, what));
        };
        for why in &discarded {
            say(&format!("warning: {why}; starting from epoch 0"));
        }
        let Some(generation) = latest else { return };
        match restore(&generation, stack, adam, k, m, c) {
            Ok(()) => {
                c.resumed_from = c.epoch;
                say(&format!("resumed from epoch {}", c.epoch));
            }
            Err(e) => {
                say(&format!(
                    "warning: checkpoint {} not used ({e:#}); starting from epoch 0",
                    generation.display()
                ));
                let _ = std::fs::remove_dir_all(&generation);
            }
        }
    }

    fn restore(
        generation: &std::path::Path,
        stack: &mut Stack,
        adam: &mut AdamW,
        k: usize,
        m: &Member,
        c: &mut Course,
    ) -> Result<()> {
        let saved: Saved = serde_json::from_slice(&std::fs::read(generation.join(COURSE))?)
            .context("its course is unreadable")?;
        if saved.key != m.ctx.origin.key {
            bail!("it belongs to key {}, not this node's {}", saved.key, m.ctx.origin.key);
        }
        let torch = env!("WORMFLOW_TORCH_VERSION");
        if saved.torch != torch {
            bail!("it was written with torch {}, this is {torch}", saved.torch);
        }
        let tensors: std::collections::BTreeMap<String, Tensor> =
            Tensor::read_safetensors(generation.join(TENSORS))?.into_iter().collect();
        let device = stack.params[0].device();
        // Check everything before changing anything.
        let mut best = Vec::new();
        for (j, name) in stack.names.iter().enumerate() {
            let want = stack.params[j].get(k as i64).size();
            for part in ["param", "exp_avg", "exp_avg_sq", "best"] {
                let t = tensors
                    .get(&format!("{part}/{name}"))
                    .with_context(|| format!("it lacks {part}/{name}"))?;
                if t.size() != want || t.kind() != stack.params[j].kind() {
                    bail!("{part}/{name} has shape {:?}, the model {want:?}", t.size());
                }
            }
            best.push((name.clone(), tensors[&format!("best/{name}")].shallow_clone()));
        }
        tch::no_grad(|| {
            for (j, name) in stack.names.iter().enumerate() {
                let k = k as i64;
                stack.params[j].get(k).copy_(&tensors[&format!("param/{name}")].to_device(device));
                adam.exp_avg[j]
                    .get(k)
                    .copy_(&tensors[&format!("exp_avg/{name}")].to_device(device));
                adam.exp_avg_sq[j]
                    .get(k)
                    .copy_(&tensors[&format!("exp_avg_sq/{name}")].to_device(device));
            }
        });
        let f = f64::from_bits;
        c.epoch = saved.epoch;
        c.lr = f(saved.lr);
        c.steps = saved.steps;
        c.initial = f(saved.initial);
        c.best_val = f(saved.best_val);
        c.best_epoch = saved.best_epoch;
        c.weights = best;
        c.plateau_best = f(saved.plateau_best);
        c.plateau_bad = saved.plateau_bad;
        c.metrics = saved
            .metrics
            .iter()
            .map(|&(epoch, t, v, lr, s)| Epoch {
                epoch,
                train_loss: f(t),
                val_loss: f(v),
                lr: f(lr),
                seconds: f(s),
            })
            .collect();
        c.validation_seconds = f(saved.validation_seconds);
        c.saved = (c.epoch, Instant::now());
        c.stopped = c.epoch >= m.params.epochs;
        Ok(())
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl AdamW {
    pub fn new(stack: &Stack) -> AdamW {
        let zeros = || stack.params.iter().map(|p| p.zeros_like()).collect();
        AdamW { exp_avg: zeros(), exp_avg_sq: zeros() }
    }

    /// One step for the members with `Some((lr, weight_decay, step))`.
    pub fn step(&mut self, stack: &mut Stack, members: &[Option<(f64, f64, u64)>]) {
        let device = stack.params[0].device();
        let per_member = |f: &dyn Fn(f64, f64, u64) -> f64, absent: f64| -> Tensor {
            let values: Vec<f32> = members
                .iter()
                .map(|m| m.map_or(absent, |(lr, wd, n)| f(lr, wd, n)) as f32)
                .collect();
            Tensor::from_slice(&values).to_device(device)
        };
        let decay = per_member(&|lr, wd, _| 1.0 - lr * wd, 1.0);
        let beta1 = per_member(&|_, _, _| BETA1, 1.0);
        let beta2 = per_member(&|_, _, _| BETA2, 1.0);
        let rate = per_member(&|lr, _, n| lr / (1.0 - BETA1.powi(n as i32)), 0.0);
        let correction2 = per_member(&|_, _, n| (1.0 - BETA2.powi(n as i32)).sqrt(), 1.0);
        tch::no_grad(|| {
            for (j, param) in stack.params.iter_mut().enumerate() {
                let grad = param.grad();
                if !grad.defined() {
                    continue;
                }
                let mut shape = vec![-1i64];
                shape.extend(std::iter::repeat_n(1, param.dim() - 1));
                let at = |t: &Tensor| t.view(shape.as_slice());
                let _ = param.g_mul_(&at(&decay));
                let (m, v) = (&mut self.exp_avg[j], &mut self.exp_avg_sq[j]);
                let keep1 = at(&beta1);
                let keep2 = at(&beta2);
                let _ = m.g_mul_(&keep1).g_add_(&(&grad * (1.0 - &keep1)));
                let _ = v.g_mul_(&keep2).g_add_(&(&grad * &grad * (1.0 - &keep2)));
                let denom = v.sqrt() / at(&correction2) + EPS;
                let _ = param.g_sub_(&(&*m / denom * at(&rate)));
            }
        });
    }
}

/// Where one member's training stands.
struct Course {
    /// The last epoch finished.
    epoch: u64,
    lr: f64,
    steps: u64,
    initial: f64,
    best_val: f64,
    best_epoch: u64,
    weights: Vec<(String, Tensor)>,
    plateau_best: f64,
    plateau_bad: u64,
    metrics: Vec<Epoch>,
    diverged: Option<String>,
    stopped: bool,
    validation_seconds: f64,
    /// The epoch it resumed after (0: it started afresh), and when it last saved.
    resumed_from: u64,
    saved: (u64, Instant),
}

/// The rate of a member's optimizer step n (1-based): ramps linearly up to lr over its
/// warm-up steps.
fn warmed(p: &Params, lr: f64, n: u64) -> f64 {
    if n < p.warmup_steps {
        lr * n as f64 / p.warmup_steps as f64
    } else {
        lr
    }
}

/// Train the stack. Each member's outcome goes to `stopped` (with its index) as soon as
/// that member stops, so its node can be written while the others train on. Cancelling
/// stops them all.
pub fn fit(
    stack: &mut Stack,
    members: &[Member],
    stopped: &mut dyn FnMut(usize, Outcome),
) -> Result<()> {
    let mut adam = AdamW::new(stack);
    let all: Vec<usize> = (0..members.len()).collect();
    let validation_batch = |m: &Member| m.params.batch_size.max(256);
    let clock = Instant::now();
    let initial_val = losses_over(stack, members, &all, |d| &d.val, validation_batch);
    let initial_train = losses_over(stack, members, &all, |d| &d.train, validation_batch);
    let seconds = clock.elapsed().as_secs_f64() / 2.0;
    let mut courses: Vec<Course> = members
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let initial = initial_val[k];
            Course {
                epoch: 0,
                lr: m.params.lr,
                steps: 0,
                initial,
                // Epoch 0 is the untrained model: kept if training never does better (for a
                // residual model that is exactly the Baseline).
                best_val: if initial.is_finite() { initial } else { f64::INFINITY },
                best_epoch: 0,
                weights: stack.member(k as i64),
                plateau_best: f64::INFINITY,
                plateau_bad: 0,
                metrics: vec![Epoch {
                    epoch: 0,
                    train_loss: initial_train[k],
                    val_loss: initial,
                    lr: m.params.lr,
                    seconds: 0.0,
                }],
                diverged: None,
                stopped: m.params.epochs == 0,
                validation_seconds: seconds,
                resumed_from: 0,
                saved: (0, Instant::now()),
            }
        })
        .collect();
    for (k, m) in members.iter().enumerate() {
        if let Some(dir) = m.ctx.checkpoints {
            checkpoints::resume(dir, stack, &mut adam, k, m, &mut courses[k]);
        }
        if courses[k].stopped {
            stopped(k, finish(&mut courses[k], m.params.residual));
        }
    }
    loop {
        let active: Vec<usize> = all.iter().copied().filter(|&k| !courses[k].stopped).collect();
        if active.is_empty() {
            break;
        }
        let clock = Instant::now();
        // Each member's batches in its next epoch, from its own seeded shuffle.
        let batches: BTreeMap<usize, Vec<Vec<i64>>> = active
            .iter()
            .map(|&k| {
                let p = members[k].params;
                let mut order: Vec<i64> = (0..members[k].data.train.len()).collect();
                order.shuffle(&mut stream(p.seed, "batches", courses[k].epoch + 1));
                (k, order.chunks(p.batch_size as usize).map(<[i64]>::to_vec).collect())
            })
            .collect();
        let n_steps = batches.values().map(Vec::len).max().unwrap_or(0);
        let mut sums: BTreeMap<usize, (f64, i64)> = BTreeMap::new();
        for s in 0..n_steps {
            members[0].ctx.check_cancel()?; // SIGTERM from the engine: stop within a batch
            let present: Vec<usize> =
                active.iter().copied().filter(|k| s < batches[k].len()).collect();
            for &k in &present {
                courses[k].steps += 1;
            }
            for p in &mut stack.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            // Members whose batches have the same size share a pass.
            let mut buckets: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for &k in &present {
                buckets.entry(batches[&k][s].len()).or_default().push(k);
            }
            for bucket in buckets.values() {
                let rows: Vec<&[i64]> = bucket.iter().map(|k| batches[k][s].as_slice()).collect();
                let draws = Draws::new(
                    bucket.iter().map(|&k| (members[k].params.seed, courses[k].steps)).collect(),
                );
                let losses: Vec<Tensor> =
                    stacked_errors(stack, members, bucket, &rows, |d| &d.train, true, &draws)
                        .into_iter()
                        .map(|(sse, count)| sse / count)
                        .collect();
                let total = Tensor::stack(&losses, 0).sum(Kind::Float);
                total.backward();
                let values = Vec::<f64>::try_from(Tensor::stack(&losses, 0).to_kind(Kind::Double))?;
                for ((&k, loss), r) in bucket.iter().zip(values).zip(&rows) {
                    let e = sums.entry(k).or_insert((0.0, 0));
                    e.0 += loss * r.len() as f64;
                    e.1 += r.len() as i64;
                }
            }
            clip_gradients(stack, members, &present);
            let settings: Vec<Option<(f64, f64, u64)>> = (0..members.len())
                .map(|k| {
                    present.contains(&k).then(|| {
                        let (p, c) = (members[k].params, &courses[k]);
                        (warmed(p, c.lr, c.steps), p.weight_decay, c.steps)
                    })
                })
                .collect();
            adam.step(stack, &settings);
        }
        let validating = Instant::now();
        let val = losses_over(stack, members, &active, |d| &d.val, validation_batch);
        let validation = validating.elapsed().as_secs_f64();
        let seconds = clock.elapsed().as_secs_f64();
        for (&k, &val_loss) in active.iter().zip(&val) {
            let (p, c) = (members[k].params, &mut courses[k]);
            c.epoch += 1;
            let epoch = c.epoch;
            c.validation_seconds += validation;
            let (sum, seen) = sums.get(&k).copied().unwrap_or((f64::NAN, 1));
            let train_loss = sum / seen as f64;
            // The learning rate the epoch's last step used (below lr while warming up).
            let lr = warmed(p, c.lr, c.steps);
            c.metrics.push(Epoch { epoch: epoch as i64, train_loss, val_loss, lr, seconds });
            (members[k].ctx.progress)(&Progress {
                fraction: epoch as f64 / p.epochs as f64,
                message: format!(
                    "epoch {epoch}/{}: train {train_loss:.4} val {val_loss:.4}",
                    p.epochs
                ),
                epoch: Some(epoch),
                epochs: Some(p.epochs),
                train_loss: Some(train_loss),
                val_loss: Some(val_loss),
                notice: false,
            });
            c.stopped = settle_epoch(p, c, epoch, train_loss, val_loss, || stack.member(k as i64));
            if let Some(dir) = members[k].ctx.checkpoints.filter(|_| !c.stopped) {
                let due = epoch - c.saved.0 >= p.checkpoint_every
                    || c.saved.1.elapsed().as_secs_f64() >= p.checkpoint_minutes * 60.0;
                if due {
                    checkpoints::save(dir, stack, &adam, k, &members[k], c);
                }
            }
            if c.stopped {
                stopped(k, finish(c, p.residual));
            }
        }
    }
    Ok(())
}

/// After a member's epoch: divergence, best weights, plateau, early stopping. Whether it
/// stops here.
fn settle_epoch(
    p: &Params,
    c: &mut Course,
    epoch: u64,
    train_loss: f64,
    val_loss: f64,
    weights: impl FnOnce() -> Vec<(String, Tensor)>,
) -> bool {
    if !train_loss.is_finite() || !val_loss.is_finite() || val_loss > p.diverged_above * c.initial {
        c.diverged = Some(format!(
            "at epoch {epoch} the training loss was {train_loss:.3e} and the validation loss {val_loss:.3e} ({:.3e} × the untrained model's {:.3e}); training stopped, the weights of epoch {} are kept; lower params.lr or set params.grad_clip",
            val_loss / c.initial, c.initial, c.best_epoch
        ));
        return true;
    }
    if val_loss < c.best_val {
        (c.best_val, c.best_epoch, c.weights) = (val_loss, epoch, weights());
    }
    // ReduceLROnPlateau (relative threshold 1e-4, as PyTorch's default).
    if val_loss < c.plateau_best * (1.0 - 1e-4) {
        (c.plateau_best, c.plateau_bad) = (val_loss, 0);
    } else {
        c.plateau_bad += 1;
        if c.plateau_bad > p.plateau_patience {
            c.lr *= p.plateau_factor;
            c.plateau_bad = 0;
        }
    }
    epoch - c.best_epoch >= p.early_stopping || epoch >= p.epochs
}

/// A stopped member's outcome (its course's metrics and weights move into it).
fn finish(c: &mut Course, residual: bool) -> Outcome {
    let epochs_run = c.metrics.len() - 1;
    let (learning, learning_note) = match c.diverged.take() {
        Some(note) => (Learning::Diverged, note),
        None if c.best_epoch == 0 => (
            Learning::NeverImproved,
            format!(
                "no epoch of {epochs_run} beat the untrained model's validation loss {:.4e}; the stored weights are the initial ones{}",
                c.initial,
                if residual { " (for a residual model: exactly the Baseline, which on data nothing can predict is the expected result)" } else { "" }
            ),
        ),
        None => (Learning::Learned, String::new()),
    };
    Outcome {
        resumed_from: c.resumed_from,
        metrics: std::mem::take(&mut c.metrics),
        best_val: c.best_val,
        best_epoch: c.best_epoch,
        steps: c.steps,
        learning,
        learning_note,
        weights: std::mem::take(&mut c.weights),
        validation_seconds: c.validation_seconds,
    }
}

/// Clip each present member's gradient norm to its `grad_clip` (0: none, as the study).
fn clip_gradients(stack: &Stack, members: &[Member], present: &[usize]) {
    let limits: Vec<f64> = (0..members.len())
        .map(|k| if present.contains(&k) { members[k].params.grad_clip } else { 0.0 })
        .collect();
    if limits.iter().all(|&l| l <= 0.0) {
        return;
    }
    tch::no_grad(|| {
        let squares: Vec<Tensor> = stack
            .params
            .iter()
            .map(|p| p.grad())
            .filter(Tensor::defined)
            .map(|g| g.square().flatten(1, -1).sum_dim_intlist(1, false, Kind::Float))
            .collect();
        let norms = Vec::<f64>::try_from(
            Tensor::stack(&squares, 0).sum_dim_intlist(0, false, Kind::Double).sqrt(),
        )
        .unwrap_or_default();
        let factors: Vec<f32> = limits
            .iter()
            .zip(&norms)
            .map(|(&limit, &norm)| if limit > 0.0 { (limit / (norm + 1e-6)).min(1.0) } else { 1.0 } as f32)
            .collect();
        let factors = Tensor::from_slice(&factors).to_device(stack.params[0].device());
        for p in &stack.params {
            let mut g = p.grad();
            if g.defined() {
                let mut shape = vec![-1i64];
                shape.extend(std::iter::repeat_n(1, p.dim() - 1));
                let _ = g.g_mul_(&factors.view(shape.as_slice()));
            }
        }
    });
}

/// The masked next-step error of each member in `bucket` on its rows `rows[i]` of `set` —
/// summed over its terms by the members' loss (squared, absolute or Huber; one loss per
/// stack) — and its number of terms, as 0-d tensors (with gradients when `train`).
fn stacked_errors(
    stack: &Stack,
    members: &[Member],
    bucket: &[usize],
    rows: &[&[i64]],
    set: impl Fn(&TrainingData) -> &WindowSet,
    train: bool,
    draws: &Draws,
) -> Vec<(Tensor, Tensor)> {
    let device = stack.params[0].device();
    let (mut xs, mut ys, mut masks) = (Vec::new(), Vec::new(), Vec::new());
    for (&k, r) in bucket.iter().zip(rows) {
        let data = set(members[k].data);
        // A run of consecutive windows (validation batches) is a view; a shuffled batch
        // is gathered. Copying windows costs as much as a small model's forward pass.
        let consecutive = r.windows(2).all(|p| p[1] == p[0] + 1);
        let pick = |t: &Tensor| match (consecutive, r.first()) {
            (true, Some(&from)) => t.narrow(0, from, r.len() as i64),
            _ => t.index_select(0, &Tensor::from_slice(r).to_device(device)),
        };
        xs.push(pick(&data.x));
        ys.push(pick(&data.y));
        masks.push(pick(&data.mask));
    }
    // One member: its batch with a leading dimension of one, a view, not a copy.
    let together = |parts: &[Tensor]| match parts {
        [one] => one.unsqueeze(0),
        _ => Tensor::stack(parts, 0),
    };
    let (x, y, mask) = (together(&xs), together(&ys), together(&masks));
    let subset =
        (bucket.len() as i64) < stack.len() || bucket.iter().enumerate().any(|(i, &k)| i != k);
    let index = subset.then(|| {
        Tensor::from_slice(&bucket.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(device)
    });
    let weights = stack.weights(index.as_ref());
    let params = members[bucket[0]].params;
    let warmup = crate::models::warmup_steps(&params.model, stack.lookback());
    let (pred, y) =
        scored(stack, &weights, (&x, &y, &mask), params.horizon_train, warmup, train, draws);
    let steps = pred.size()[2] as f64;
    let error = match params.loss {
        Loss::Mse => (pred - &y).square(),
        Loss::Mae => (pred - &y).abs(),
        Loss::Huber => pred.huber_loss(&y, tch::Reduction::None, 1.0),
    } * &mask;
    // Reduced member by member: the same reduction whatever the stack's size.
    (0..bucket.len() as i64)
        .map(|i| (error.get(i).sum(Kind::Float), mask.get(i).sum(Kind::Float) * steps))
        .collect()
}

/// What a member's loss compares, (M, B, S, 302) predictions and targets:
/// - `horizon_train = 1`: the next-step prediction at every position from `warmup` on (the
///   study's objective; a lookback model's first positions see a padded past);
/// - k > 1: the window's T + 1 steps cut into a teacher-forced context (the first T + 1 − k)
///   and the k steps after it, which the model predicts on its own outputs, each appended
///   to the context (a lookback model is given only its lookback) — POCO's multi-step loss.
///
/// Unrecorded neurons are zeroed in every input, so they never reach loss or gradients.
fn scored(
    stack: &Stack,
    weights: &Weights,
    (x, y, mask): (&Tensor, &Tensor, &Tensor),
    horizon: i64,
    warmup: i64,
    train: bool,
    draws: &Draws,
) -> (Tensor, Tensor) {
    let t = x.size()[2];
    if horizon == 1 {
        let pred = stack.forward(weights, &(x * mask), train, draws);
        return (pred.narrow(2, warmup, t - warmup), y.narrow(2, warmup, t - warmup));
    }
    let all = Tensor::cat(&[x.shallow_clone(), y.narrow(2, t - 1, 1)], 2); // T + 1 steps
    let context = t + 1 - horizon;
    let mut seq = all.narrow(2, 0, context) * mask;
    let mut predicted = Vec::with_capacity(horizon as usize);
    for _ in 0..horizon {
        let len = seq.size()[2];
        let seen = if warmup > 0 {
            seq.narrow(2, len - warmup - 1, warmup + 1)
        } else {
            seq.shallow_clone()
        };
        let out = stack.forward(weights, &seen, train, draws);
        let next = out.narrow(2, out.size()[2] - 1, 1) * mask;
        seq = Tensor::cat(&[&seq, &next], 2);
        predicted.push(next);
    }
    (Tensor::cat(&predicted, 2), all.narrow(2, context, horizon))
}

/// Each listed member's masked MSE over its whole set, without gradients, in batches of
/// its validation batch size.
fn losses_over(
    stack: &Stack,
    members: &[Member],
    which: &[usize],
    set: impl Fn(&TrainingData) -> &WindowSet + Copy,
    batch: impl Fn(&Member) -> i64,
) -> Vec<f64> {
    tch::no_grad(|| {
        let mut totals: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        let mut start = 0i64;
        loop {
            // This round's rows of each member that has any left, bucketed by count.
            let mut buckets: BTreeMap<i64, Vec<(usize, Vec<i64>)>> = BTreeMap::new();
            for &k in which {
                let n = set(members[k].data).len();
                let size = batch(&members[k]);
                if start * size < n {
                    let from = start * size;
                    let rows: Vec<i64> = (from..(from + size).min(n)).collect();
                    buckets.entry(rows.len() as i64).or_default().push((k, rows));
                }
            }
            if buckets.is_empty() {
                break;
            }
            for bucket in buckets.values() {
                let ks: Vec<usize> = bucket.iter().map(|(k, _)| *k).collect();
                let rows: Vec<&[i64]> = bucket.iter().map(|(_, r)| r.as_slice()).collect();
                let draws = Draws::new(vec![(0, 0); ks.len()]);
                let errors = stacked_errors(stack, members, &ks, &rows, set, false, &draws);
                // The whole set's MSE pools its batches' squared errors as one.
                for (k, (sse, count)) in ks.iter().zip(errors) {
                    let e = totals.entry(*k).or_insert((0.0, 0.0));
                    e.0 += sse.double_value(&[]);
                    e.1 += count.double_value(&[]);
                }
            }
            start += 1;
        }
        which.iter().map(|k| totals.get(k).map_or(f64::NAN, |(s, c)| s / c)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Options;
    use tch::Device;

    /// A stack of models that copy their input (a residual Linear with a zero readout, and
    /// an NLinear with zero maps: the last value plus nothing), so what `scored` compares is
    /// known exactly.
    fn copying(model: &str, hidden: i64) -> Stack {
        let options =
            Options { hidden, residual: model == "linear", dropout: 0.0, lookback: hidden };
        let stack = Stack::new(model, options, &[1, 2], Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (name, p) in stack.names.iter().zip(&stack.params) {
                if name.starts_with("readout.") || model == "nlinear" {
                    let _ = p.shallow_clone().zero_();
                }
            }
        });
        stack
    }

    #[test]
    fn rollouts_score_the_last_k_steps_from_the_rest_of_the_window() {
        let _rng = crate::global_rng();
        let all = Tensor::randn([2, 3, 13, 302], (Kind::Float, Device::Cpu)); // T + 1 = 13
        let (x, y) = (all.narrow(2, 0, 12), all.narrow(2, 1, 12));
        let mask = Tensor::ones([2, 3, 1, 302], (Kind::Float, Device::Cpu));
        let draws = Draws::new(vec![(0, 0); 2]);
        for (model, hidden, warmup) in [("linear", 8, 0), ("nlinear", 5, 4)] {
            let stack = copying(model, hidden);
            let w = stack.weights(None);
            // k = 1: every position from the warm-up on, against the next step.
            let (pred, target) = scored(&stack, &w, (&x, &y, &mask), 1, warmup, false, &draws);
            assert_eq!(pred.size()[2], 12 - warmup, "{model}");
            assert!(pred.allclose(&x.narrow(2, warmup, 12 - warmup), 1e-6, 1e-6, false));
            assert!(target.equal(&y.narrow(2, warmup, 12 - warmup)));
            // k = 4: a copier rolled out repeats the context's last step (step 9 of 13);
            // the targets are the window's last 4 steps.
            let (pred, target) = scored(&stack, &w, (&x, &y, &mask), 4, warmup, false, &draws);
            let last = all.narrow(2, 8, 1).expand([2, 3, 4, 302], false);
            assert!(pred.allclose(&last, 1e-6, 1e-6, false), "{model}");
            assert!(target.equal(&all.narrow(2, 9, 4)), "{model}");
        }
    }
}
