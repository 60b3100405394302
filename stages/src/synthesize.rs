//! Kind `synthesize`: synthetic worms in the standard format, for checking what models can
//! and cannot learn. All models are seeded: the same params give the same bytes.
//!
//! - `sines` (the paper's Sines): each neuron i has a frequency fᵢ ~ U(freq_min, freq_max)
//!   cycles per step, shared by all worms; each worm has its own phase φ per neuron:
//!   xᵢ(k) = sin(2π fᵢ k + φ) + noise·ε. Fully predictable from the past.
//! - `random_walk` (the paper's Random Walk): xᵢ(0) ~ N(0, 1), xᵢ(k) = xᵢ(k−1) + step_std·ε.
//!   The best next-step predictor is the copy of the input, so no model beats Baseline.
//! - `connectome`: a nonlinear rate network wired by a published connectome,
//!   τ dxᵢ/dt = −xᵢ + gain·Σⱼ Wᵢⱼ tanh(xⱼ) + gap_gain·Σⱼ Gᵢⱼ (xⱼ − xᵢ) + noise·ξᵢ(t),
//!   with Wᵢⱼ = sⱼ·cᵢⱼ / Σⱼ cᵢⱼ (cᵢⱼ: chemical synapse count from j to i; sⱼ = −1 for GABAergic
//!   j, +1 otherwise, from neurons.csv), Gᵢⱼ = gᵢⱼ / Σⱼ gᵢⱼ for gap-junction counts g (made
//!   symmetric). Euler–Maruyama at dt_sim, recorded every `dt` seconds after `burn_in`
//!   seconds, from xᵢ(0) ~ N(0, 1) per worm. gain > 1 puts the network in a rich, irregular
//!   regime; each worm shows `n_observed` random neurons.
//!
//! In every model each worm observes `n_observed` of the 302 neurons, chosen at random.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::atomic::AtomicBool;

use wormflow_api::cancel::Cancelled;
use wormflow_api::StageContext;

use crate::neurons::{self, N_NEURONS};
use crate::rng::stream;
use crate::stage::Stage;
use crate::table::{write_dataset, Worm, WormInfo};

pub struct Synthesize;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// "sines" | "random_walk" | "connectome"
    pub model: String,
    /// Dataset name in the output (default: Sines, RandomWalk, Connectome).
    pub dataset: String,
    pub n_worms: u64,
    pub n_steps: u64,
    pub n_observed: u64,
    /// Seconds between recorded steps.
    pub dt: f64,
    pub seed: u64,
    /// sines: observation noise std; connectome: process noise std.
    pub noise: f64,
    pub freq_min: f64,
    pub freq_max: f64,
    pub step_std: f64,
    /// connectome: the wiring (JSON list of {pre, post, typ: 0 chemical | 2 gap, syn: [...]}).
    pub connectome: String,
    pub tau: f64,
    pub gain: f64,
    pub gap_gain: f64,
    pub dt_sim: f64,
    pub burn_in: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: String::new(),
            dataset: String::new(),
            n_worms: 200,
            n_steps: 1500,
            n_observed: 50,
            dt: 1.0,
            seed: 0,
            noise: 0.0,
            freq_min: 0.01,
            freq_max: 0.1,
            step_std: 1.0,
            connectome: "data/connectome/white_1986_whole.json".into(),
            tau: 1.0,
            gain: 1.5,
            gap_gain: 0.5,
            dt_sim: 0.05,
            burn_in: 50.0,
        }
    }
}

impl Stage for Synthesize {
    const NAME: &'static str = "synthesize";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_SYNTHESIZE");
    const CODE: &'static str = env!("WORMFLOW_CODE_SYNTHESIZE");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !matches!(p.model.as_str(), "sines" | "random_walk" | "connectome") {
            return Err(format!(
                "params.model must be \"sines\", \"random_walk\" or \"connectome\"; got {:?}",
                p.model
            ));
        }
        if p.n_worms == 0 || p.n_steps < 2 || p.n_observed == 0 || p.n_observed > N_NEURONS as u64 {
            return Err("need n_worms ≥ 1, n_steps ≥ 2 and 1 ≤ n_observed ≤ 302".into());
        }
        let ordered = |lo: f64, hi: f64| lo.partial_cmp(&hi).is_some_and(|o| o.is_le());
        let valid = crate::validate::is_positive(p.dt)
            && crate::validate::is_positive(p.freq_min)
            && ordered(p.freq_min, p.freq_max)
            && crate::validate::is_positive(p.dt_sim)
            && ordered(p.dt_sim, p.dt)
            && crate::validate::is_positive(p.tau);
        if !valid {
            return Err("need dt > 0, 0 < freq_min ≤ freq_max, 0 < dt_sim ≤ dt and tau > 0".into());
        }
        Ok(())
    }

    fn file_deps(p: &Params) -> Vec<String> {
        if p.model == "connectome" {
            vec![p.connectome.clone()]
        } else {
            Vec::new()
        }
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let wiring = if p.model == "connectome" {
            Some(Wiring::load(&ctx.workspace.join(&p.connectome))?)
        } else {
            None
        };
        let dataset = if p.dataset.is_empty() {
            match p.model.as_str() {
                "sines" => "Sines",
                "random_walk" => "RandomWalk",
                _ => "Connectome",
            }
            .to_string()
        } else {
            p.dataset.clone()
        };
        let freqs: Vec<f64> = {
            let mut rng = stream(p.seed, "sine-frequencies", 0);
            (0..N_NEURONS).map(|_| rng.random_range(p.freq_min..=p.freq_max)).collect()
        };
        // Worms are independent and each draws from its own seeded stream, so the bytes do
        // not depend on the number of threads. The process-wide pool: nodes running side
        // by side share the cores by work stealing, and a lone node gets them all.
        let worms: Vec<Worm> = (0..p.n_worms)
            .into_par_iter()
            .map(|w| {
                ctx.check_cancel()?;
                let activity = match p.model.as_str() {
                    "sines" => sines(&p, &freqs, w),
                    "random_walk" => random_walk(&p, w),
                    _ => wiring.as_ref().expect("loaded above").simulate(&p, w, ctx.cancel)?,
                };
                Ok(observe(&p, &dataset, w, activity))
            })
            .collect::<Result<_, Cancelled>>()?;
        write_dataset(ctx.out_dir, &worms, &ctx.file_metadata())?;
        let mut prov = Map::new();
        prov.insert("worms".into(), json!(worms.len()));
        Ok(prov)
    }
}

/// Keep `n_observed` random neurons of a full 302 × n_steps activity.
fn observe(p: &Params, dataset: &str, w: u64, activity: Vec<Vec<f64>>) -> Worm {
    let mut rng = stream(p.seed, "observed-neurons", w);
    let mut keep = vec![false; N_NEURONS];
    for i in rand::seq::index::sample(&mut rng, N_NEURONS, p.n_observed as usize) {
        keep[i] = true;
    }
    Worm {
        dataset: dataset.to_string(),
        worm: format!("{}{:03}", dataset.to_lowercase(), w),
        t: (0..p.n_steps).map(|k| k as f64 * p.dt).collect(),
        traces: activity
            .into_iter()
            .zip(keep)
            .map(|(x, k)| k.then(|| x.into_iter().map(|v| v as f32).collect()))
            .collect(),
        info: WormInfo {
            source_file: format!("synthesize:{}", p.model),
            citation: "synthetic (wormflow)".into(),
            ..Default::default()
        },
    }
}

fn normal(rng: &mut impl Rng) -> f64 {
    StandardNormal.sample(rng)
}

fn sines(p: &Params, freqs: &[f64], w: u64) -> Vec<Vec<f64>> {
    let mut rng = stream(p.seed, "sines", w);
    freqs
        .iter()
        .map(|f| {
            let phase = rng.random_range(0.0..std::f64::consts::TAU);
            (0..p.n_steps)
                .map(|k| {
                    (std::f64::consts::TAU * f * k as f64 + phase).sin()
                        + p.noise * normal(&mut rng)
                })
                .collect()
        })
        .collect()
}

fn random_walk(p: &Params, w: u64) -> Vec<Vec<f64>> {
    let mut rng = stream(p.seed, "random-walk", w);
    (0..N_NEURONS)
        .map(|_| {
            let mut x = normal(&mut rng);
            (0..p.n_steps)
                .map(|k| {
                    if k > 0 {
                        x += p.step_std * normal(&mut rng);
                    }
                    x
                })
                .collect()
        })
        .collect()
}

/// Row-normalised chemical (signed) and gap-junction couplings, as sparse rows.
struct Wiring {
    chemical: Vec<Vec<(usize, f64)>>,
    gap: Vec<Vec<(usize, f64)>>,
}

impl Wiring {
    fn load(path: &Path) -> Result<Wiring> {
        let edges: Value = serde_json::from_slice(
            &std::fs::read(path)
                .with_context(|| format!("cannot read connectome {}", path.display()))?,
        )
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let edges = edges
            .as_array()
            .with_context(|| format!("{}: expected a list of edges", path.display()))?;
        let mut chem = vec![vec![0.0; N_NEURONS]; N_NEURONS];
        let mut gap = vec![vec![0.0; N_NEURONS]; N_NEURONS];
        for e in edges {
            let name = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .and_then(|n| neurons::index_of(&neurons::normalise(n)))
            };
            let (Some(pre), Some(post)) = (name("pre"), name("post")) else { continue };
            let count = e.get("syn").and_then(Value::as_array).map_or(1, Vec::len) as f64;
            match e.get("typ").and_then(Value::as_u64) {
                Some(0) => chem[post][pre] += count,
                Some(2) if pre != post => {
                    gap[post][pre] += count;
                    gap[pre][post] += count;
                }
                _ => {}
            }
        }
        let sign = |j: usize| if neurons::transmitter(j).contains("GABA") { -1.0 } else { 1.0 };
        let rows = |m: Vec<Vec<f64>>, signed: bool| -> Vec<Vec<(usize, f64)>> {
            m.into_iter()
                .map(|row| {
                    let total: f64 = row.iter().sum();
                    row.iter()
                        .enumerate()
                        .filter(|(_, c)| **c > 0.0)
                        .map(|(j, c)| (j, c / total * if signed { sign(j) } else { 1.0 }))
                        .collect()
                })
                .collect()
        };
        let wiring = Wiring { chemical: rows(chem, true), gap: rows(gap, false) };
        if wiring.chemical.iter().all(Vec::is_empty) {
            bail!("{}: no chemical synapse between known neurons", path.display());
        }
        Ok(wiring)
    }

    /// One worm's activity; stops early (`Cancelled`) when the run is cancelled.
    fn simulate(
        &self,
        p: &Params,
        w: u64,
        cancel: &AtomicBool,
    ) -> Result<Vec<Vec<f64>>, Cancelled> {
        let mut rng = stream(p.seed, "connectome", w);
        let mut x: Vec<f64> = (0..N_NEURONS).map(|_| normal(&mut rng)).collect();
        let mut rate = vec![0.0; N_NEURONS];
        let per_record = (p.dt / p.dt_sim).round().max(1.0) as usize;
        let burn = (p.burn_in / p.dt_sim).round() as usize;
        let noise = p.noise * (p.dt_sim).sqrt() / p.tau;
        let mut out: Vec<Vec<f64>> =
            (0..N_NEURONS).map(|_| Vec::with_capacity(p.n_steps as usize)).collect();
        let total = burn + per_record * p.n_steps as usize;
        for step in 0..total {
            // A step is ~10 µs: checking every 4096 steps notices a cancel within ~50 ms.
            if step % 4096 == 0 {
                wormflow_api::cancel::check(cancel)?;
            }
            for (r, v) in rate.iter_mut().zip(&x) {
                *r = v.tanh();
            }
            let next: Vec<f64> = (0..N_NEURONS)
                .map(|i| {
                    let chem: f64 = self.chemical[i].iter().map(|&(j, w)| w * rate[j]).sum();
                    let gap: f64 = self.gap[i].iter().map(|&(j, g)| g * (x[j] - x[i])).sum();
                    let drift = (-x[i] + p.gain * chem + p.gap_gain * gap) / p.tau;
                    x[i] + p.dt_sim * drift + noise * normal(&mut rng)
                })
                .collect();
            x = next;
            if step >= burn && (step - burn) % per_record == per_record - 1 {
                for (o, v) in out.iter_mut().zip(&x) {
                    o.push(*v);
                }
            }
        }
        Ok(out)
    }
}
