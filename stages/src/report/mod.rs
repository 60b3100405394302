//! Kind `report`: one self-contained `report.html` (inline SVG, no scripts or external
//! resources, opens offline) and `summary.md`, from everything it `needs`: fit nodes
//! (fits.json), evaluate nodes (eval.parquet, by_dataset, neurons, kstep, generation) and
//! train nodes (metrics.parquet, model.parquet). Pages are askama templates
//! (stages/templates/), which HTML-escape every value unless marked `safe` (the SVG).
//!
//! Figures: data scaling per model with fit lines and slope bands, and the same as a ratio
//! to the Baseline (paper Fig. 4B); per-dataset slopes (4C); model scaling (5B, both views);
//! synthetic sets vs Baseline (6); generated vs true activity (7); k-step-ahead error on
//! recorded and synthetic data; training curves. Tables: fits, what the fits left out, the
//! most and least predictable neuron classes per source, and the evaluations (built by
//! `sweep`, as `wormflow compare`).

mod findings;
mod svg;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::{InputNode, StageContext};

use crate::fit::{read_fits, FitsDoc, LineFit, Point};
use crate::metrics::{read_epochs, Epoch, Learning};
use crate::parquet_io;
use crate::stage::Stage;
use crate::summaries::{
    self, DatasetLoss, Evaluation, ForecastSkill, GeneratedStep, KStepError, ModelCard, NeuronError,
};
use crate::sweep::{self, SweepNode};
use svg::{color, fmt_num, Chart, Series};

pub struct Report;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub title: String,
    /// Datasets drawn in the synthetic panel (Fig. 6).
    pub synthetic: Vec<String>,
    /// Neurons per worm in the generation figure.
    pub generation_neurons: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            title: "wormflow: scaling of neural-activity models of C. elegans".into(),
            synthetic: vec!["Sines".into(), "RandomWalk".into(), "Connectome".into()],
            generation_neurons: 4,
        }
    }
}

pub use svg::fmt_sig;

struct Figure {
    id: &'static str,
    caption: String,
    svg: String,
}

/// A table of the report (HTML and Markdown); its first `text_columns` are left-aligned.
struct Table {
    title: String,
    note: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    text_columns: usize,
}

#[derive(askama::Template)]
#[template(path = "report.html")]
struct Page<'a> {
    title: &'a str,
    findings: &'a [String],
    figures: &'a [Figure],
    tables: &'a [Table],
}

#[derive(askama::Template)]
#[template(path = "summary.md", escape = "none")]
struct Summary<'a> {
    title: &'a str,
    findings: &'a [String],
    tables: &'a [Table],
}

/// An evaluate node's outputs.
struct Eval<'a> {
    input: &'a InputNode,
    eval: Evaluation,
    by_dataset: Vec<DatasetLoss>,
}

/// A train node's outputs.
struct Trained<'a> {
    input: &'a InputNode,
    card: ModelCard,
    epochs: Vec<Epoch>,
}

fn model_index(model: &str) -> usize {
    let models = crate::torch_stages::MODELS;
    models.iter().position(|m| *m == model).unwrap_or(models.len())
}

type Inputs<'a> = (Vec<(&'a InputNode, FitsDoc)>, Vec<Eval<'a>>, Vec<Trained<'a>>);

fn read_inputs<'a>(ctx: &StageContext<'a>) -> Result<Inputs<'a>> {
    let (mut fits, mut evals, mut trains) = (Vec::new(), Vec::new(), Vec::new());
    for i in ctx.inputs {
        ctx.check_cancel()?;
        if i.dir.join("fits.json").exists() {
            fits.push((i, read_fits(&i.dir.join("fits.json"))?));
        }
        if i.dir.join("eval.parquet").exists() {
            let by_dataset = parquet_io::read_rows(&i.dir.join("by_dataset.parquet"))?;
            evals.push(Eval {
                input: i,
                eval: summaries::read(&i.dir.join("eval.parquet"))?,
                by_dataset,
            });
        }
        if i.dir.join("metrics.parquet").exists() {
            trains.push(Trained {
                input: i,
                card: summaries::read(&i.dir.join("model.parquet"))?,
                epochs: read_epochs(&i.dir.join("metrics.parquet"))?,
            });
        }
    }
    Ok((fits, evals, trains))
}

impl Stage for Report {
    const NAME: &'static str = "report";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_REPORT");
    const CODE: &'static str = env!("WORMFLOW_CODE_REPORT");
    type Params = Params;

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let (fits, evals, trains) = read_inputs(ctx)?;
        if fits.is_empty() && evals.is_empty() && trains.is_empty() {
            bail!("nothing to report: `needs` should name fit, evaluate or train stages");
        }
        let mut figures = Vec::new();
        for (node, doc) in &fits {
            ctx.check_cancel()?;
            figures.extend(scaling_figures(node, doc));
        }
        ctx.check_cancel()?;
        figures.extend(synthetic_figure(&evals, &p.synthetic));
        figures.extend(kstep_figures(&evals, &p.synthetic)?);
        figures.extend(generation_figure(&evals, p.generation_neurons)?);
        let forecasts = read_forecasts(&evals)?;
        figures.extend(forecast_figure(&forecasts));
        figures.extend(training_figure(&trains));
        let named: Vec<(&str, &FitsDoc)> = fits.iter().map(|(i, d)| (i.node.as_str(), d)).collect();
        let findings = findings::findings(&named);
        ctx.check_cancel()?;
        let mut tables = vec![fit_table(&fits)];
        tables.extend(left_out_table(&fits));
        tables.extend(neuron_table(&evals, &p.synthetic)?);
        tables.extend(forecast_table(&forecasts));
        tables.push(evaluation_table(&evals)?);
        let page =
            Page { title: &p.title, findings: &findings, figures: &figures, tables: &tables };
        std::fs::write(ctx.out_dir.join("report.html"), askama::Template::render(&page)?)?;
        let md_tables: Vec<Table> = tables.iter().map(md_escaped).collect();
        let summary = Summary { title: &p.title, findings: &findings, tables: &md_tables };
        std::fs::write(ctx.out_dir.join("summary.md"), askama::Template::render(&summary)?)?;
        let mut prov = Map::new();
        prov.insert("figures".into(), json!(figures.len()));
        Ok(prov)
    }
}

/// A table whose cells cannot break Markdown's table syntax.
fn md_escaped(t: &Table) -> Table {
    let cell = |c: &String| c.replace('|', "\\|").replace('\n', " ");
    Table {
        title: t.title.clone(),
        note: t.note.clone(),
        header: t.header.iter().map(cell).collect(),
        rows: t.rows.iter().map(|r| r.iter().map(cell).collect()).collect(),
        text_columns: t.text_columns,
    }
}

/// The line through the points' centroid (log-log) with slope `b`, over [lo, hi].
fn fit_line(a: f64, b: f64, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    [lo, hi].iter().map(|&x| (x, 10f64.powf(a + b * x.log10()))).collect()
}

/// The band the slope's 95% interval spans: lines through the centroid of the points (in
/// log-log) with the interval's slopes, evaluated along the fitted range.
fn slope_band(pts: &[(f64, f64)], lo_slope: f64, hi_slope: f64) -> Vec<(f64, f64, f64)> {
    let logs: Vec<(f64, f64)> =
        pts.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0).map(|p| (p.0.log10(), p.1.log10())).collect();
    if logs.len() < 2 || !lo_slope.is_finite() || !hi_slope.is_finite() {
        return Vec::new();
    }
    let n = logs.len() as f64;
    let (cx, cy) =
        (logs.iter().map(|p| p.0).sum::<f64>() / n, logs.iter().map(|p| p.1).sum::<f64>() / n);
    let (x0, x1) =
        logs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.0), h.max(p.0)));
    (0..=16)
        .map(|k| {
            let x = x0 + (x1 - x0) * k as f64 / 16.0;
            let (a, b) = (cy + lo_slope * (x - cx), cy + hi_slope * (x - cx));
            (10f64.powf(x), 10f64.powf(a.min(b)), 10f64.powf(a.max(b)))
        })
        .collect()
}

/// Per fit node: loss against x with fit lines and their slope bands, the same as a ratio to
/// the Baseline; and per-dataset slopes when present.
fn scaling_figures(node: &InputNode, doc: &FitsDoc) -> Vec<Figure> {
    let (title, x_label, id, ratio_id) = if doc.x == "n_params" {
        ("Model scaling (Fig. 5B)", "parameters", "model-scaling", "model-scaling-ratio")
    } else {
        ("Data scaling (Fig. 4B)", "training time steps", "data-scaling", "data-scaling-ratio")
    };
    let mut by_model: BTreeMap<(usize, String), Vec<&Point>> = BTreeMap::new();
    for q in doc.points.iter().filter(|q| q.dataset == "all") {
        by_model.entry((model_index(&q.model), q.model.clone())).or_default().push(q);
    }
    let mut chart =
        Chart::new(&format!("{title} — {}", node.node), x_label, "validation loss (MSE)");
    let mut ratio = Chart::new(
        &format!("{title}, relative to the Baseline — {}", node.node),
        x_label,
        "val loss / Baseline loss",
    );
    chart.x_log = true;
    chart.y_log = true;
    ratio.x_log = true;
    ratio.y_log = true;
    ratio.reference = Some((1.0, "Baseline".into()));
    // The Baseline's loss on the same validation windows (one value: they are fixed).
    let mut baselines: Vec<f64> = doc
        .points
        .iter()
        .filter(|q| q.dataset == "all")
        .map(|q| q.baseline)
        .filter(|b| b.is_finite())
        .collect();
    baselines.sort_by(f64::total_cmp);
    if let Some(&b) = baselines.get(baselines.len() / 2) {
        chart.reference = Some((b, format!("Baseline {}", fmt_sig(b, 4))));
    }
    for ((i, m), qs) in &by_model {
        let c = color(*i);
        let pts: Vec<(f64, f64)> = qs.iter().map(|q| (q.x, q.loss)).collect();
        chart.series.push(Series::new(m.clone(), pts.clone(), c));
        ratio.series.push(Series::new(
            m.clone(),
            qs.iter().map(|q| (q.x, q.loss / q.baseline)).collect(),
            c,
        ));
        if let Some(f) = doc.fits.iter().find(|f| &f.model == m && f.dataset == "all") {
            let (lo, hi) =
                pts.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| (l.min(p.0), h.max(p.0)));
            let band = slope_band(&pts, f.slope_lo, f.slope_hi);
            let name = format!(
                "{m} fit, slope {} [{}, {}]",
                fmt_num(f.slope),
                fmt_num(f.slope_lo),
                fmt_num(f.slope_hi)
            );
            chart.series.push(Series {
                line: true,
                markers: false,
                dashed: true,
                band: (!band.is_empty()).then_some(band),
                ..Series::new(name, fit_line(f.intercept, f.slope, lo, hi), c)
            });
        }
    }
    let mut out = vec![
        Figure { id, caption: format!("{title}: validation loss against {x_label} (log-log), with least-squares fits; the shading spans the slope's 95% bootstrap interval; the dashed black line is the Baseline (copy the current step)."), svg: chart.render() },
        Figure { id: ratio_id, caption: format!("{title} as a fraction of the Baseline's loss on the same windows: below 1 the model beats copying the current step."), svg: ratio.render() },
    ];
    let per_ds: Vec<&LineFit> = doc.fits.iter().filter(|f| f.dataset != "all").collect();
    if !per_ds.is_empty() {
        let mut datasets: Vec<String> = per_ds.iter().map(|f| f.dataset.clone()).collect();
        datasets.sort();
        datasets.dedup();
        let mut chart = Chart::new(
            "Per-dataset data-scaling slopes (Fig. 4C)",
            "source dataset",
            "slope (95% CI)",
        );
        chart.x_categories = Some(datasets.clone());
        chart.reference = Some((0.0, "no scaling".into()));
        let mut models: Vec<String> = per_ds.iter().map(|f| f.model.clone()).collect();
        models.sort_by_key(|m| model_index(m));
        models.dedup();
        for (k, m) in models.iter().enumerate() {
            let offset = (k as f64 - models.len() as f64 / 2.0) * 0.08;
            let rows: Vec<&&LineFit> = per_ds.iter().filter(|f| &f.model == m).collect();
            let pts = rows
                .iter()
                .map(|f| {
                    (
                        datasets.iter().position(|d| *d == f.dataset).unwrap_or(0) as f64
                            + 1.0
                            + offset,
                        f.slope,
                    )
                })
                .collect();
            let errs = rows.iter().map(|f| (f.slope_lo, f.slope_hi)).collect();
            chart.series.push(Series {
                errors: Some(errs),
                ..Series::new(m.clone(), pts, color(model_index(m)))
            });
        }
        out.push(Figure { id: "dataset-slopes", caption: "Slope of log loss against log training steps, fitted per source dataset, with bootstrap 95% intervals.".into(), svg: chart.render() });
    }
    out
}

/// Loss as a fraction of the Baseline's on each synthetic dataset, per model (Fig. 6).
fn synthetic_figure(evals: &[Eval], synthetic: &[String]) -> Option<Figure> {
    let present: Vec<&String> = synthetic
        .iter()
        .filter(|d| evals.iter().any(|e| e.by_dataset.iter().any(|b| &b.dataset == *d)))
        .collect();
    if present.is_empty() {
        return None;
    }
    let mut chart = Chart::new(
        "Synthetic data (Fig. 6): loss relative to Baseline",
        "dataset",
        "val loss / Baseline loss",
    );
    chart.x_categories = Some(present.iter().map(|s| s.to_string()).collect());
    chart.reference = Some((1.0, "Baseline".into()));
    chart.y_log = true;
    let mut by_model: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    for e in evals.iter().filter(|e| e.eval.model != "baseline") {
        let m = &e.eval.model;
        for (k, d) in present.iter().enumerate() {
            if let Some(b) = e.by_dataset.iter().find(|b| &b.dataset == *d) {
                by_model
                    .entry((model_index(m), m.clone()))
                    .or_default()
                    .push((k as f64 + 1.0 + (model_index(m) as f64 - 3.0) * 0.06, b.ratio));
            }
        }
    }
    for ((i, m), pts) in by_model {
        chart.series.push(Series::new(m, pts, color(i)));
    }
    Some(Figure { id: "synthetic", caption: "Validation loss divided by the Baseline's (copy the current step) on synthetic worms: below 1 the model predicts better than no change. Random Walk: nothing should beat it.".into(), svg: chart.render() })
}

/// The evaluation of each model among `evals` that beats the Baseline by the most (the
/// one a figure shows for that model; by ratio, not loss, which differs in scale between
/// data sets), in model order.
fn best_per_model<'a, 'b>(evals: &'b [&'b Eval<'a>]) -> Vec<&'b Eval<'a>> {
    let mut best: BTreeMap<(usize, &str), &Eval> = BTreeMap::new();
    for e in evals.iter().filter(|e| e.eval.model != "baseline") {
        let slot = best.entry((model_index(&e.eval.model), e.eval.model.as_str())).or_insert(e);
        if e.eval.ratio < slot.eval.ratio {
            *slot = e;
        }
    }
    best.into_values().collect()
}

/// k-step-ahead error, recorded and synthetic data apart (their scales differ), one line
/// per model (its best evaluation on that data) and the Baseline's.
fn kstep_figures(evals: &[Eval], synthetic: &[String]) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for (kind, id, is_synthetic) in
        [("recorded", "kstep", false), ("synthetic", "kstep-synthetic", true)]
    {
        let on_kind = |d: &str| synthetic.iter().any(|s| s == d) == is_synthetic;
        let relevant: Vec<&Eval> = evals
            .iter()
            .filter(|e| {
                e.by_dataset.iter().any(|b| on_kind(&b.dataset))
                    && e.input.dir.join("kstep.parquet").exists()
            })
            .collect();
        let chosen = best_per_model(&relevant);
        if chosen.is_empty() {
            continue;
        }
        let mut chart = Chart::new(
            &format!("Error k steps ahead, {kind} data (autoregressive)"),
            "k (steps ahead)",
            "MSE",
        );
        chart.y_log = true;
        // The Baseline of each distinct set of data the chosen evaluations ran on.
        let mut baselines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for e in &chosen {
            let rows: Vec<KStepError> = parquet_io::read_rows(&e.input.dir.join("kstep.parquet"))?;
            // Pool the datasets of this kind, weighted by their recorded values.
            let mut pooled: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new();
            for r in rows.iter().filter(|r| on_kind(&r.dataset)) {
                let p = pooled.entry(r.k).or_default();
                let n = r.n_values as f64;
                *p = (p.0 + r.mse * n, p.1 + r.baseline_mse * n, p.2 + n);
            }
            let pts = pooled.iter().map(|(&k, p)| (k as f64, p.0 / p.2)).collect();
            let data: Vec<&str> =
                e.by_dataset.iter().map(|b| b.dataset.as_str()).filter(|d| on_kind(d)).collect();
            baselines
                .entry(data.join(", "))
                .or_insert_with(|| pooled.iter().map(|(&k, p)| (k as f64, p.1 / p.2)).collect());
            chart.series.push(Series {
                line: true,
                markers: false,
                ..Series::new(
                    format!("{} ({})", e.eval.model, e.input.node),
                    pts,
                    color(model_index(&e.eval.model)),
                )
            });
        }
        let several = baselines.len() > 1;
        for (data, pts) in baselines {
            let name = if several {
                format!("Baseline on {data} (repeat the last step)")
            } else {
                "Baseline (repeat the last step)".into()
            };
            chart.series.push(Series {
                line: true,
                markers: false,
                dashed: true,
                ..Series::new(name, pts, "#000")
            });
        }
        out.push(Figure { id, caption: format!("Mean squared error of k-step-ahead predictions on {kind} validation windows, the model fed its own predictions; per model its evaluation with the lowest one-step loss relative to the Baseline."), svg: chart.render() });
    }
    Ok(out)
}

/// An evaluation's multi-step forecasts (forecast_skill.parquet), when it made them.
struct Forecast<'a> {
    eval: &'a Eval<'a>,
    rows: Vec<ForecastSkill>,
}

fn read_forecasts<'a>(evals: &'a [Eval<'a>]) -> Result<Vec<Forecast<'a>>> {
    let mut out = Vec::new();
    for e in evals {
        let path = e.input.dir.join("forecast_skill.parquet");
        if path.exists() {
            out.push(Forecast { eval: e, rows: parquet_io::read_rows(&path)? });
        }
    }
    out.sort_by_key(|f| (model_index(&f.eval.eval.model), f.eval.input.node.clone()));
    Ok(out)
}

/// Skill against copy-the-last-step by step ahead, all worms pooled, one line per
/// evaluation; copy-last is 0 by definition (the dashed line).
fn forecast_figure(forecasts: &[Forecast]) -> Option<Figure> {
    let first = forecasts.first()?;
    let part = first.rows.first().map_or("", |r| r.part.as_str());
    let mut chart = Chart::new(
        &format!("Multi-step forecasts on the {part} part: skill against copy-last"),
        "steps ahead",
        "skill = 1 − MSE / MSE(copy last)",
    );
    let mut horizon = 1.0f64;
    for f in forecasts {
        let pts: Vec<(f64, f64)> = f
            .rows
            .iter()
            .filter(|r| r.dataset == "all")
            .map(|r| (r.step as f64, r.skill_vs_copy))
            .collect();
        horizon = pts.iter().map(|p| p.0).fold(horizon, f64::max);
        chart.series.push(Series {
            line: true,
            markers: true,
            ..Series::new(
                format!("{} ({})", f.eval.eval.model, f.eval.input.node),
                pts,
                color(model_index(&f.eval.eval.model)),
            )
        });
    }
    chart.series.push(Series {
        line: true,
        markers: false,
        dashed: true,
        ..Series::new("copy the last context step (0)", vec![(1.0, 0.0), (horizon, 0.0)], "#000")
    });
    Some(Figure {
        id: "forecast",
        caption: format!("Skill of forecasts 1…{horizon} steps ahead on every window of each worm's {part} part (never seen in training or model selection), computed per worm and averaged over worms, as the forecasting benchmark POCO scores; above 0 beats copying the last context step. Comparable with POCO's C. elegans figures in protocol only: other worms, other preprocessing."),
        svg: chart.render(),
    })
}

/// The leaderboard: skill at steps 1, 4 and the last, per evaluation and source.
fn forecast_table(forecasts: &[Forecast]) -> Option<Table> {
    let first = forecasts.first()?;
    let last = first.rows.iter().map(|r| r.step).max().unwrap_or(1);
    let steps: Vec<i64> = [1, 4, last]
        .into_iter()
        .filter(|&k| k <= last)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for f in forecasts {
        let datasets: BTreeSet<&str> = f.rows.iter().map(|r| r.dataset.as_str()).collect();
        for d in datasets {
            let at = |k: i64| f.rows.iter().find(|r| r.dataset == d && r.step == k);
            let mut row = vec![
                f.eval.eval.model.clone(),
                f.eval.input.node.clone(),
                d.to_string(),
                at(1).map_or(String::new(), |r| r.n_worms.to_string()),
            ];
            row.extend(
                steps
                    .iter()
                    .map(|&k| at(k).map_or(String::new(), |r| format!("{:.3}", r.skill_vs_copy))),
            );
            row.push(at(1).map_or(String::new(), |r| format!("{:.3}", r.skill_vs_mean)));
            rows.push(row);
        }
    }
    let mut header: Vec<String> = ["model", "node", "source", "worms"].map(String::from).to_vec();
    header.extend(steps.iter().map(|k| format!("skill @ {k}")));
    header.push("skill vs mean of context @ 1".into());
    let part = first.rows.first().map_or("", |r| r.part.as_str());
    Some(Table {
        title: "Forecasting leaderboard".into(),
        note: format!("Skill = 1 − MSE / MSE(copy the last context step) k steps ahead, on the {part} part, per worm then averaged over the source's worms (\"all\": every worm). The last column uses the mean of the context as the reference (ZAPBench's). Comparable with published forecasting numbers (POCO, ZAPBench) in protocol, not in data: other worms, other preprocessing."),
        header,
        rows,
        text_columns: 3,
    })
}

/// Truth and generated activity of a few neurons (Fig. 7), from the first evaluation of a
/// trained recurrent model that has a generation table.
fn generation_figure(evals: &[Eval], n_neurons: usize) -> Result<Option<Figure>> {
    let mut ordered: Vec<&Eval> = evals
        .iter()
        .filter(|e| e.eval.model != "baseline" && e.input.dir.join("generation.parquet").exists())
        .collect();
    ordered.sort_by_key(|e| if e.eval.model == "lstm" { 0 } else { 1 });
    for e in ordered {
        let rows: Vec<GeneratedStep> =
            parquet_io::read_rows(&e.input.dir.join("generation.parquet"))?;
        let Some(first) = rows.first() else { continue };
        let (dataset, worm) = (first.dataset.clone(), first.worm.clone());
        let mut traces: BTreeMap<&str, Vec<&GeneratedStep>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.dataset == dataset && r.worm == worm) {
            traces.entry(r.neuron.as_str()).or_default().push(r);
        }
        let mut chart = Chart::new(
            &format!("Generation (Fig. 7): {} on {dataset}/{worm}", e.input.node),
            "time step (context, then generated)",
            "activity (z-scored, offset per neuron)",
        );
        for (k, (neuron, steps)) in traces.iter().take(n_neurons).enumerate() {
            let offset = 4.0 * k as f64;
            chart.series.push(Series {
                line: true,
                markers: false,
                ..Series::new(
                    format!("{neuron} true"),
                    steps.iter().map(|r| (r.step as f64, r.truth + offset)).collect(),
                    color(k),
                )
            });
            let generated = steps
                .iter()
                .filter_map(|r| r.generated.map(|g| (r.step as f64, g + offset)))
                .collect();
            chart.series.push(Series {
                line: true,
                markers: false,
                dashed: true,
                ..Series::new(format!("{neuron} generated"), generated, color(k))
            });
        }
        return Ok(Some(Figure { id: "generation", caption: "True activity (solid) and the model's autoregressive generation (dashed) after the context window.".into(), svg: chart.render() }));
    }
    Ok(None)
}

/// Validation loss per epoch: per model its best run, and every run whose training
/// diverged — drawn up to where it left the others' range and marked, so one exploding
/// run cannot stretch the axis over the others.
fn training_figure(trains: &[Trained]) -> Option<Figure> {
    let mut best: BTreeMap<(usize, &str), &Trained> = BTreeMap::new();
    for t in trains.iter().filter(|t| t.card.learning != Learning::Diverged) {
        let slot = best
            .entry((model_index(&t.card.architecture), t.card.architecture.as_str()))
            .or_insert(t);
        if t.card.best_val_loss < slot.card.best_val_loss {
            *slot = t;
        }
    }
    let shown: Vec<&Trained> = best.values().copied().collect();
    let diverged: Vec<&Trained> =
        trains.iter().filter(|t| t.card.learning == Learning::Diverged).collect();
    if shown.is_empty() && diverged.is_empty() {
        return None;
    }
    let ceiling = shown
        .iter()
        .flat_map(|t| t.epochs.iter().map(|e| e.val_loss))
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let mut chart = Chart::new("Training curves", "epoch", "validation loss");
    chart.y_log = true;
    for t in &shown {
        let pts = t.epochs.iter().map(|e| (e.epoch as f64, e.val_loss)).collect();
        chart.series.push(Series {
            line: true,
            markers: t.epochs.len() < 3,
            ..Series::new(t.input.node.clone(), pts, color(model_index(&t.card.architecture)))
        });
    }
    for t in &diverged {
        let limit = if ceiling.is_finite() { ceiling * 1.5 } else { f64::INFINITY };
        let pts = t
            .epochs
            .iter()
            .take_while(|e| e.val_loss.is_finite() && e.val_loss <= limit)
            .map(|e| (e.epoch as f64, e.val_loss))
            .collect();
        chart.series.push(Series {
            line: true,
            markers: true,
            dashed: true,
            ..Series::new(
                format!("{} (diverged at epoch {}; cut off)", t.input.node, t.card.epochs_run),
                pts,
                color(model_index(&t.card.architecture)),
            )
        });
    }
    Some(Figure { id: "training", caption: "Validation loss per epoch (epoch 0: the untrained model): per model its run with the lowest loss, and each run that diverged, cut where it leaves the others' range.".into(), svg: chart.render() })
}

fn fit_table(fits: &[(&InputNode, FitsDoc)]) -> Table {
    let mut rows = Vec::new();
    for (node, doc) in fits {
        for f in &doc.fits {
            rows.push(vec![
                node.node.clone(),
                f.x.clone(),
                f.model.clone(),
                f.dataset.clone(),
                format!("{} [{}, {}]", fmt_num(f.slope), fmt_num(f.slope_lo), fmt_num(f.slope_hi)),
                // No R² when the losses do not vary: the line is flat.
                if f.r2.is_finite() { fmt_num(f.r2) } else { "flat".into() },
                match f.n_left_out {
                    0 => f.n_points.to_string(),
                    k => format!("{} ({k} left out)", f.n_points),
                },
                fmt_sig(f.mean_ratio, 4),
            ]);
        }
    }
    let header =
        ["fit", "x", "model", "dataset", "slope [95% CI]", "R²", "points", "loss / Baseline"];
    Table {
        title: "Scaling fits".into(),
        note: String::new(),
        header: header.map(String::from).to_vec(),
        rows,
        text_columns: 4,
    }
}

/// Evaluations the fits left out because training failed, with what happened.
fn left_out_table(fits: &[(&InputNode, FitsDoc)]) -> Option<Table> {
    let rows: Vec<Vec<String>> = fits
        .iter()
        .flat_map(|(fit, doc)| {
            doc.left_out.iter().map(|l| {
                vec![
                    fit.node.clone(),
                    l.node.clone(),
                    l.learning.as_str().replace('_', " "),
                    l.note.clone(),
                ]
            })
        })
        .collect();
    let header = ["fit", "left out", "training", "what happened"];
    (!rows.is_empty()).then(|| Table {
        title: "Left out of the fits: training failed".into(),
        note: String::new(),
        header: header.map(String::from).to_vec(),
        rows,
        text_columns: 4,
    })
}

/// The evaluations as a sweep table (the same code as `wormflow compare`).
fn evaluation_table(evals: &[Eval]) -> Result<Table> {
    let nodes: Vec<SweepNode> = evals.iter().map(|e| sweep_node(e.input)).collect::<Result<_>>()?;
    let df = sweep::table(&nodes)?;
    let columns = ["node", "model", "n_params", "train_steps", "val_loss", "ratio", "learning"];
    let header = [
        "node",
        "model",
        "parameters",
        "training steps",
        "val loss",
        "loss / Baseline",
        "training",
    ];
    let rows = if df.height() == 0 { Vec::new() } else { sweep::text_rows(&df, &columns)? };
    let rows =
        rows.into_iter().map(|r| r.into_iter().map(|c| c.replace('_', " ")).collect()).collect();
    Ok(Table {
        title: "Evaluations".into(),
        note: String::new(),
        header: header.map(String::from).to_vec(),
        rows,
        text_columns: 2,
    })
}

fn sweep_node(input: &InputNode) -> Result<SweepNode> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&input.dir)? {
        let entry = entry?;
        files.insert(entry.file_name().to_string_lossy().into_owned(), entry.path());
    }
    Ok(SweepNode {
        stage: input.stage.clone(),
        node: input.node.clone(),
        state: "fresh".into(),
        matrix: input.matrix.clone(),
        params: Vec::new(),
        files,
        // The report's bytes depend on results, not on how long they took.
        timing: Vec::new(),
    })
}

/// The most and least predictable neuron classes (left and right pooled) per recorded
/// source, from the model with the lowest loss relative to the Baseline on recorded data.
fn neuron_table(evals: &[Eval], synthetic: &[String]) -> Result<Option<Table>> {
    let real: Vec<&Eval> = evals
        .iter()
        .filter(|e| {
            e.eval.model != "baseline"
                && !e.eval.learning.is_failure()
                && e.input.dir.join("neurons.parquet").exists()
        })
        .filter(|e| e.by_dataset.iter().any(|b| !synthetic.contains(&b.dataset)))
        .collect();
    let Some(best) = real.iter().min_by(|a, b| a.eval.ratio.total_cmp(&b.eval.ratio)) else {
        return Ok(None);
    };
    let rows: Vec<NeuronError> = parquet_io::read_rows(&best.input.dir.join("neurons.parquet"))?;
    let rows: Vec<NeuronError> =
        rows.into_iter().filter(|r| !synthetic.contains(&r.dataset)).collect();
    let ranked = sweep::neuron_classes(&rows, 5)?;
    let note = format!(
        "From {} ({}, loss {}× the Baseline's), one step ahead on the validation windows. Variance explained: 1 − MSE / variance of the neuron's targets, per worm, averaged over the worms that recorded the class (left and right pooled); the Baseline copies the current step, so the last column says where the model adds to that. Every neuron of every worm is in that node's neurons.parquet.",
        best.input.node, best.eval.model, fmt_sig(best.eval.ratio, 4)
    );
    let header = [
        "dataset",
        "rank",
        "class",
        "worms",
        "variance explained",
        "Baseline's",
        "MSE / Baseline's",
    ];
    Ok(Some(Table {
        title: "Which neurons are predictable".into(),
        note,
        header: header.map(String::from).to_vec(),
        rows: ranked,
        text_columns: 3,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_titles_are_escaped() {
        let figures = [Figure {
            id: "x",
            caption: "<img src=x onerror=alert(1)>".into(),
            svg: "<svg></svg>".into(),
        }];
        let tables = [Table {
            title: "t".into(),
            note: String::new(),
            header: vec!["h".into()],
            rows: vec![vec!["<script>x</script>".into()]],
            text_columns: 1,
        }];
        let page = Page {
            title: "<script>alert(1)</script> & co",
            findings: &["a < b".into()],
            figures: &figures,
            tables: &tables,
        };
        let html = askama::Template::render(&page).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("<title>&#60;script&#62;alert(1)&#60;/script&#62; &#38; co</title>")
                || html.contains("<title>&lt;script&gt;"),
            "{html}"
        );
        assert!(html.contains("<svg></svg>"), "figures are inserted as SVG");
    }

    #[test]
    fn slope_bands_contain_the_fit() {
        let pts = [(1e3, 0.1), (1e4, 0.05), (1e5, 0.02)];
        let band = slope_band(&pts, -0.5, -0.2);
        assert_eq!(band.len(), 17);
        assert!(band.iter().all(|b| b.1 <= b.2));
    }
}
