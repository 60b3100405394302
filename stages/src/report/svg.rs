//! Minimal self-contained SVG charts (no scripts, no external fonts): scatter/line series
//! on linear or log10 axes, error bars, shaded bands, categorical x labels, and a legend
//! below the plot that shows each series' line style and marker and grows the figure
//! instead of overlapping the plot or being cut at its edge.
//!
//! Hand-written rather than plotters' SVG backend: plotters draws text as positioned
//! glyph runs without the `<title>` tooltips, puts no class or text on series a test or a
//! screen reader can find, and its log axes label 2512/3981/6310; these ~300 lines give
//! 1-2-5 ticks, inline-SVG output the report embeds as is, and escaping in one place.

use std::fmt::Write;

/// One colour per model (`MODELS` order: the study's seven, then the forecasting models),
/// then one for anything else.
const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22", "#393b79",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// (low, high) per point, drawn as vertical bars.
    pub errors: Option<Vec<(f64, f64)>>,
    pub line: bool,
    pub markers: bool,
    pub dashed: bool,
    pub color: &'static str,
    /// (x, low, high): a shaded band (e.g. a fit's 95% interval) under the series.
    pub band: Option<Vec<(f64, f64, f64)>>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: &'static str) -> Series {
        Series {
            name: name.into(),
            points,
            errors: None,
            line: false,
            markers: true,
            dashed: false,
            color,
            band: None,
        }
    }
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    /// Category names for x = 1, 2, … (a categorical axis).
    pub x_categories: Option<Vec<String>>,
    /// A horizontal reference line (e.g. the Baseline at ratio 1).
    pub reference: Option<(f64, String)>,
    pub series: Vec<Series>,
}

const W: f64 = 640.0;
const H: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 24.0;
/// Legend rows below the x-axis label.
const LEGEND_ROW: f64 = 16.0;
/// Approximate width of a character at font-size 11 (sans-serif), for the legend layout.
const CHAR_W: f64 = 6.4;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

/// Text for HTML/SVG: `&`, `<`, `>` and `"` escaped.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            y_log: false,
            x_categories: None,
            reference: None,
            series: Vec::new(),
        }
    }

    fn tx(&self, v: f64) -> f64 {
        if self.x_log {
            v.log10()
        } else {
            v
        }
    }

    fn ty(&self, v: f64) -> f64 {
        if self.y_log {
            v.log10()
        } else {
            v
        }
    }

    /// Render; a chart without any finite point still renders its frame and a note.
    pub fn render(&self) -> String {
        let mut xs: Vec<f64> = Vec::new();
        let mut ys: Vec<f64> = Vec::new();
        for s in &self.series {
            for (i, &(x, y)) in s.points.iter().enumerate() {
                let (x, y) = (self.tx(x), self.ty(y));
                if x.is_finite() && y.is_finite() {
                    xs.push(x);
                    ys.push(y);
                    if let Some(e) = &s.errors {
                        for v in [e[i].0, e[i].1] {
                            if self.ty(v).is_finite() {
                                ys.push(self.ty(v));
                            }
                        }
                    }
                }
            }
        }
        if let Some((r, _)) = &self.reference {
            ys.push(self.ty(*r));
        }
        for b in self.series.iter().filter_map(|s| s.band.as_ref()).flatten() {
            ys.extend([self.ty(b.1), self.ty(b.2)].into_iter().filter(|v| v.is_finite()));
        }
        let range = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            if !lo.is_finite() {
                (0.0, 1.0)
            } else if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = 0.06 * (hi - lo);
                (lo - pad, hi + pad)
            }
        };
        let (x0, x1) = match &self.x_categories {
            Some(c) => (0.5, c.len() as f64 + 0.5),
            None => range(&xs),
        };
        let (y0, y1) = range(&ys);
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
        let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
        // Legend: equal columns wide enough for the longest name, as many rows as needed.
        let named: Vec<&Series> = self.series.iter().filter(|s| !s.name.is_empty()).collect();
        let col_w =
            named.iter().map(|s| s.name.chars().count() as f64 * CHAR_W + 40.0).fold(0.0, f64::max);
        // Wide enough for the longest legend entry and for the title (14px bold).
        let title_w = self.title.chars().count() as f64 * CHAR_W * 1.35;
        let width = W.max(LEFT + col_w + 10.0).max(LEFT + title_w + 10.0);
        let per_row = (((width - LEFT) / col_w.max(1.0)).floor() as usize).max(1);
        let rows = named.len().div_ceil(per_row);
        let height = H + rows as f64 * LEGEND_ROW + if rows > 0 { 6.0 } else { 0.0 };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            s,
            r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/><text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"#,
            LEFT,
            esc(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            W - LEFT - RIGHT,
            H - TOP - BOTTOM
        );
        // Ticks.
        match &self.x_categories {
            Some(cats) => {
                for (i, c) in cats.iter().enumerate() {
                    let x = px(i as f64 + 1.0);
                    let _ = write!(
                        s,
                        r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                        H - BOTTOM + 16.0,
                        esc(c)
                    );
                }
            }
            None => {
                for (v, label) in ticks(x0, x1, self.x_log) {
                    let x = px(v);
                    let _ = write!(
                        s,
                        r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                        H - BOTTOM,
                        H - BOTTOM + 5.0,
                        H - BOTTOM + 17.0
                    );
                }
            }
        }
        for (v, label) in ticks(y0, y1, self.y_log) {
            let y = py(v);
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#444"/><line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                LEFT - 5.0,
                W - RIGHT,
                LEFT - 7.0,
                y + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 12.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (TOP + H - BOTTOM) / 2.0,
            esc(&self.y_label)
        );
        if let Some((r, name)) = &self.reference {
            // Labelled inside the plot, at its left end: the right margin is the legend's.
            let y = py(self.ty(*r));
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#000">{}</text>"##,
                W - RIGHT,
                LEFT + 4.0,
                y - 3.0,
                esc(name)
            );
        }
        for series in &self.series {
            let Some(band) = &series.band else { continue };
            let pts: Vec<(f64, f64, f64)> = band
                .iter()
                .map(|&(x, lo, hi)| (self.tx(x), self.ty(lo), self.ty(hi)))
                .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
                .collect();
            if pts.len() > 1 {
                let upper =
                    pts.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.2.min(y1).max(y0))));
                let lower = pts
                    .iter()
                    .rev()
                    .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1.min(y1).max(y0))));
                let _ = write!(
                    s,
                    r#"<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>"#,
                    upper.chain(lower).collect::<Vec<_>>().join(" "),
                    series.color
                );
            }
        }
        for series in &self.series {
            let pts: Vec<(f64, f64, usize)> = series
                .points
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| (self.tx(x), self.ty(y), i))
                .filter(|(x, y, _)| x.is_finite() && y.is_finite())
                .collect();
            if series.line && pts.len() > 1 {
                let d: Vec<String> = pts
                    .iter()
                    .enumerate()
                    .map(|(i, (x, y, _))| {
                        format!("{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, px(*x), py(*y))
                    })
                    .collect();
                let dash = if series.dashed { r#" stroke-dasharray="5 3""# } else { "" };
                let _ = write!(
                    s,
                    r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"{dash}/>"#,
                    d.join(" "),
                    series.color
                );
            }
            for &(x, y, i) in &pts {
                if let Some(e) = &series.errors {
                    let (lo, hi) = (self.ty(e[i].0), self.ty(e[i].1));
                    if lo.is_finite() && hi.is_finite() {
                        let _ = write!(
                            s,
                            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}"/>"#,
                            px(x),
                            py(lo),
                            px(x),
                            py(hi),
                            series.color
                        );
                    }
                }
                if series.markers {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="{}"><title>{}: ({}, {})</title></circle>"#,
                        px(x),
                        py(y),
                        series.color,
                        esc(&series.name),
                        fmt_num(series.points[i].0),
                        fmt_num(series.points[i].1)
                    );
                }
            }
        }
        for (k, series) in named.iter().enumerate() {
            // Each entry: a short stretch of the series' line (dashed if it is) and marker.
            let (lx, ly) =
                (LEFT + (k % per_row) as f64 * col_w, H + (k / per_row) as f64 * LEGEND_ROW + 4.0);
            let dash = if series.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            if series.line || !series.markers {
                let _ = write!(
                    s,
                    r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="1.6"{dash}/>"#,
                    lx + 24.0,
                    series.color
                );
            }
            if series.markers {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{ly:.1}" r="3.2" fill="{}"/>"#,
                    lx + 12.0,
                    series.color
                );
            }
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 30.0,
                ly + 4.0,
                esc(&series.name)
            );
        }
        if xs.is_empty() {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no data</text>"##,
                (LEFT + W - RIGHT) / 2.0,
                H / 2.0
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// Round tick positions in axis units (log10 of the value on a log axis) with labels that
/// tell them apart: decades on a log axis spanning several, else 1-2-5 or 1…9 multiples of
/// powers of ten, else evenly spaced round values; never a "-0".
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<(f64, String)> {
    if !log {
        return labelled(&linear_ticks(lo, hi)).into_iter().collect();
    }
    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
    labelled(&log_ticks(lo, hi, a, b)).into_iter().map(|(v, l)| (v.log10(), l)).collect()
}

/// About five round values in [lo, hi], steps of 1, 2, 2.5 or 5 × a power of ten.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    let mag = 10f64.powf((span / 5.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(mag * 10.0);
    let first = (lo / step).ceil() as i64;
    (first..).map(|k| k as f64 * step).take_while(|v| *v <= hi + step * 1e-9).collect()
}

/// Tick values (not logs) for a log axis from 10^lo to 10^hi = [a, b].
fn log_ticks(lo: f64, hi: f64, a: f64, b: f64) -> Vec<f64> {
    let decades: Vec<i32> = (lo.ceil() as i32..=hi.floor() as i32).collect();
    if decades.len() >= 2 {
        let every = decades.len().div_ceil(7);
        return decades.iter().step_by(every).map(|&d| 10f64.powi(d)).collect();
    }
    for multiples in [&[1.0, 2.0, 5.0][..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..]] {
        let values: Vec<f64> = (lo.floor() as i32..=hi.ceil() as i32)
            .flat_map(|d| multiples.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| *v >= a * (1.0 - 1e-9) && *v <= b * (1.0 + 1e-9))
            .collect();
        if values.len() >= 3 {
            return values;
        }
    }
    linear_ticks(a, b).into_iter().filter(|v| *v > 0.0).collect()
}

/// Labels with as many digits as it takes for neighbouring ticks to differ.
fn labelled(values: &[f64]) -> Vec<(f64, String)> {
    let gap = values.windows(2).map(|w| (w[1] - w[0]).abs()).fold(f64::INFINITY, f64::min);
    let biggest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scientific = biggest >= 1e5 || (biggest > 0.0 && biggest < 1e-3);
    // A value within a millionth of a step of 0 is 0 (a sum of steps, not "-1e-17").
    let clean = |v: f64| if gap.is_finite() && v.abs() < gap * 1e-6 { 0.0 } else { v };
    for digits in 0..=10usize {
        let labels: Vec<String> = values
            .iter()
            .map(|&v| {
                let v = clean(v);
                let text = if scientific && v != 0.0 {
                    format!("{v:.digits$e}")
                } else {
                    format!("{v:.digits$}")
                };
                if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
                    "0".to_string()
                } else {
                    text
                }
            })
            .collect();
        let distinct = labels.windows(2).all(|w| w[0] != w[1]);
        // Each label reads as its value (0.1 must not print as "0"), to 1 %.
        let faithful = values.iter().zip(&labels).all(|(&v, l)| {
            clean(v) == 0.0 || l.parse::<f64>().is_ok_and(|p| (p - v).abs() <= 0.01 * v.abs())
        });
        if (distinct && faithful) || digits == 10 {
            return values.iter().copied().zip(labels).collect();
        }
    }
    unreachable!("the loop returns at 10 digits")
}

/// A number for a label or a table cell: three decimals at most, scientific outside 1e-3…1e5.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `v` to `digits` significant digits (losses in tables: 0.04312, not 0.043).
pub fn fmt_sig(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return fmt_num(v);
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&magnitude) {
        return format!("{v:.*e}", digits.saturating_sub(1));
    }
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(lo: f64, hi: f64, log: bool) -> Vec<String> {
        ticks(lo, hi, log).into_iter().map(|t| t.1).collect()
    }

    #[test]
    fn tick_labels_tell_neighbours_apart_and_are_round() {
        // A log axis over 0.0425 … 0.0435 (all real-data models near the Baseline).
        let l = labels(0.0425f64.log10(), 0.0435f64.log10(), true);
        assert!(l.len() >= 3 && l.windows(2).all(|w| w[0] != w[1]), "{l:?}");
        // Training steps 2,000 … 8,000: round multiples, not 2512, 3981, 6310.
        assert_eq!(
            labels(2000f64.log10(), 8000f64.log10(), true),
            ["2000", "3000", "4000", "5000", "6000", "7000", "8000"]
        );
        // Decades below 1 keep their digits.
        assert_eq!(labels(0.05f64.log10(), 3f64.log10(), true), ["0.1", "1.0"]);
        // Parameters 5,000 … 300,000: at least two ticks.
        assert!(labels(5e3f64.log10(), 3e5f64.log10(), true).len() >= 2);
        // Never "-0" on a linear axis through 0.
        let l = labels(-0.061, 0.0071, false);
        assert!(
            l.contains(&"0".to_string())
                && !l.iter().any(|t| t == "-0" || t.starts_with("-0.0000")),
            "{l:?}"
        );
        assert_eq!(labels(0.0, 1.0, false), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(
            (fmt_sig(0.043127, 4), fmt_sig(1.45107, 4), fmt_sig(3.4e11, 4)),
            ("0.04313".into(), "1.451".into(), "3.400e11".into())
        );
    }
}
