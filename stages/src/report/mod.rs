//! Kind `report`: one self-contained `report.html` (inline SVG, no scripts or external
//! resources, opens offline) and `summary.md`, from everything it `needs`: fit nodes
//! (fits.json), evaluate nodes (eval.json, kstep.parquet, generation.parquet) and train
//! nodes (metrics.parquet, model.json).
//!
//! Figures: data scaling per model with fit lines (paper Fig. 4B), per-dataset slopes
//! (4C), model scaling (5B), synthetic sets vs Baseline (6), generated vs true activity (7),
//! k-step-ahead error, and training curves; tables of fits and evaluations.

mod findings;
mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Result};
use arrow::array::{Array, Float64Array, StringArray, UInt64Array};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wormflow_api::{InputNode, StageContext};

use crate::metrics::read_epochs;
use crate::parquet_io::read_batches;
use crate::stage::Stage;
use svg::{color, fmt_num, fmt_sig, Chart, Series};

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

struct Figure {
    id: &'static str,
    caption: String,
    svg: String,
}

fn json_of(input: &InputNode, file: &str) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(input.dir.join(file)).ok()?).ok()
}

fn model_index(model: &str) -> usize {
    crate::torch_stages::MODELS.iter().position(|m| *m == model).unwrap_or(9)
}

impl Stage for Report {
    const NAME: &'static str = "report";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_REPORT");
    type Params = Params;

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let fits: Vec<(&InputNode, Value)> = ctx.inputs.iter().filter_map(|i| json_of(i, "fits.json").map(|v| (i, v))).collect();
        let evals: Vec<(&InputNode, Value)> = ctx.inputs.iter().filter_map(|i| json_of(i, "eval.json").map(|v| (i, v))).collect();
        let trains: Vec<&InputNode> = ctx.inputs.iter().filter(|i| i.dir.join("metrics.parquet").exists()).collect();
        if fits.is_empty() && evals.is_empty() && trains.is_empty() {
            bail!("nothing to report: `needs` should name fit, evaluate or train stages");
        }
        let mut figures = Vec::new();
        for (node, doc) in &fits {
            figures.extend(scaling_figures(node, doc));
        }
        figures.extend(synthetic_figure(&evals, &p.synthetic));
        figures.extend(kstep_figure(&evals));
        figures.extend(generation_figure(&evals, p.generation_neurons)?);
        figures.extend(training_figure(&trains)?);
        let typed: Vec<(&str, crate::fit::FitsDoc)> =
            fits.iter().map(|(i, _)| Ok((i.node.as_str(), crate::fit::read_fits(&i.dir.join("fits.json"))?))).collect::<Result<_>>()?;
        let findings = findings::findings(&typed);
        let html = render_html(&p.title, &findings, &figures, &fits, &evals);
        std::fs::write(ctx.out_dir.join("report.html"), html)?;
        std::fs::write(ctx.out_dir.join("summary.md"), summary_md(&p.title, &findings, &fits, &evals))?;
        let mut prov = Map::new();
        prov.insert("figures".into(), json!(figures.len()));
        Ok(prov)
    }
}

/// Per fit node: loss against x with fit lines; and per-dataset slopes when present.
fn scaling_figures(node: &InputNode, doc: &Value) -> Vec<Figure> {
    let x = doc["x"].as_str().unwrap_or("x");
    let (title, x_label, id) = if x == "n_params" {
        ("Model scaling (Fig. 5B)", "parameters", "model-scaling")
    } else {
        ("Data scaling (Fig. 4B)", "training time steps", "data-scaling")
    };
    let points = doc["points"].as_array().cloned().unwrap_or_default();
    let fits = doc["fits"].as_array().cloned().unwrap_or_default();
    let mut by_model: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    for q in points.iter().filter(|q| q["dataset"] == "all") {
        let m = q["model"].as_str().unwrap_or_default().to_string();
        by_model.entry((model_index(&m), m)).or_default().push((q["x"].as_f64().unwrap_or(f64::NAN), q["loss"].as_f64().unwrap_or(f64::NAN)));
    }
    let mut chart = Chart::new(&format!("{title} — {}", node.node), x_label, "validation loss (MSE)");
    chart.x_log = true;
    chart.y_log = true;
    // The Baseline's loss on the same validation windows (one value: they are fixed).
    let mut baselines: Vec<f64> = points.iter().filter(|q| q["dataset"] == "all").filter_map(|q| q["baseline"].as_f64()).filter(|b| b.is_finite()).collect();
    baselines.sort_by(f64::total_cmp);
    if let Some(&b) = baselines.get(baselines.len() / 2) {
        chart.reference = Some((b, format!("Baseline {}", fmt_sig(b, 4))));
    }
    for ((i, m), pts) in &by_model {
        let c = color(*i);
        chart.series.push(Series::new(m.clone(), pts.clone(), c));
        if let Some(f) = fits.iter().find(|f| f["model"] == m.as_str() && f["dataset"] == "all") {
            let (a, b) = (f["intercept"].as_f64().unwrap_or(0.0), f["slope"].as_f64().unwrap_or(0.0));
            let (lo, hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| (l.min(p.0), h.max(p.0)));
            let line = [lo, hi].iter().map(|&x| (x, 10f64.powf(a + b * x.log10()))).collect();
            chart.series.push(Series { line: true, markers: false, dashed: true, ..Series::new(format!("{m} fit, slope {}", fmt_num(b)), line, c) });
        }
    }
    let mut out = vec![Figure { id, caption: format!("{title}: validation loss against {x_label} (log-log), with least-squares fits."), svg: chart.render() }];
    let per_ds: Vec<&Value> = fits.iter().filter(|f| f["dataset"] != "all").collect();
    if !per_ds.is_empty() {
        let datasets: Vec<String> = {
            let mut d: Vec<String> = per_ds.iter().map(|f| f["dataset"].as_str().unwrap_or_default().to_string()).collect();
            d.sort();
            d.dedup();
            d
        };
        let mut chart = Chart::new("Per-dataset data-scaling slopes (Fig. 4C)", "source dataset", "slope (95% CI)");
        chart.x_categories = Some(datasets.clone());
        chart.reference = Some((0.0, "no scaling".into()));
        let mut models: Vec<String> = per_ds.iter().map(|f| f["model"].as_str().unwrap_or_default().to_string()).collect();
        models.sort_by_key(|m| model_index(m));
        models.dedup();
        for (k, m) in models.iter().enumerate() {
            let offset = (k as f64 - models.len() as f64 / 2.0) * 0.08;
            let rows: Vec<&&Value> = per_ds.iter().filter(|f| f["model"] == m.as_str()).collect();
            let pts = rows.iter().map(|f| (datasets.iter().position(|d| f["dataset"] == d.as_str()).unwrap_or(0) as f64 + 1.0 + offset, f["slope"].as_f64().unwrap_or(f64::NAN))).collect();
            let errs = rows.iter().map(|f| (f["slope_lo"].as_f64().unwrap_or(f64::NAN), f["slope_hi"].as_f64().unwrap_or(f64::NAN))).collect();
            chart.series.push(Series { errors: Some(errs), ..Series::new(m.clone(), pts, color(model_index(m))) });
        }
        out.push(Figure { id: "dataset-slopes", caption: "Slope of log loss against log training steps, fitted per source dataset, with bootstrap 95% intervals.".into(), svg: chart.render() });
    }
    out
}

/// Loss as a fraction of the Baseline's on each synthetic dataset, per model (Fig. 6).
fn synthetic_figure(evals: &[(&InputNode, Value)], synthetic: &[String]) -> Option<Figure> {
    let present: Vec<&String> = synthetic.iter().filter(|d| evals.iter().any(|(_, e)| e["per_dataset"].get(d.as_str()).is_some())).collect();
    if present.is_empty() {
        return None;
    }
    let mut chart = Chart::new("Synthetic data (Fig. 6): loss relative to Baseline", "dataset", "val loss / Baseline loss");
    chart.x_categories = Some(present.iter().map(|s| s.to_string()).collect());
    chart.reference = Some((1.0, "Baseline".into()));
    chart.y_log = true;
    let mut by_model: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    for (_, e) in evals {
        let m = e["model"].as_str().unwrap_or_default().to_string();
        if m == "baseline" {
            continue;
        }
        for (k, d) in present.iter().enumerate() {
            if let Some(r) = e["per_dataset"][d.as_str()]["ratio"].as_f64() {
                by_model.entry((model_index(&m), m.clone())).or_default().push((k as f64 + 1.0 + (model_index(&m) as f64 - 3.0) * 0.06, r));
            }
        }
    }
    for ((i, m), pts) in by_model {
        chart.series.push(Series::new(m, pts, color(i)));
    }
    Some(Figure { id: "synthetic", caption: "Validation loss divided by the Baseline's (copy the current step) on synthetic worms: below 1 the model predicts better than no change. Random Walk: nothing should beat it.".into(), svg: chart.render() })
}

fn kstep_figure(evals: &[(&InputNode, Value)]) -> Option<Figure> {
    let mut chart = Chart::new("Error k steps ahead (autoregressive)", "k (steps ahead)", "MSE");
    chart.y_log = true;
    let mut baseline_drawn = false;
    for (node, e) in evals {
        let Ok(batches) = read_batches(&node.dir.join("kstep.parquet")) else { continue };
        let m = e["model"].as_str().unwrap_or_default();
        let mut pts = Vec::new();
        let mut base = Vec::new();
        for b in &batches {
            let k = b.column_by_name("k")?.as_any().downcast_ref::<UInt64Array>()?;
            let mse = b.column_by_name("mse")?.as_any().downcast_ref::<Float64Array>()?;
            let bm = b.column_by_name("baseline_mse")?.as_any().downcast_ref::<Float64Array>()?;
            for r in 0..b.num_rows() {
                pts.push((k.value(r) as f64, mse.value(r)));
                base.push((k.value(r) as f64, bm.value(r)));
            }
        }
        if m != "baseline" {
            chart.series.push(Series { line: true, markers: false, ..Series::new(node.node.clone(), pts, color(model_index(m) + chart.series.len())) });
        }
        if !baseline_drawn {
            chart.series.push(Series { line: true, markers: false, dashed: true, ..Series::new("Baseline (persistence)", base, "#000") });
            baseline_drawn = true;
        }
    }
    (!chart.series.is_empty()).then(|| Figure { id: "kstep", caption: "Mean squared error of k-step-ahead predictions, the model fed its own predictions, on validation windows.".into(), svg: chart.render() })
}

/// Truth and generated activity of a few neurons (Fig. 7), from the first evaluation of a
/// trained recurrent model that has a generation table.
fn generation_figure(evals: &[(&InputNode, Value)], n_neurons: usize) -> Result<Option<Figure>> {
    let mut ordered: Vec<&(&InputNode, Value)> = evals.iter().filter(|(_, e)| e["model"] != "baseline").collect();
    ordered.sort_by_key(|(_, e)| if e["model"] == "lstm" { 0 } else { 1 });
    for (node, _) in ordered {
        let Ok(batches) = read_batches(&node.dir.join("generation.parquet")) else { continue };
        let mut traces: BTreeMap<(String, String), Vec<(f64, f64, Option<f64>)>> = BTreeMap::new();
        for b in &batches {
            let col = |n: &str| b.column_by_name(n).cloned();
            let (Some(w), Some(nr), Some(s), Some(t), Some(g)) = (col("worm"), col("neuron"), col("step"), col("truth"), col("generated")) else { continue };
            let (w, nr) = (w.as_any().downcast_ref::<StringArray>().cloned(), nr.as_any().downcast_ref::<StringArray>().cloned());
            let (s, t, g) = (s.as_any().downcast_ref::<UInt64Array>().cloned(), t.as_any().downcast_ref::<Float64Array>().cloned(), g.as_any().downcast_ref::<Float64Array>().cloned());
            let (Some(w), Some(nr), Some(s), Some(t), Some(g)) = (w, nr, s, t, g) else { continue };
            for r in 0..b.num_rows() {
                traces.entry((w.value(r).to_string(), nr.value(r).to_string())).or_default().push((s.value(r) as f64, t.value(r), g.is_valid(r).then(|| g.value(r))));
            }
        }
        let Some(first_worm) = traces.keys().next().map(|k| k.0.clone()) else { continue };
        let mut chart = Chart::new(&format!("Generation (Fig. 7): {} on {first_worm}", node.node), "time step (context, then generated)", "activity (z-scored, offset per neuron)");
        for (k, ((_, neuron), rows)) in traces.iter().filter(|((w, _), _)| *w == first_worm).take(n_neurons).enumerate() {
            let offset = 4.0 * k as f64;
            chart.series.push(Series { line: true, markers: false, ..Series::new(format!("{neuron} true"), rows.iter().map(|r| (r.0, r.1 + offset)).collect(), color(k)) });
            chart.series.push(Series { line: true, markers: false, dashed: true, ..Series::new(format!("{neuron} generated"), rows.iter().filter_map(|r| r.2.map(|g| (r.0, g + offset))).collect(), color(k)) });
        }
        return Ok(Some(Figure { id: "generation", caption: "True activity (solid) and the model's autoregressive generation (dashed) after the context window.".into(), svg: chart.render() }));
    }
    Ok(None)
}

fn training_figure(trains: &[&InputNode]) -> Result<Option<Figure>> {
    if trains.is_empty() {
        return Ok(None);
    }
    let mut chart = Chart::new("Training curves", "epoch", "validation loss");
    chart.y_log = true;
    for (k, node) in trains.iter().enumerate() {
        let epochs = read_epochs(&node.dir.join("metrics.parquet"))?;
        chart.series.push(Series { line: true, markers: epochs.len() < 3, ..Series::new(node.node.clone(), epochs.iter().map(|e| (e.epoch as f64, e.val_loss)).collect(), color(k)) });
    }
    Ok(Some(Figure { id: "training", caption: "Validation loss per epoch of every trained model.".into(), svg: chart.render() }))
}

fn fit_rows(fits: &[(&InputNode, Value)]) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    for (_, doc) in fits {
        for f in doc["fits"].as_array().into_iter().flatten() {
            let n = |k: &str| f[k].as_f64().map(fmt_num).unwrap_or_default();
            rows.push([
                f["x"].as_str().unwrap_or_default().to_string(),
                f["model"].as_str().unwrap_or_default().to_string(),
                f["dataset"].as_str().unwrap_or_default().to_string(),
                format!("{} [{}, {}]", n("slope"), n("slope_lo"), n("slope_hi")),
                // fits.json has no R² when the losses do not vary: the line is flat.
                f["r2"].as_f64().map_or_else(|| "flat".to_string(), fmt_num),
                match f["n_left_out"].as_u64().unwrap_or(0) {
                    0 => f["n_points"].to_string(),
                    k => format!("{} ({k} left out)", f["n_points"]),
                },
                n("mean_ratio"),
            ]);
        }
    }
    rows
}

fn eval_rows(evals: &[(&InputNode, Value)]) -> Vec<[String; 7]> {
    evals
        .iter()
        .map(|(node, e)| {
            let n = |k: &str| e[k].as_f64().map(|v| fmt_sig(v, 4)).unwrap_or_default();
            let learning = e["learning"].as_str().unwrap_or("learned").replace('_', " ");
            [node.node.clone(), e["model"].as_str().unwrap_or_default().to_string(), e["n_params"].to_string(), e["train_steps"].to_string(), n("val_loss"), n("ratio"), learning]
        })
        .collect()
}

/// Evaluations the fits left out because training failed, with what happened.
fn left_out_rows(fits: &[(&InputNode, Value)]) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    for (fit, doc) in fits {
        for l in doc["left_out"].as_array().into_iter().flatten() {
            let s = |k: &str| l[k].as_str().unwrap_or_default().replace('_', " ");
            rows.push([fit.node.clone(), s("node"), s("learning"), s("note")]);
        }
    }
    rows
}

const FIT_HEADER: [&str; 7] = ["x", "model", "dataset", "slope [95% CI]", "R²", "points", "loss / Baseline"];
const EVAL_HEADER: [&str; 7] = ["node", "model", "parameters", "training steps", "val loss", "loss / Baseline", "training"];
const LEFT_OUT_HEADER: [&str; 4] = ["fit", "left out", "training", "what happened"];

fn html_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut s = String::from("<table><tr>");
    for h in header {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", svg::esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn render_html(title: &str, findings: &[String], figures: &[Figure], fits: &[(&InputNode, Value)], evals: &[(&InputNode, Value)]) -> String {
    let mut s = String::new();
    let title = svg::esc(title);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}figure{{margin:1.5em 0}}figcaption{{font-size:0.9em;color:#555}}table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    if !findings.is_empty() {
        s.push_str("<h2>Findings</h2>\n");
        for f in findings {
            let _ = writeln!(s, "<p>{}</p>", svg::esc(f));
        }
    }
    for f in figures {
        let _ = writeln!(s, "<figure id=\"{}\">{}<figcaption>{}</figcaption></figure>", svg::esc(f.id), f.svg, svg::esc(&f.caption));
    }
    let _ = writeln!(s, "<h2>Scaling fits</h2>{}", html_table(FIT_HEADER, &fit_rows(fits)));
    let left_out = left_out_rows(fits);
    if !left_out.is_empty() {
        let _ = writeln!(s, "<h2>Left out of the fits: training failed</h2>{}", html_table(LEFT_OUT_HEADER, &left_out));
    }
    let _ = writeln!(s, "<h2>Evaluations</h2>{}", html_table(EVAL_HEADER, &eval_rows(evals)));
    s.push_str("<p>Made by wormflow. Each number comes from a content-addressed node; <code>wormflow show NODE</code> gives its provenance.</p></body></html>\n");
    s
}

fn md_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(N));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn summary_md(title: &str, findings: &[String], fits: &[(&InputNode, Value)], evals: &[(&InputNode, Value)]) -> String {
    let left_out = left_out_rows(fits);
    let left_out = if left_out.is_empty() { String::new() } else { format!("## Left out of the fits: training failed\n\n{}\n", md_table(LEFT_OUT_HEADER, &left_out)) };
    let findings = if findings.is_empty() { String::new() } else { format!("## Findings\n\n{}\n\n", findings.join("\n\n")) };
    format!("# {title}\n\n{findings}## Scaling fits\n\n{}\n{left_out}## Evaluations\n\n{}", md_table(FIT_HEADER, &fit_rows(fits)), md_table(EVAL_HEADER, &eval_rows(evals)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped() {
        let html = render_html("<script>alert(1)</script> & co", &[], &[], &[], &[]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>"));
        assert!(html.contains("<h1>&lt;script&gt;"));
    }
}
