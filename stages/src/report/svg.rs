//! Minimal self-contained SVG charts (no scripts, no external fonts): scatter/line series
//! on linear or log10 axes, optional error bars, categorical x labels, a legend.

use std::fmt::Write;

const PALETTE: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

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
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: &'static str) -> Series {
        Series { name: name.into(), points, errors: None, line: false, markers: true, dashed: false, color }
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
const RIGHT: f64 = 170.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

/// Text for HTML/SVG: `&`, `<`, `>` and `"` escaped.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Chart {
        Chart { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), x_log: false, y_log: false, x_categories: None, reference: None, series: Vec::new() }
    }

    fn tx(&self, v: f64) -> f64 {
        if self.x_log { v.log10() } else { v }
    }

    fn ty(&self, v: f64) -> f64 {
        if self.y_log { v.log10() } else { v }
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
        let range = |v: &[f64]| {
            let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            if !lo.is_finite() { (0.0, 1.0) } else if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { let pad = 0.06 * (hi - lo); (lo - pad, hi + pad) }
        };
        let (x0, x1) = match &self.x_categories {
            Some(c) => (0.5, c.len() as f64 + 0.5),
            None => range(&xs),
        };
        let (y0, y1) = range(&ys);
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
        let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
        let mut s = String::new();
        let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#);
        let _ = write!(s, r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/><text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"#, LEFT, esc(&self.title));
        let _ = write!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##, W - LEFT - RIGHT, H - TOP - BOTTOM);
        // Ticks.
        let label = |v: f64, log: bool| if log { fmt_num(10f64.powf(v)) } else { fmt_num(v) };
        match &self.x_categories {
            Some(cats) => {
                for (i, c) in cats.iter().enumerate() {
                    let x = px(i as f64 + 1.0);
                    let _ = write!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, H - BOTTOM + 16.0, esc(c));
                }
            }
            None => {
                for v in ticks(x0, x1, self.x_log) {
                    let x = px(v);
                    let _ = write!(s, r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##, H - BOTTOM, H - BOTTOM + 5.0, H - BOTTOM + 17.0, label(v, self.x_log));
                }
            }
        }
        for v in ticks(y0, y1, self.y_log) {
            let y = py(v);
            let _ = write!(s, r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#444"/><line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##, LEFT - 5.0, W - RIGHT, LEFT - 7.0, y + 4.0, label(v, self.y_log));
        }
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, (LEFT + W - RIGHT) / 2.0, H - 12.0, esc(&self.x_label));
        let _ = write!(s, r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#, (TOP + H - BOTTOM) / 2.0, esc(&self.y_label));
        if let Some((r, name)) = &self.reference {
            let y = py(self.ty(*r));
            let _ = write!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">{}</text>"##, W - RIGHT, W - RIGHT + 6.0, y + 4.0, esc(name));
        }
        for (k, series) in self.series.iter().enumerate() {
            let pts: Vec<(f64, f64, usize)> = series
                .points
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| (self.tx(x), self.ty(y), i))
                .filter(|(x, y, _)| x.is_finite() && y.is_finite())
                .collect();
            if series.line && pts.len() > 1 {
                let d: Vec<String> = pts.iter().enumerate().map(|(i, (x, y, _))| format!("{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, px(*x), py(*y))).collect();
                let dash = if series.dashed { r#" stroke-dasharray="5 3""# } else { "" };
                let _ = write!(s, r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"{dash}/>"#, d.join(" "), series.color);
            }
            for &(x, y, i) in &pts {
                if let Some(e) = &series.errors {
                    let (lo, hi) = (self.ty(e[i].0), self.ty(e[i].1));
                    if lo.is_finite() && hi.is_finite() {
                        let _ = write!(s, r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}"/>"#, px(x), py(lo), px(x), py(hi), series.color);
                    }
                }
                if series.markers {
                    let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="{}"><title>{}: ({}, {})</title></circle>"#, px(x), py(y), series.color, esc(&series.name), fmt_num(series.points[i].0), fmt_num(series.points[i].1));
                }
            }
            let ly = TOP + 14.0 * k as f64 + 6.0;
            let _ = write!(s, r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#, W - RIGHT + 10.0, ly, series.color, W - RIGHT + 24.0, ly + 9.0, esc(&series.name));
        }
        if xs.is_empty() {
            let _ = write!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no data</text>"##, (LEFT + W - RIGHT) / 2.0, H / 2.0);
        }
        s.push_str("</svg>");
        s
    }
}

/// About five round tick positions in [lo, hi] (on a log axis: whole decades when possible).
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log && hi - lo >= 1.0 {
        return (lo.ceil() as i64..=hi.floor() as i64).map(|d| d as f64).collect();
    }
    let span = hi - lo;
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(mag * 10.0);
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-12 {
        out.push(v);
        v += step;
    }
    out
}

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
