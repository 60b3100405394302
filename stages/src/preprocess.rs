//! Kind `preprocess`: per worm and neuron, z-score over the full trace (population std,
//! ddof = 0) → causal exponential smoothing s₀ = x₀, sₜ = α·xₜ + (1−α)·sₜ₋₁ → linear
//! resampling onto t = t₀, t₀+Δt, … < t_end. Worms are processed in parallel (rayon);
//! the result does not depend on the number of threads.
//!
//! A neuron whose trace is constant (std = 0) or not finite is masked out (null), counted
//! in the worm's `masked_neurons`, and never turned into NaN output. All inputs' recordings
//! are concatenated in input order, so one node can pool several datasets.

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::StageContext;

use crate::stage::Stage;
use crate::table::{read_recordings, write_dataset, Worm};

pub struct Preprocess;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Standardise each neuron's trace to mean 0, std 1.
    pub zscore: bool,
    /// Smoothing factor α in (0, 1]; 1 turns smoothing off.
    pub smooth_alpha: f64,
    /// Resampling step in seconds; 0 keeps the original time stamps.
    pub resample_dt: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { zscore: true, smooth_alpha: 0.5, resample_dt: 0.667 }
    }
}

impl Stage for Preprocess {
    const NAME: &'static str = "preprocess";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_PREPROCESS");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !(p.smooth_alpha > 0.0 && p.smooth_alpha <= 1.0) {
            return Err(format!("params.smooth_alpha must be in (0, 1] (1 = no smoothing); got {}", p.smooth_alpha));
        }
        if !(p.resample_dt >= 0.0 && p.resample_dt.is_finite()) {
            return Err(format!("params.resample_dt must be ≥ 0 seconds (0 = no resampling); got {}", p.resample_dt));
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let mut worms = Vec::new();
        for input in ctx.inputs {
            worms.extend(read_recordings(&input.dir)?);
        }
        if worms.is_empty() {
            bail!("no recordings among the inputs; `needs` should name standardize or synthesize stages");
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(ctx.threads.max(1)).build()?;
        let out: Vec<Worm> = pool.install(|| worms.par_iter().map(|w| preprocess_worm(w, &p)).collect::<Result<_>>())?;
        write_dataset(ctx.out_dir, &out)?;
        let masked: u32 = out.iter().map(|w| w.info.masked_neurons).sum::<u32>() - worms.iter().map(|w| w.info.masked_neurons).sum::<u32>();
        let mut prov = Map::new();
        prov.insert("worms".into(), json!(out.len()));
        prov.insert("masked_neurons".into(), json!(masked));
        Ok(prov)
    }
}

/// The three steps for one worm.
pub fn preprocess_worm(w: &Worm, p: &Params) -> Result<Worm> {
    let resample = p.resample_dt > 0.0;
    let grid = if resample { resample_grid(&w.t, p.resample_dt) } else { w.t.clone() };
    if grid.len() < 2 {
        bail!("worm {} of {}: {} time steps after resampling to {} s; the recording is too short", w.worm, w.dataset, grid.len(), p.resample_dt);
    }
    // Where each grid point falls is the same for every neuron: find it once.
    let weights = if resample { interpolation_weights(&w.t, &grid) } else { Vec::new() };
    let mut info = w.info.clone();
    let mut traces: Vec<Option<Vec<f32>>> = vec![None; w.traces.len()];
    // Scale and offset per neuron; masked neurons are dropped here.
    let mut kept: Vec<(usize, &[f32], f64, f64)> = Vec::new();
    for (slot, trace) in w.traces.iter().enumerate() {
        let Some(trace) = trace else { continue };
        match moments(trace) {
            Some((mean, std)) if std > 0.0 => {
                let (offset, scale) = if p.zscore { (mean, std) } else { (0.0, 1.0) };
                kept.push((slot, trace, offset, scale));
            }
            _ => info.masked_neurons += 1,
        }
    }
    // Smooth several neurons at once: their recurrences are independent, so the CPU
    // overlaps them instead of waiting on one chain of multiply-adds.
    const LANES: usize = 8;
    let n = w.t.len();
    let alpha = p.smooth_alpha;
    let mut smoothed = vec![0.0f64; LANES * n];
    for group in kept.chunks(LANES) {
        let mut state = [0.0f64; LANES];
        for (lane, &(_, x, offset, scale)) in group.iter().enumerate() {
            state[lane] = (x[0] as f64 - offset) / scale;
            smoothed[lane * n] = state[lane];
        }
        let inverse: Vec<f64> = group.iter().map(|g| 1.0 / g.3).collect();
        for k in 1..n {
            for (lane, &(_, x, offset, _)) in group.iter().enumerate() {
                let z = (x[k] as f64 - offset) * inverse[lane];
                state[lane] = alpha * z + (1.0 - alpha) * state[lane];
                smoothed[lane * n + k] = state[lane];
            }
        }
        for (lane, &(slot, ..)) in group.iter().enumerate() {
            let s = &smoothed[lane * n..(lane + 1) * n];
            traces[slot] = Some(if resample {
                weights.iter().map(|&(j, f)| (s[j] + f * (s[j + 1] - s[j])) as f32).collect()
            } else {
                s.iter().map(|&v| v as f32).collect()
            });
        }
    }
    Ok(Worm { dataset: w.dataset.clone(), worm: w.worm.clone(), t: grid, traces, info })
}

/// Mean and population standard deviation (two passes, f64); None unless both are finite.
fn moments(x: &[f32]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    let mean = sum_by_lanes(x, |v| v) / n;
    let var = sum_by_lanes(x, |v| (v - mean) * (v - mean)) / n;
    (mean.is_finite() && var.is_finite()).then(|| (mean, var.sqrt()))
}

/// Σ f(x) in f64 with eight running sums, so the additions are not one serial chain
/// (like numpy's pairwise sum, the order differs from a naive loop only in rounding).
fn sum_by_lanes(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v as f64);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&v| f(v as f64)).sum::<f64>()
}

/// t₀, t₀+Δt, … strictly before the last time stamp.
pub fn resample_grid(t: &[f64], dt: f64) -> Vec<f64> {
    let (Some(&t0), Some(&end)) = (t.first(), t.last()) else { return Vec::new() };
    (0..).map(|k| t0 + k as f64 * dt).take_while(|&x| x < end).collect()
}

/// For each point of `at` (increasing, within [t₀, t_end]): the segment j of `t` it falls
/// in and its fraction f, so that x(at) = x[j] + f·(x[j+1] − x[j]).
pub fn interpolation_weights(t: &[f64], at: &[f64]) -> Vec<(usize, f64)> {
    let mut out = Vec::with_capacity(at.len());
    let mut j = 0;
    for &a in at {
        while j + 2 < t.len() && t[j + 1] <= a {
            j += 1;
        }
        out.push((j, ((a - t[j]) / (t[j + 1] - t[j])).clamp(0.0, 1.0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neurons::N_NEURONS;

    /// A worm with one recorded neuron (slot 0), through the stage's own code path.
    fn one_neuron(t: Vec<f64>, x: &[f32], p: &Params) -> (Vec<f64>, Option<Vec<f32>>) {
        let mut traces = vec![None; N_NEURONS];
        traces[0] = Some(x.to_vec());
        let w = Worm { dataset: "d".into(), worm: "w".into(), t, traces, info: Default::default() };
        let out = preprocess_worm(&w, p).unwrap();
        (out.t, out.traces[0].clone())
    }

    #[test]
    fn zscore_has_mean_0_and_population_std_1() {
        let p = Params { zscore: true, smooth_alpha: 1.0, resample_dt: 0.0 };
        let (_, z) = one_neuron(vec![0.0, 1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0, 10.0], &p);
        let z: Vec<f64> = z.unwrap().into_iter().map(f64::from).collect();
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let std = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-6);
        // A constant neuron is masked, not turned into NaN.
        assert!(one_neuron(vec![0.0, 1.0, 2.0], &[3.0, 3.0, 3.0], &p).1.is_none());
    }

    #[test]
    fn ema_follows_the_formula() {
        let p = Params { zscore: false, smooth_alpha: 0.5, resample_dt: 0.0 };
        let (_, s) = one_neuron(vec![0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 1.0], &p);
        assert_eq!(s.unwrap(), vec![1.0, 2.0, 3.5, 2.25]);
    }

    #[test]
    fn resampling_is_exact_for_linear_signals() {
        let t: Vec<f64> = (0..100).map(|i| i as f64 * 0.6 + (i % 3) as f64 * 0.01).collect();
        let x: Vec<f32> = t.iter().map(|t| (2.0 * t - 1.0) as f32).collect();
        let p = Params { zscore: false, smooth_alpha: 1.0, resample_dt: 0.667 };
        let (grid, y) = one_neuron(t.clone(), &x, &p);
        assert!(*grid.last().unwrap() < *t.last().unwrap());
        assert_eq!(grid.len(), ((t[99] - t[0]) / 0.667).ceil() as usize);
        for (g, y) in grid.iter().zip(y.unwrap()) {
            assert!((y as f64 - (2.0 * g - 1.0)).abs() < 1e-4, "{g}: {y}");
        }
    }
}
