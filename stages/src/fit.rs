//! Kind `fit`: scaling laws from a sweep of evaluations (gathers `evaluate` nodes).
//!
//! For each model (and, with `by_dataset`, each source dataset), a least-squares line
//! log10(validation loss) = intercept + slope · log10(x), where x is `train_steps` (data
//! scaling, the paper's Fig. 4) or `n_params` (model scaling, Fig. 5). The slope's 95%
//! confidence interval is a percentile bootstrap over the sweep's points (each point one
//! trained model; resampled with replacement, `bootstrap` times, seeded). Also reported:
//! R² and the mean loss as a fraction of the Baseline's on the same windows.
//!
//! Models whose training failed (eval.parquet `learning` = `diverged` or `never_improved`) are
//! not points of a law: they are left out unless `keep_failed = true`, and listed.
//!
//! Outputs `fits.parquet` (model, dataset, x, slope, slope_lo, slope_hi, intercept, r2,
//! n_points, n_left_out, mean_ratio) and `fits.json` (the same, every point, and `left_out`:
//! the evaluations left out with why).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::StageContext;

use crate::metrics::Learning;
use crate::parquet_io;
use crate::rng::stream;
use crate::stage::Stage;
use crate::summaries::{self, DatasetLoss, Evaluation};

pub struct Fit;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// "train_steps" (data scaling) or "n_params" (model scaling).
    pub x: String,
    /// Also fit each source dataset's losses separately (Fig. 4C).
    pub by_dataset: bool,
    pub bootstrap: usize,
    pub seed: u64,
    /// Count models that diverged or never improved as points too (off: they are left out).
    pub keep_failed: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            x: "train_steps".into(),
            by_dataset: false,
            bootstrap: 1000,
            seed: 0,
            keep_failed: false,
        }
    }
}

/// JSON has no NaN: serde_json writes it as null; read null back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `fits.json`, written and read through this one type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitsDoc {
    /// "train_steps" or "n_params".
    pub x: String,
    /// How the slope intervals were made.
    pub ci: String,
    pub fits: Vec<LineFit>,
    pub points: Vec<Point>,
    #[serde(default)]
    pub left_out: Vec<LeftOut>,
}

/// One evaluated model: where it sits on the x axis and how it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// The evaluate node it comes from.
    pub node: String,
    pub model: String,
    pub dataset: String,
    pub x: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub baseline: f64,
    #[serde(default)]
    pub learning: Learning,
    /// Whether the model predicted the change from the current step (`residual`).
    #[serde(default)]
    pub residual: bool,
}

/// An evaluation a fit did not count, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftOut {
    pub node: String,
    pub model: String,
    pub x: f64,
    pub learning: Learning,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LineFit {
    pub model: String,
    pub dataset: String,
    pub x: String,
    pub slope: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub slope_lo: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub slope_hi: f64,
    pub intercept: f64,
    /// NaN (null in JSON) when the losses do not vary: the line is flat.
    #[serde(deserialize_with = "nan_if_null")]
    pub r2: f64,
    pub n_points: i64,
    /// Evaluations of this model left out because its training failed.
    #[serde(default)]
    pub n_left_out: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_ratio: f64,
}

/// Least squares y = a + b·x: (a, b, R²); None when x does not vary.
pub fn least_squares(xs: &[f64], ys: &[f64]) -> Option<(f64, f64, f64)> {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= 1e-12 * n {
        return None;
    }
    // Losses equal up to rounding (log10 spread under 1e-12, e.g. a model that fell back to
    // the Baseline everywhere) are flat: slope exactly 0 rather than 1e-31 of float noise.
    if ys.iter().all(|y| (y - my).abs() <= 1e-12) {
        return Some((my, 0.0, f64::NAN));
    }
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let ss_res: f64 = xs.iter().zip(ys).map(|(x, y)| (y - a - b * x).powi(2)).sum();
    let ss_tot: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    Some((a, b, 1.0 - ss_res / ss_tot))
}

/// Fit log10(loss) against log10(x) with a bootstrap CI of the slope.
pub fn fit_points(points: &[&Point], x_name: &str, bootstrap: usize, seed: u64) -> Option<LineFit> {
    let xs: Vec<f64> = points.iter().map(|p| p.x.log10()).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.loss.log10()).collect();
    let (a, b, r2) = least_squares(&xs, &ys)?;
    let mut rng = stream(seed, &format!("bootstrap-{}-{}", points[0].model, points[0].dataset), 0);
    let mut slopes = Vec::with_capacity(bootstrap);
    for _ in 0..bootstrap {
        let idx: Vec<usize> = (0..xs.len()).map(|_| rng.random_range(0..xs.len())).collect();
        let (bx, by): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (xs[i], ys[i])).unzip();
        if let Some((_, s, _)) = least_squares(&bx, &by) {
            slopes.push(s);
        }
    }
    slopes.sort_by(|p, q| p.total_cmp(q));
    let pct = |q: f64| {
        slopes.get(((slopes.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
    };
    Some(LineFit {
        model: points[0].model.clone(),
        dataset: points[0].dataset.clone(),
        x: x_name.to_string(),
        slope: b,
        slope_lo: pct(0.025),
        slope_hi: pct(0.975),
        intercept: a,
        r2,
        n_points: points.len() as i64,
        n_left_out: 0,
        mean_ratio: points.iter().map(|p| p.loss / p.baseline).sum::<f64>() / points.len() as f64,
    })
}

/// Read a fit node's `fits.json`.
pub fn read_fits(path: &std::path::Path) -> Result<FitsDoc> {
    serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("{}: not a fits.json of this wormflow", path.display()))
}

/// The points of every input's evaluation (eval.parquet, by_dataset.parquet), and the
/// evaluations left out as failed training.
pub fn read_points(
    ctx: &StageContext,
    x_name: &str,
    by_dataset: bool,
    keep_failed: bool,
) -> Result<(Vec<Point>, Vec<LeftOut>)> {
    let (mut points, mut left_out) = (Vec::new(), Vec::new());
    for input in ctx.inputs {
        ctx.check_cancel()?;
        let path = input.dir.join("eval.parquet");
        if !path.exists() {
            continue;
        }
        let e: Evaluation = summaries::read(&path)?;
        let x = match x_name {
            "train_steps" => e.train_steps as f64,
            _ => e.n_params as f64,
        };
        if e.model == "baseline" {
            continue; // the Baseline is the reference, not a point of a scaling law
        }
        if e.learning.is_failure() && !keep_failed {
            left_out.push(LeftOut {
                node: input.node.clone(),
                model: e.model.clone(),
                x,
                learning: e.learning,
                note: e.learning_note.clone(),
            });
            continue;
        }
        let point = |dataset: &str, loss: f64, baseline: f64| Point {
            node: input.node.clone(),
            model: e.model.clone(),
            dataset: dataset.into(),
            x,
            loss,
            baseline,
            learning: e.learning,
            residual: e.residual,
        };
        points.push(point("all", e.val_loss, e.baseline_loss));
        if by_dataset {
            for d in parquet_io::read_rows::<DatasetLoss>(&input.dir.join("by_dataset.parquet"))? {
                points.push(point(&d.dataset, d.val_loss, d.baseline_loss));
            }
        }
    }
    Ok((points, left_out))
}

impl Stage for Fit {
    const NAME: &'static str = "fit";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_FIT");
    const CODE: &'static str = env!("WORMFLOW_CODE_FIT");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !matches!(p.x.as_str(), "train_steps" | "n_params") {
            return Err(format!("params.x must be \"train_steps\" or \"n_params\"; got {:?}", p.x));
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let (points, left_out) = read_points(ctx, &p.x, p.by_dataset, p.keep_failed)?;
        if points.is_empty() && left_out.is_empty() {
            bail!("no evaluations among the inputs; `needs` should name an evaluate stage");
        }
        if let Some(bad) = points.iter().find(|q| !(q.x > 0.0 && q.loss > 0.0 && q.baseline > 0.0))
        {
            bail!("cannot take logs of {bad:?}: x, loss and baseline must be positive");
        }
        let mut groups: BTreeMap<(String, String), Vec<&Point>> = BTreeMap::new();
        for q in &points {
            groups.entry((q.model.clone(), q.dataset.clone())).or_default().push(q);
        }
        let mut fits: Vec<LineFit> = Vec::new();
        for g in groups.values() {
            // A fit's bootstrap is ~ms; a pipeline may fit thousands of groups.
            ctx.check_cancel()?;
            fits.extend(fit_points(g, &p.x, p.bootstrap, p.seed));
        }
        for f in &mut fits {
            f.n_left_out = left_out.iter().filter(|l| l.model == f.model).count() as i64;
        }
        crate::parquet_io::write_rows(
            &ctx.out_dir.join("fits.parquet"),
            &fits,
            &ctx.file_metadata(),
        )?;
        let n_fits = fits.len();
        let warning = (!left_out.is_empty()).then(|| {
            let nodes: Vec<String> =
                left_out.iter().map(|l| format!("{} ({})", l.node, l.learning.as_str())).collect();
            format!(
                "left out {} failed training runs: {}; `keep_failed = true` counts them",
                left_out.len(),
                nodes.join(", ")
            )
        });
        let doc = FitsDoc {
            x: p.x.clone(),
            ci: "95% percentile bootstrap over the sweep's points".into(),
            fits,
            points,
            left_out,
        };
        std::fs::write(ctx.out_dir.join("fits.json"), serde_json::to_vec_pretty(&doc)?)?;
        let mut prov = Map::new();
        prov.insert("fits".into(), json!(n_fits));
        if let Some(w) = warning {
            prov.insert(wormflow_api::WARNINGS.into(), json!([w]));
        }
        Ok(prov)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    /// Fit 12 noisy points of loss = 3·steps^b; return (slope, whether b is inside the CI).
    fn trial(b: f64, seed: u64) -> (f64, bool) {
        let mut rng = stream(seed, "test", 0);
        let noise = Normal::new(0.0, 0.03).unwrap();
        let points: Vec<Point> = (0..12)
            .map(|i| {
                let steps = 1000.0 * 1.6f64.powi(i);
                let loss = 3.0 * steps.powf(b) * 10f64.powf(noise.sample(&mut rng));
                Point {
                    node: format!("e{i}"),
                    model: "lstm".into(),
                    dataset: "all".into(),
                    x: steps,
                    loss,
                    baseline: 1.0,
                    learning: Learning::Learned,
                    residual: false,
                }
            })
            .collect();
        let refs: Vec<&Point> = points.iter().collect();
        let f = fit_points(&refs, "train_steps", 1000, seed).unwrap();
        assert!(f.r2 > 0.95, "{f:?}");
        assert!(least_squares(&[0.0, 1.0], &[2.0, 2.0]).unwrap().2.is_nan(), "no variance, no R²");
        (f.slope, f.slope_lo <= b && b <= f.slope_hi)
    }

    #[test]
    fn a_known_power_law_is_recovered() {
        for b in [-0.65, -0.40] {
            let trials: Vec<(f64, bool)> = (0..40).map(|seed| trial(b, seed)).collect();
            assert!(trials.iter().all(|(s, _)| (s - b).abs() < 0.06), "b = {b}: {trials:?}");
            let covered = trials.iter().filter(|(_, inside)| *inside).count();
            // A 95% interval from 12 points: allow for the percentile bootstrap's known
            // under-coverage, but not for a broken interval.
            assert!(covered >= 34, "b = {b}: inside the CI in {covered} of 40 trials");
        }
    }

    #[test]
    fn losses_equal_up_to_rounding_are_flat() {
        let y = 0.043f64.log10();
        let (a, b, r2) = least_squares(&[3.0, 3.3, 3.9], &[y, y + 4e-16, y - 2e-16]).unwrap();
        assert_eq!(b, 0.0);
        assert!(r2.is_nan() && (a - y).abs() < 1e-12);
    }

    #[test]
    fn least_squares_is_exact_on_a_line() {
        let (a, b, r2) = least_squares(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12 && (r2 - 1.0).abs() < 1e-12);
        assert!(least_squares(&[1.0, 1.0], &[1.0, 2.0]).is_none());
    }
}
