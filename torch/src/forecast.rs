//! Multi-step forecasting on a held-out part (evaluate's `forecast_part`), by the rules of
//! the forecasting benchmarks (POCO, Duan et al. 2025; ZAPBench, Lueckmann et al. 2025):
//! every window of `context + horizon` steps inside one range of the part (stride
//! `forecast_stride`), the model given the first C steps and rolled forward H steps on its
//! own predictions (the context sliding, at most C steps long); scored per step ahead
//! against copy-the-last-context-step (POCO's reference) and the mean of the context
//! (ZAPBench's). Differences from POCO, on purpose: every window that fits is used (POCO's
//! `(len − seq − 1) // stride + 1` leaves out the last one), and the data are wormflow's
//! preprocessed 302-neuron traces, not POCO's own normalisation.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::evaluate::{rollout, Rollout};
use crate::models::Model;
use wormflow_stages::neurons::{self, N_NEURONS};
use wormflow_stages::summaries::{ForecastError, ForecastSkill};
use wormflow_stages::table::Worm;
use wormflow_stages::windows::{sliding_starts, Part, SplitRow};

/// What to forecast.
pub struct Protocol {
    pub part: Part,
    pub context: i64,
    pub horizon: i64,
    pub stride: i64,
    pub batch: i64,
}

/// Per worm: sums over its windows of (model, copy, mean) squared and absolute errors, each
/// (H × 302), and the number of windows.
struct WormSums {
    sums: [Vec<f64>; 6],
    windows: i64,
}

fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1))
        .expect("a double tensor")
}

fn worm_sums(
    model: &dyn Model,
    worm: &Worm,
    ranges: &[(u64, u64)],
    p: &Protocol,
    device: Device,
) -> Option<WormSums> {
    let (c, h) = (p.context, p.horizon);
    let len = (c + h) as usize;
    let starts = sliding_starts(ranges, len as u64, p.stride as u64);
    if starts.is_empty() {
        return None;
    }
    let mut mask = vec![0f32; N_NEURONS];
    for (n, t) in worm.traces.iter().enumerate() {
        mask[n] = f32::from(t.is_some());
    }
    let mask = Tensor::from_slice(&mask).view([1, 1, N_NEURONS as i64]).to_device(device);
    let cells = (h as usize) * N_NEURONS;
    let mut out = WormSums { sums: std::array::from_fn(|_| vec![0.0; cells]), windows: 0 };
    for chunk in starts.chunks(p.batch as usize) {
        let mut data = vec![0f32; chunk.len() * len * N_NEURONS];
        for (b, &s) in chunk.iter().enumerate() {
            for (n, trace) in worm.traces.iter().enumerate() {
                let Some(t) = trace else { continue };
                for k in 0..len {
                    data[(b * len + k) * N_NEURONS + n] = t[s as usize + k];
                }
            }
        }
        let all = Tensor::from_slice(&data)
            .view([chunk.len() as i64, len as i64, N_NEURONS as i64])
            .to_device(device);
        let context = all.narrow(1, 0, c);
        let truth = all.narrow(1, c, h);
        let predicted = tch::no_grad(|| {
            rollout(model, &context, &mask, h, Rollout { window: c, clamp: false })
        });
        let copy = context.narrow(1, c - 1, 1).expand_as(&truth);
        let mean = context.mean_dim([1i64].as_slice(), true, Kind::Float).expand_as(&truth);
        for (k, pred) in [&predicted, &copy, &mean].into_iter().enumerate() {
            let err = (pred - &truth) * &mask;
            let square =
                host(&err.square().sum_dim_intlist([0i64].as_slice(), false, Kind::Double));
            let abs = host(&err.abs().sum_dim_intlist([0i64].as_slice(), false, Kind::Double));
            for i in 0..cells {
                out.sums[2 * k][i] += square[i];
                out.sums[2 * k + 1][i] += abs[i];
            }
        }
        out.windows += chunk.len() as i64;
    }
    Some(out)
}

/// The forecast of every worm in `split` (its `part`), as per-neuron rows and the
/// per-source skill table.
pub fn forecast(
    model: &dyn Model,
    worms: &[Worm],
    split: &[SplitRow],
    p: &Protocol,
    device: Device,
) -> Result<(Vec<ForecastError>, Vec<ForecastSkill>)> {
    let part = p.part.as_str().to_string();
    let h = p.horizon as usize;
    let mut rows = Vec::new();
    // dataset → per worm: per step (mse, mae, copy_mse, mean_mse) pooled over neurons.
    let mut per_worm: BTreeMap<String, Vec<Vec<[f64; 4]>>> = BTreeMap::new();
    for row in split {
        let Some(worm) = worms.iter().find(|w| w.dataset == row.dataset && w.worm == row.worm)
        else {
            continue;
        };
        let Some(s) = worm_sums(model, worm, &row.ranges_of(p.part), p, device) else {
            continue;
        };
        let recorded: Vec<usize> = (0..N_NEURONS).filter(|&n| worm.traces[n].is_some()).collect();
        if recorded.is_empty() {
            continue;
        }
        let nw = s.windows as f64;
        let mut pooled = vec![[0.0; 4]; h];
        for (step, pooled_step) in pooled.iter_mut().enumerate() {
            for &n in &recorded {
                let i = step * N_NEURONS + n;
                let v: [f64; 6] = std::array::from_fn(|k| s.sums[k][i] / nw);
                rows.push(ForecastError {
                    part: part.clone(),
                    dataset: worm.dataset.clone(),
                    worm: worm.worm.clone(),
                    neuron: neurons::names()[n].clone(),
                    step: step as i64 + 1,
                    n_windows: s.windows,
                    mse: v[0],
                    mae: v[1],
                    copy_mse: v[2],
                    copy_mae: v[3],
                    mean_mse: v[4],
                    mean_mae: v[5],
                });
                let r = recorded.len() as f64;
                pooled_step[0] += v[0] / r;
                pooled_step[1] += v[1] / r;
                pooled_step[2] += v[2] / r;
                pooled_step[3] += v[4] / r;
            }
        }
        per_worm.entry(worm.dataset.clone()).or_default().push(pooled.clone());
        per_worm.entry("all".into()).or_default().push(pooled);
    }
    let mut skill = Vec::new();
    for (dataset, worms) in per_worm {
        let n = worms.len() as f64;
        for step in 0..h {
            let mean_of =
                |f: &dyn Fn(&[f64; 4]) -> f64| worms.iter().map(|w| f(&w[step])).sum::<f64>() / n;
            skill.push(ForecastSkill {
                part: part.clone(),
                dataset: dataset.clone(),
                step: step as i64 + 1,
                n_worms: worms.len() as i64,
                mse: mean_of(&|v| v[0]),
                mae: mean_of(&|v| v[1]),
                copy_mse: mean_of(&|v| v[2]),
                mean_mse: mean_of(&|v| v[3]),
                skill_vs_copy: mean_of(&|v| 1.0 - v[0] / v[2]),
                skill_vs_mean: mean_of(&|v| 1.0 - v[0] / v[3]),
            });
        }
    }
    Ok((rows, skill))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{build, Options};
    use crate::tensors::predict;
    use tch::nn;

    /// A worm of 400 steps with 5 recorded neurons (smooth, distinct traces).
    fn worm() -> Worm {
        let n = 400;
        let mut traces = vec![None; N_NEURONS];
        for (k, slot) in [3usize, 40, 41, 150, 301].into_iter().enumerate() {
            traces[slot] =
                Some((0..n).map(|t| ((t as f32) * 0.07 * (k as f32 + 1.0)).sin()).collect());
        }
        Worm {
            dataset: "D".into(),
            worm: "w".into(),
            t: (0..n).map(|t| t as f64).collect(),
            traces,
            info: Default::default(),
        }
    }

    fn split(w: &Worm) -> Vec<SplitRow> {
        let ranges = wormflow_stages::split::part_ranges(w.n_steps() as u64, &[0.6, 0.2, 0.2], 0);
        vec![SplitRow { dataset: w.dataset.clone(), worm: w.worm.clone(), n_steps: 400, ranges }]
    }

    /// Copy-last scores 0 against itself, and a model's step-1 forecast error equals its
    /// one-step error on the same windows (context C, the next step).
    #[test]
    fn copy_last_has_no_skill_and_step_one_is_the_one_step_error() {
        let _rng = crate::global_rng();
        tch::manual_seed(0);
        let (w, vs) = (worm(), nn::VarStore::new(Device::Cpu));
        let o = |hidden| Options { hidden, residual: false, dropout: 0.0, lookback: 0 };
        let p = Protocol { part: Part::Test, context: 12, horizon: 5, stride: 3, batch: 7 };
        let baseline = build("baseline", o(0), &vs.root()).unwrap();
        let (_, skill) =
            forecast(&*baseline, std::slice::from_ref(&w), &split(&w), &p, Device::Cpu).unwrap();
        assert_eq!(skill.len(), 2 * 5, "D and all × 5 steps");
        assert!(skill.iter().all(|s| s.skill_vs_copy == 0.0), "{skill:?}");

        let lstm = build("lstm", o(8), &vs.root()).unwrap();
        let (rows, _) =
            forecast(&*lstm, std::slice::from_ref(&w), &split(&w), &p, Device::Cpu).unwrap();
        let step1: f64 = rows.iter().filter(|r| r.step == 1).map(|r| r.mse).sum::<f64>() / 5.0;
        // The same windows by hand: test part 320..400, starts 320, 323, … while s + 17 ≤ 400.
        let starts: Vec<usize> = (320..=383).step_by(3).collect();
        let mut x = vec![0f32; starts.len() * 12 * N_NEURONS];
        let mut y = vec![0f32; starts.len() * N_NEURONS];
        let mut mask = vec![0f32; N_NEURONS];
        for (n, t) in w.traces.iter().enumerate() {
            let Some(t) = t else { continue };
            mask[n] = 1.0;
            for (b, &s) in starts.iter().enumerate() {
                for k in 0..12 {
                    x[(b * 12 + k) * N_NEURONS + n] = t[s + k];
                }
                y[b * N_NEURONS + n] = t[s + 12];
            }
        }
        let b = starts.len() as i64;
        let x = Tensor::from_slice(&x).view([b, 12, N_NEURONS as i64]);
        let y = Tensor::from_slice(&y).view([b, N_NEURONS as i64]);
        let mask = Tensor::from_slice(&mask).view([1, 1, N_NEURONS as i64]);
        let pred = tch::no_grad(|| predict(&*lstm, &x, &mask, false)).select(1, -1);
        let one_step = ((pred - y) * mask.view([1, N_NEURONS as i64]))
            .square()
            .sum(Kind::Double)
            .double_value(&[])
            / (b as f64 * 5.0);
        assert!((step1 - one_step).abs() <= 1e-6 * one_step, "{step1} vs {one_step}");
    }
}
