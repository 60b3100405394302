//! The torch kinds' cost model: seconds per optimizer step of one model as a function of
//! architecture, hidden size H, batch B and window L, per hardware — fitted to a measured
//! table, `stages/data/step_times.csv`:
//! - CPU rows: `cargo bench --workspace --bench train_step -- --table` (every architecture
//!   at three hidden sizes and two shapes) on the machine and thread count they name;
//! - GPU rows: PyTorch's step on an NVIDIA H200 (../shared/recipes/gpu-device.md; wormflow's
//!   own GPU rows replace them when `benches/gpu.sh` is run on one).
//!
//! A step is modelled as `a · launches + b · GFLOP + c · Mvalues`: `launches` is 1, or L for
//! the CTRNN, whose cell runs once per time step (small launches that do not shrink with H);
//! GFLOP is 6 × used parameters × B·L (forward 2, backward 4) plus attention's 6·B·L²·H
//! (TSMixer: 6 × its per-window work, K·302·(K + 2H + 2) for a lookback K, for each of the
//! B·(L − K + 1) windows it mixes); Mvalues the activations moved, B·L·(2·302 + H +
//! attention's heads·L) / 10⁶ (TSMixer: K·(6·302 + 2H) per window). `a`, `b`, `c` are least squares in
//! relative error over the table's rows for that architecture and hardware (all ≥ 0);
//! an architecture without rows on a hardware borrows another's rates, and says so.

use std::collections::BTreeMap;

use wormflow_api::cost::Hardware;

use crate::model_size::{n_params, Counting};

const TABLE: &str = include_str!("../data/step_times.csv");

struct Row {
    hardware: Hardware,
    model: String,
    hidden: i64,
    lookback: i64,
    batch: i64,
    window: i64,
    seconds: f64,
}

fn rows() -> Vec<Row> {
    TABLE
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(Row {
                hardware: match *f.first()? {
                    "cpu" => Hardware::Cpu,
                    _ => Hardware::Gpu,
                },
                model: f.get(1)?.to_string(),
                hidden: f.get(2)?.parse().ok()?,
                lookback: f.get(3)?.parse().ok()?,
                batch: f.get(4)?.parse().ok()?,
                window: f.get(5)?.parse().ok()?,
                seconds: f.get(7)?.parse().ok()?,
            })
        })
        .collect()
}

/// The windows a TSMixer mixes in a step: one per position with a full lookback.
fn mixed_windows(batch: i64, window: i64, lookback: i64) -> f64 {
    (batch * (window - lookback + 1).max(1)) as f64
}

/// The step's arithmetic in GFLOP.
pub fn step_gflop(model: &str, hidden: i64, lookback: i64, batch: i64, window: i64) -> f64 {
    let tokens = (batch * window) as f64;
    if model == "tsmixer" {
        let (k, h) = (lookback as f64, hidden as f64);
        return mixed_windows(batch, window, lookback) * 6.0 * k * 302.0 * (k + 2.0 * h + 2.0)
            / 1e9;
    }
    let params = n_params(model, hidden, lookback, Counting::Used).unwrap_or(0) as f64;
    let attention = match model {
        "transformer" | "attention" => 6.0 * window as f64 * hidden as f64,
        _ => 0.0,
    };
    tokens * (6.0 * params + attention) / 1e9
}

fn launches(model: &str, window: i64) -> f64 {
    if model == "ctrnn" {
        window as f64
    } else {
        1.0
    }
}

/// Millions of activation values a step moves: every token's 302 inputs and outputs and H
/// hidden values, and attention's score matrices (heads × L² per sequence; heads are the
/// largest divisor of H up to 5, as the models build them). Small models are bound by this
/// traffic, not by their arithmetic.
pub fn step_mvalues(model: &str, hidden: i64, lookback: i64, batch: i64, window: i64) -> f64 {
    if model == "tsmixer" {
        let per_window = lookback as f64 * (6.0 * 302.0 + 2.0 * hidden as f64);
        return mixed_windows(batch, window, lookback) * per_window / 1e6;
    }
    let per_token = 2.0 * 302.0 + hidden as f64;
    let scores = match model {
        "transformer" | "attention" => {
            let heads = (1..=5).rev().find(|d| hidden % d == 0).unwrap_or(1);
            (heads * window) as f64
        }
        _ => 0.0,
    };
    (batch * window) as f64 * (per_token + scores) / 1e6
}

/// The terms a step's time is a sum of: launches, GFLOP, millions of values moved.
fn terms(model: &str, hidden: i64, lookback: i64, batch: i64, window: i64) -> [f64; 3] {
    [
        launches(model, window),
        step_gflop(model, hidden, lookback, batch, window),
        step_mvalues(model, hidden, lookback, batch, window),
    ]
}

/// Seconds per step: `per_launch · launches + per_gflop · GFLOP + per_mvalue · Mvalues`.
#[derive(Debug, Clone)]
pub struct Rate {
    /// The three rates, in the order of [`terms`].
    pub rates: [f64; 3],
    /// How many measured rows it rests on, and whose they are when borrowed.
    pub rows: usize,
    pub borrowed_from: Option<String>,
}

impl Rate {
    pub fn step_seconds(
        &self,
        model: &str,
        hidden: i64,
        lookback: i64,
        batch: i64,
        window: i64,
    ) -> f64 {
        let t = terms(model, hidden, lookback, batch, window);
        (0..3).map(|k| self.rates[k] * t[k]).sum()
    }
}

/// A measured row: its terms and its seconds.
type Point = ([f64; 3], f64);

/// Solve the normal equations of least squares over the columns in `active` (Gaussian
/// elimination; at most 3 unknowns). None when they are singular.
fn least_squares(points: &[Point], active: &[usize]) -> Option<[f64; 3]> {
    let n = active.len();
    let mut a = vec![vec![0.0; n + 1]; n];
    for (x, t) in points {
        for (i, &ci) in active.iter().enumerate() {
            for (j, &cj) in active.iter().enumerate() {
                a[i][j] += x[ci] * x[cj];
            }
            a[i][n] += x[ci] * t;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        let scale = (0..n).map(|r| a[r][col].abs()).fold(0.0, f64::max);
        if a[pivot][col].abs() <= 1e-12 * scale.max(f64::MIN_POSITIVE) {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut out = [0.0; 3];
    for (i, &ci) in active.iter().enumerate() {
        out[ci] = a[i][n] / a[i][i];
    }
    Some(out)
}

/// Non-negative least squares of t = Σ rates·terms, in relative error (each row weighted by
/// 1/t, so a 1 ms row counts as much as a 1 s row). With three unknowns the exact answer is
/// the best of the unconstrained solutions over every subset of terms that comes out
/// non-negative — simpler than an active-set solver, and no crate we use has NNLS.
fn fit(points: &[Point]) -> [f64; 3] {
    let weighted: Vec<Point> = points
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|(x, t)| ([x[0] / t, x[1] / t, x[2] / t], 1.0))
        .collect();
    let error = |r: &[f64; 3]| {
        weighted
            .iter()
            .map(|(x, t)| (t - (0..3).map(|k| r[k] * x[k]).sum::<f64>()).powi(2))
            .sum::<f64>()
    };
    let subsets: [&[usize]; 7] = [&[0, 1, 2], &[0, 1], &[0, 2], &[1, 2], &[0], &[1], &[2]];
    subsets
        .iter()
        .filter_map(|s| least_squares(&weighted, s))
        .filter(|r| r.iter().all(|&v| v >= 0.0))
        .min_by(|a, b| error(a).total_cmp(&error(b)))
        .unwrap_or([0.0; 3])
}

/// Fitted rates by (hardware, architecture).
pub struct StepModel {
    rates: BTreeMap<(Hardware, String), Rate>,
}

/// Where an architecture without measurements on a hardware borrows its rates: the
/// measured architecture closest in kind.
const BORROW: &[(&str, &[&str])] = &[
    ("linear", &["feedforward", "transformer", "lstm"]),
    ("feedforward", &["linear", "transformer", "lstm"]),
    ("attention", &["transformer", "feedforward", "lstm"]),
    ("transformer", &["attention", "feedforward", "lstm"]),
    ("ctrnn", &["lstm", "transformer"]),
    ("lstm", &["ctrnn", "transformer"]),
    ("nlinear", &["dlinear", "linear"]),
    ("dlinear", &["nlinear", "linear"]),
    ("tsmixer", &["feedforward", "transformer"]),
];

impl StepModel {
    /// The model fitted to the committed table, fitted once per process (`--cost` asks it
    /// for every node of a pipeline).
    pub fn measured() -> &'static StepModel {
        static MODEL: std::sync::OnceLock<StepModel> = std::sync::OnceLock::new();
        MODEL.get_or_init(StepModel::from_table)
    }

    fn from_table() -> StepModel {
        let mut points: BTreeMap<(Hardware, String), Vec<Point>> = BTreeMap::new();
        for r in rows() {
            let x = terms(&r.model, r.hidden, r.lookback, r.batch, r.window);
            points.entry((r.hardware, r.model.clone())).or_default().push((x, r.seconds));
        }
        let rates = points
            .into_iter()
            .map(|(key, p)| (key, Rate { rates: fit(&p), rows: p.len(), borrowed_from: None }))
            .collect();
        StepModel { rates }
    }

    /// The rate of `model` on `hardware`, borrowed when it has no rows there.
    pub fn rate(&self, hardware: Hardware, model: &str) -> Option<Rate> {
        if let Some(r) = self.rates.get(&(hardware, model.to_string())) {
            return Some(r.clone());
        }
        let (_, others) = BORROW.iter().find(|(m, _)| *m == model)?;
        others.iter().find_map(|other| {
            let r = self.rates.get(&(hardware, other.to_string()))?;
            Some(Rate { borrowed_from: Some(other.to_string()), ..r.clone() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed table is read, every architecture has a CPU rate of its own, and the
    /// fitted model reproduces each measured row within a factor of 2.
    #[test]
    fn the_fitted_model_reproduces_the_measured_table() {
        let model = StepModel::from_table();
        for m in crate::model_size::MODELS.iter().filter(|m| **m != "baseline") {
            let r = model.rate(Hardware::Cpu, m).unwrap();
            assert!(r.borrowed_from.is_none() && r.rows >= 2, "{m}: {r:?}");
        }
        let rows = rows();
        assert!(rows.len() >= 20, "{} rows", rows.len());
        for row in rows {
            let rate = model.rate(row.hardware, &row.model).unwrap();
            let predicted =
                rate.step_seconds(&row.model, row.hidden, row.lookback, row.batch, row.window);
            let ratio = predicted / row.seconds;
            eprintln!(
                "{:?} {} H={} B={} L={}: ratio {ratio:.2}",
                row.hardware, row.model, row.hidden, row.batch, row.window
            );
            assert!(
                (0.5..=2.0).contains(&ratio),
                "{:?} {} H={} B={} L={}: measured {:.4} s, model {:.4} s",
                row.hardware,
                row.model,
                row.hidden,
                row.batch,
                row.window,
                row.seconds,
                predicted
            );
        }
    }

    #[test]
    fn least_squares_recovers_known_rates() {
        let rows = [[1.0, 2.0, 3.0], [40.0, 1.0, 0.5], [180.0, 9.0, 2.0], [1.0, 0.1, 7.0]];
        let points: Vec<([f64; 3], f64)> =
            rows.iter().map(|x| (*x, 0.5 * x[0] + 2.0 * x[1] + 0.25 * x[2])).collect();
        let r = fit(&points);
        assert!((r[0] - 0.5).abs() < 1e-9 && (r[1] - 2.0).abs() < 1e-9, "{r:?}");
        assert!((r[2] - 0.25).abs() < 1e-9, "{r:?}");
        // A negative rate is never fitted: the term drops out instead.
        let points: Vec<([f64; 3], f64)> =
            rows.iter().map(|x| (*x, 0.5 * x[0] + 2.0 * x[1] - 0.01 * x[2])).collect();
        assert!(fit(&points).iter().all(|&v| v >= 0.0));
    }
}
