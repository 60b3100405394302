//! The report's "Findings": what each scaling fit shows, in words, next to the paper's
//! numbers where the paper gives them. Generated from the fits alone, so it can never say
//! more than the numbers do.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::fit::{FitsDoc, LineFit, Point};

use super::svg::fmt_num;

/// Data-scaling slopes the paper reports (Simeon et al., Fig. 4B: log validation loss against
/// log training steps, 284 worms, GPU-sized budgets).
pub const PAPER_DATA_SLOPES: &[(&str, f64)] = &[("ctrnn", -0.65), ("feedforward", -0.40)];

fn model_name(m: &str) -> &str {
    match m {
        "ctrnn" => "CTRNN",
        "lstm" => "LSTM",
        "linear" => "Linear",
        "feedforward" => "Feedforward",
        "transformer" => "Transformer",
        "attention" => "Attention",
        "nlinear" => "NLinear",
        "dlinear" => "DLinear",
        other => other,
    }
}

fn slope_text(f: &LineFit) -> String {
    format!(
        "{} {} [{}, {}]",
        model_name(&f.model),
        fmt_num(f.slope),
        fmt_num(f.slope_lo),
        fmt_num(f.slope_hi)
    )
}

/// Which architecture the points of a fit come from.
fn regime(points: &[Point]) -> &'static str {
    let residual = points.iter().filter(|p| p.residual).count();
    match residual {
        0 => "the study's architecture (each model predicts the next step itself)",
        r if r == points.len() => "the residual variant (each model predicts the change from the current step; it starts at the Baseline)",
        _ => "a mix of the study's architecture and the residual variant",
    }
}

/// One paragraph per fit node.
pub fn findings(fits: &[(&str, &FitsDoc)]) -> Vec<String> {
    fits.iter()
        .filter(|(_, doc)| !doc.points.is_empty())
        .map(|(node, doc)| paragraph(node, doc))
        .collect()
}

fn paragraph(node: &str, doc: &FitsDoc) -> String {
    let overall: Vec<&LineFit> = doc.fits.iter().filter(|f| f.dataset == "all").collect();
    let data_scaling = doc.x == "train_steps";
    let what = if data_scaling { "Data scaling" } else { "Model scaling" };
    let against = if data_scaling { "training time steps" } else { "parameters" };
    let mut s = format!("{what} ({node}, {}): ", regime(&doc.points));
    if overall.is_empty() {
        s.push_str("no model has points at more than one x, so no slope is fitted. ");
    } else {
        let _ = write!(
            s,
            "slopes of log loss against log {against} (95% bootstrap interval) are {}. ",
            overall.iter().map(|f| slope_text(f)).collect::<Vec<_>>().join(", ")
        );
        let falling: Vec<&str> =
            overall.iter().filter(|f| f.slope_hi < 0.0).map(|f| model_name(&f.model)).collect();
        let flat: Vec<&str> = overall
            .iter()
            .filter(|f| f.slope_lo <= 0.0 && f.slope_hi >= 0.0)
            .map(|f| model_name(&f.model))
            .collect();
        if !falling.is_empty() {
            let _ = write!(
                s,
                "The loss falls with more {against} for {} (interval below 0)",
                falling.join(", ")
            );
            s.push_str(if flat.is_empty() { ". " } else { "; " });
        }
        if !flat.is_empty() {
            let _ = write!(
                s,
                "{} cannot be told from no scaling (interval contains 0). ",
                flat.join(", ")
            );
        }
    }
    // The paper's slopes are of the study's architecture: a residual fit is not compared.
    if data_scaling && doc.points.iter().all(|p| !p.residual) {
        s.push_str(&paper_comparison(&overall));
    }
    s.push_str(&against_baseline(&overall));
    s.push_str(&per_source(&doc.points));
    if !doc.left_out.is_empty() {
        let _ = write!(
            s,
            "{}Left out because training failed: {}.",
            if s.ends_with(' ') { "" } else { " " },
            doc.left_out
                .iter()
                .map(|l| format!("{} ({})", l.node, l.learning.as_str().replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s.trim_end().to_string()
}

/// How each slope compares with the paper's, where the paper gives one.
fn paper_comparison(overall: &[&LineFit]) -> String {
    let parts: Vec<String> = PAPER_DATA_SLOPES
        .iter()
        .filter_map(|&(model, paper)| {
            let f = overall.iter().find(|f| f.model == model)?;
            let verdict = if f.slope_lo <= paper && paper <= f.slope_hi {
                "its interval contains the paper's"
            } else if f.slope_hi < paper {
                "steeper than the paper's"
            } else {
                "shallower than the paper's"
            };
            Some(format!(
                "{} {} vs the paper's {} ({verdict})",
                model_name(model),
                fmt_num(f.slope),
                fmt_num(paper)
            ))
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!("Against the paper's Fig. 4B (284 worms, GPU budgets): {}. ", parts.join("; "))
}

/// Whether the models come near the Baseline (copy the current step) over the sweep.
fn against_baseline(overall: &[&LineFit]) -> String {
    if overall.is_empty() {
        return String::new();
    }
    let ratios: Vec<f64> = overall.iter().map(|f| f.mean_ratio).filter(|r| r.is_finite()).collect();
    let (lo, hi) =
        ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
    let beating: Vec<String> = overall
        .iter()
        .filter(|f| f.mean_ratio < 1.0)
        .map(|f| format!("{} ({})", model_name(&f.model), fmt_num(f.mean_ratio)))
        .collect();
    if beating.is_empty() {
        format!(
            "No model reaches the Baseline's loss: on average they are {}–{}× it. ",
            fmt_num(lo),
            fmt_num(hi)
        )
    } else if beating.len() == overall.len() {
        format!(
            "Every model beats the Baseline on average (loss / Baseline {}–{}). ",
            fmt_num(lo),
            fmt_num(hi)
        )
    } else {
        format!(
            "Beating the Baseline on average: {}; the others do not (loss / Baseline up to {}). ",
            beating.join(", "),
            fmt_num(hi)
        )
    }
}

/// Per source dataset, at each model's largest x: loss as a fraction of the Baseline's.
fn per_source(points: &[Point]) -> String {
    let mut best: BTreeMap<(&str, &str), &Point> = BTreeMap::new();
    for p in points.iter().filter(|p| p.dataset != "all") {
        let e = best.entry((p.model.as_str(), p.dataset.as_str())).or_insert(p);
        if p.x > e.x {
            *e = p;
        }
    }
    if best.is_empty() {
        return String::new();
    }
    let mut by_model: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((model, dataset), p) in &best {
        let ratio = p.loss / p.baseline;
        let mark = if ratio < 1.0 { "beats it" } else { "does not" };
        by_model.entry(model).or_default().push(format!("{dataset} {} ({mark})", fmt_num(ratio)));
    }
    let lines: Vec<String> =
        by_model.iter().map(|(m, v)| format!("{}: {}", model_name(m), v.join(", "))).collect();
    format!("Per source, with the most data, loss / Baseline — {}.", lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Learning;

    fn fit(model: &str, slope: f64, lo: f64, hi: f64, ratio: f64) -> LineFit {
        LineFit {
            model: model.into(),
            dataset: "all".into(),
            x: "train_steps".into(),
            slope,
            slope_lo: lo,
            slope_hi: hi,
            intercept: 0.0,
            r2: 0.9,
            n_points: 3,
            n_left_out: 0,
            mean_ratio: ratio,
        }
    }

    fn point(model: &str, dataset: &str, x: f64, loss: f64, residual: bool) -> Point {
        Point {
            node: "e".into(),
            model: model.into(),
            dataset: dataset.into(),
            x,
            loss,
            baseline: 0.05,
            learning: Learning::Learned,
            residual,
        }
    }

    #[test]
    fn findings_say_what_the_numbers_say() {
        let doc = FitsDoc {
            x: "train_steps".into(),
            ci: String::new(),
            fits: vec![
                fit("ctrnn", -0.75, -1.04, -0.45, 30.0),
                fit("feedforward", -0.1, -0.2, 0.05, 20.0),
            ],
            points: vec![
                point("ctrnn", "all", 1.0, 1.0, false),
                point("ctrnn", "Kato2015", 1.0, 0.06, false),
                point("ctrnn", "Kato2015", 2.0, 0.04, false),
            ],
            left_out: vec![],
        };
        let text = &findings(&[("fit_data", &doc)])[0];
        for expected in [
            "the study's architecture",
            "CTRNN -0.75 [-1.04, -0.45]",
            "falls with more training time steps for CTRNN",
            "Feedforward cannot be told from no scaling",
            "CTRNN -0.75 vs the paper's -0.65 (its interval contains the paper's)",
            "Feedforward -0.1 vs the paper's -0.4 (shallower than the paper's)",
            "No model reaches the Baseline's loss: on average they are 20–30× it",
            "Kato2015 0.8 (beats it)",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from: {text}");
        }
        // A residual fit is not held against the paper's slopes (they are of the study's architecture).
        let residual = FitsDoc {
            x: "train_steps".into(),
            ci: String::new(),
            fits: vec![fit("ctrnn", -0.003, -0.004, -0.002, 0.99)],
            points: vec![point("ctrnn", "all", 1.0, 0.04, true)],
            left_out: vec![],
        };
        let text = &findings(&[("fit_residual", &residual)])[0];
        assert!(text.contains("the residual variant") && !text.contains("paper"), "{text}");
    }
}
