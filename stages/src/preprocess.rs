//! Kind `preprocess`: per worm and neuron, z-score over the full trace (population std,
//! ddof = 0) → causal exponential smoothing s₀ = x₀, sₜ = α·xₜ + (1−α)·sₜ₋₁ → resampling
//! to a step of Δt, as the study does it (`resample = "block_mean"`):
//! - a recording sampled at Δt or coarser (median step ≥ Δt) is interpolated linearly onto
//!   t₀, t₀+Δt, … < t_end (upsampling);
//! - a finer one is interpolated linearly onto a fine grid t₀ + j·Δt/6 < t_end and each
//!   complete block of 6 fine points is averaged (anti-aliasing); block k is labelled
//!   t₀ + k·Δt. The study's code computes the block as `int(dt // fine_dt)`, which in
//!   float64 is 5, not 6, for Δt = 0.667 itself (and for a third of all Δt in 0.05…3 s):
//!   wormflow uses 6, the rule the study intends.
//!
//! `resample = "linear"` interpolates point-wise onto t₀ + k·Δt in both directions
//! (keeps more high-frequency content when downsampling). Worms are processed in parallel
//! (rayon); the result does not depend on the number of threads.
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
    /// How recordings finer than `resample_dt` are brought to it.
    pub resample: Resample,
}

/// How preprocess resamples a recording sampled finer than Δt (coarser ones are always
/// interpolated linearly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    /// The study's: interpolate onto a grid of Δt/6, average each block of 6.
    #[default]
    BlockMean,
    /// Interpolate point-wise onto t₀ + k·Δt.
    Linear,
}

/// Fine grid points per output step when downsampling by block means.
pub const BLOCK: usize = 6;

/// Neurons smoothed and resampled side by side.
const LANES: usize = 8;

impl Default for Params {
    fn default() -> Self {
        Params {
            zscore: true,
            smooth_alpha: 0.5,
            resample_dt: 0.667,
            resample: Resample::BlockMean,
        }
    }
}

impl Stage for Preprocess {
    const NAME: &'static str = "preprocess";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_PREPROCESS");
    const CODE: &'static str = env!("WORMFLOW_CODE_PREPROCESS");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !(p.smooth_alpha > 0.0 && p.smooth_alpha <= 1.0) {
            return Err(format!(
                "params.smooth_alpha must be in (0, 1] (1 = no smoothing); got {}",
                p.smooth_alpha
            ));
        }
        if !(p.resample_dt >= 0.0 && p.resample_dt.is_finite()) {
            return Err(format!(
                "params.resample_dt must be ≥ 0 seconds (0 = no resampling); got {}",
                p.resample_dt
            ));
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let mut worms = Vec::new();
        for input in ctx.inputs {
            ctx.check_cancel()?;
            worms.extend(read_recordings(&input.dir)?);
        }
        if worms.is_empty() {
            bail!("no recordings among the inputs; `needs` should name standardize or synthesize stages");
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(ctx.threads.max(1)).build()?;
        let out: Vec<Worm> = pool.install(|| {
            worms
                .par_iter()
                .map(|w| {
                    ctx.check_cancel()?;
                    preprocess_worm(w, &p)
                })
                .collect::<Result<_>>()
        })?;
        write_dataset(ctx.out_dir, &out, &ctx.file_metadata())?;
        let log: String = out
            .iter()
            .map(|w| {
                let what =
                    if w.info.resampling.is_empty() { "not resampled" } else { &w.info.resampling };
                format!("{} {}: {what}\n", w.dataset, w.worm)
            })
            .collect();
        let _ = std::fs::write(ctx.scratch.join(wormflow_api::KIND_LOG), log);
        let masked: u32 = out.iter().map(|w| w.info.masked_neurons).sum::<u32>()
            - worms.iter().map(|w| w.info.masked_neurons).sum::<u32>();
        let mut prov = Map::new();
        prov.insert("worms".into(), json!(out.len()));
        prov.insert("masked_neurons".into(), json!(masked));
        Ok(prov)
    }
}

/// The three steps for one worm.
pub fn preprocess_worm(w: &Worm, p: &Params) -> Result<Worm> {
    let resample = p.resample_dt > 0.0;
    // How each output sample is made from the smoothed trace is the same for every neuron:
    // work it out once, as weights.
    let (grid, weights, how) = if resample {
        Resampling::plan(&w.t, p.resample_dt, p.resample)
    } else {
        (w.t.clone(), Resampling::default(), String::new())
    };
    if grid.len() < 2 {
        bail!(
            "worm {} of {}: {} time steps after resampling to {} s; the recording is too short",
            w.worm,
            w.dataset,
            grid.len(),
            p.resample_dt
        );
    }
    let mut info = w.info.clone();
    // From → to, so a step that loses (or invents) frames is visible per worm.
    info.resampling = if resample {
        format!("{} steps → {} steps: {how}", w.t.len(), grid.len())
    } else {
        String::new()
    };
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
    // Smooth (and resample) several neurons at once: their recurrences are independent, so
    // the CPU overlaps them instead of waiting on one chain of multiply-adds. The smoothed
    // values are stored time-major (step k of all lanes side by side), so resampling reads
    // each weight once for all lanes from one contiguous run of memory.
    let n = w.t.len();
    let alpha = p.smooth_alpha;
    // One buffer per thread, reused across worms: a fresh one of this size would be mapped
    // from the OS (and zeroed page by page) for every worm.
    thread_local!(static SMOOTHED: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) });
    SMOOTHED.with_borrow_mut(|smoothed| {
        smoothed.clear();
        smoothed.resize(LANES * n, 0.0);
        for group in kept.chunks(LANES) {
            let mut state = [0.0f64; LANES];
            for (lane, &(_, x, offset, scale)) in group.iter().enumerate() {
                state[lane] = (x[0] as f64 - offset) / scale;
                smoothed[lane] = state[lane];
            }
            let inverse: Vec<f64> = group.iter().map(|g| 1.0 / g.3).collect();
            for k in 1..n {
                for (lane, &(_, x, offset, _)) in group.iter().enumerate() {
                    let z = (x[k] as f64 - offset) * inverse[lane];
                    state[lane] = alpha * z + (1.0 - alpha) * state[lane];
                    smoothed[k * LANES + lane] = state[lane];
                }
            }
            let out = if resample {
                weights.apply(smoothed, group.len())
            } else {
                (0..group.len())
                    .map(|lane| (0..n).map(|k| smoothed[k * LANES + lane] as f32).collect())
                    .collect()
            };
            for (&(slot, ..), trace) in group.iter().zip(out) {
                traces[slot] = Some(trace);
            }
        }
    });
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

/// Resampling as a sparse matrix: output sample k = Σ weight · s[index] over its entries
/// `entries[starts[k]..starts[k + 1]]`. One linear interpolation is two entries; a block
/// mean of 6 interpolated points merges into the few original samples they touch.
#[derive(Debug, Default)]
pub struct Resampling {
    starts: Vec<usize>,
    entries: Vec<(usize, f64)>,
}

impl Resampling {
    /// The output grid, its weights and what it does in words.
    pub fn plan(t: &[f64], dt: f64, rule: Resample) -> (Vec<f64>, Resampling, String) {
        let recorded = median_step(t);
        if rule == Resample::Linear || recorded >= dt {
            let grid = resample_grid(t, dt);
            let mut r = Resampling { starts: vec![0], entries: Vec::with_capacity(2 * grid.len()) };
            for (j, f) in interpolation_weights(t, &grid) {
                r.push(&[(j, 1.0 - f), (j + 1, f)]);
            }
            let direction = if recorded >= dt { "upsampled" } else { "downsampled" };
            return (grid, r, format!("linear interpolation to {dt} s ({direction} from a median step of {recorded:.4} s)"));
        }
        let fine = resample_grid(t, dt / BLOCK as f64);
        let blocks = fine.len() / BLOCK; // complete blocks only, as the study's reshape
        let at = interpolation_weights(t, &fine[..blocks * BLOCK]);
        let mut r = Resampling { starts: vec![0], entries: Vec::with_capacity(3 * blocks) };
        let mut row: Vec<(usize, f64)> = Vec::with_capacity(2 * BLOCK);
        for block in at.chunks_exact(BLOCK) {
            row.clear();
            for &(j, f) in block {
                for (index, weight) in [(j, (1.0 - f) / BLOCK as f64), (j + 1, f / BLOCK as f64)] {
                    match row.iter_mut().find(|e| e.0 == index) {
                        Some(e) => e.1 += weight,
                        None => row.push((index, weight)),
                    }
                }
            }
            r.push(&row);
        }
        let t0 = t.first().copied().unwrap_or(0.0);
        let grid = (0..blocks).map(|k| t0 + k as f64 * dt).collect();
        (grid, r, format!("mean of blocks of {BLOCK} on a {:.4} s grid to {dt} s (downsampled from a median step of {recorded:.4} s)", dt / BLOCK as f64))
    }

    fn push(&mut self, row: &[(usize, f64)]) {
        self.entries.extend_from_slice(row);
        self.starts.push(self.entries.len());
    }

    /// The resampled traces of `lanes` neurons whose samples are interleaved in `s`
    /// (step k of lane l at `k * LANES + l`).
    pub fn apply(&self, s: &[f64], lanes: usize) -> Vec<Vec<f32>> {
        let rows = self.starts.len() - 1;
        let mut out: Vec<Vec<f32>> = (0..lanes).map(|_| Vec::with_capacity(rows)).collect();
        for w in self.starts.windows(2) {
            let mut acc = [0.0f64; LANES];
            for &(j, weight) in &self.entries[w[0]..w[1]] {
                let step: &[f64; LANES] =
                    s[j * LANES..(j + 1) * LANES].try_into().expect("LANES values per step");
                for (a, v) in acc.iter_mut().zip(step) {
                    *a += weight * v;
                }
            }
            for (trace, a) in out.iter_mut().zip(acc) {
                trace.push(a as f32);
            }
        }
        out
    }
}

/// The median time step of a recording (0 for fewer than two samples).
fn median_step(t: &[f64]) -> f64 {
    let mut steps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    if steps.is_empty() {
        return 0.0;
    }
    steps.sort_by(f64::total_cmp);
    let m = steps.len() / 2;
    if steps.len() % 2 == 1 {
        steps[m]
    } else {
        (steps[m - 1] + steps[m]) / 2.0
    }
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
        let p = Params { zscore: true, smooth_alpha: 1.0, resample_dt: 0.0, ..Default::default() };
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
        let p = Params { zscore: false, smooth_alpha: 0.5, resample_dt: 0.0, ..Default::default() };
        let (_, s) = one_neuron(vec![0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 1.0], &p);
        assert_eq!(s.unwrap(), vec![1.0, 2.0, 3.5, 2.25]);
    }

    #[test]
    fn linear_resampling_is_exact_for_linear_signals() {
        // Recorded at 0.6 s, finer than 0.667 s: `linear` interpolates point-wise.
        let t: Vec<f64> = (0..100).map(|i| i as f64 * 0.6 + (i % 3) as f64 * 0.01).collect();
        let x: Vec<f32> = t.iter().map(|t| (2.0 * t - 1.0) as f32).collect();
        let p = Params {
            zscore: false,
            smooth_alpha: 1.0,
            resample_dt: 0.667,
            resample: Resample::Linear,
        };
        let (grid, y) = one_neuron(t.clone(), &x, &p);
        assert!(*grid.last().unwrap() < *t.last().unwrap());
        assert_eq!(grid.len(), ((t[99] - t[0]) / 0.667).ceil() as usize);
        for (g, y) in grid.iter().zip(y.unwrap()) {
            assert!((y as f64 - (2.0 * g - 1.0)).abs() < 1e-4, "{g}: {y}");
        }
    }

    #[test]
    fn downsampling_averages_blocks_of_six_fine_points() {
        // 0.1 s samples to Δt = 0.6: fine grid 0.1 s (= the samples), blocks of 6.
        let t: Vec<f64> = (0..40).map(|i| i as f64 * 0.1).collect();
        let x: Vec<f32> = (0..40).map(|i| (i * i) as f32).collect();
        let p = Params {
            zscore: false,
            smooth_alpha: 1.0,
            resample_dt: 0.6,
            resample: Resample::BlockMean,
        };
        let (grid, y) = one_neuron(t, &x, &p);
        let y = y.unwrap();
        // 39 fine points before t_end = 3.9 s: 6 complete blocks, labelled 0, 0.6, … 3.0.
        assert_eq!(grid.len(), 6);
        assert!((grid[5] - 3.0).abs() < 1e-12);
        for (k, v) in y.iter().enumerate() {
            let mean = (6 * k..6 * k + 6).map(|i| (i * i) as f64).sum::<f64>() / 6.0;
            assert!((*v as f64 - mean).abs() < 1e-3, "block {k}: {v} vs {mean}");
        }
        // Recorded coarser than Δt: upsampled by linear interpolation under either rule.
        let coarse: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let (grid, _) = one_neuron(coarse, &(0..10).map(|i| i as f32).collect::<Vec<_>>(), &p);
        assert_eq!(grid.len(), 15, "0, 0.6, … 8.4 < 9");
    }
}
