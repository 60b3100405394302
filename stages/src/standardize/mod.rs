//! Kind `standardize`: raw recordings in one of several published layouts → the standard
//! format (`recordings.parquet` + `worms.parquet`, see `table.rs`).
//!
//! Every input directory (usually from `download` nodes) is searched for files matching
//! `files`; each file is read by the module of its `format`, its labels are mapped onto the
//! 302 canonical neurons (`neurons.rs`), and its time stamps are checked and shifted to
//! start at 0. Worms without any labelled neuron are dropped (the study models labelled
//! neurons only); the reason is listed in `dropped.json`.

mod flavell_2023;
mod flavell_h5;
mod flavell_json;
mod generic_h5;
mod leifer;
mod mat5;
mod nwb;
mod worm_data_parquet;
mod yemini_mat;
mod zimmer_mat;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wormflow_api::StageContext;

use crate::neurons::{self, N_NEURONS};
use crate::stage::Stage;
use crate::table::{write_dataset, Worm, WormInfo};

pub struct Standardize;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// flavell-h5 | generic-h5 | flavell-json | flavell-2023 | zimmer-mat | yemini-mat |
    /// leifer | nwb | worm-data-parquet
    pub format: String,
    /// Name of the source dataset (e.g. "Dag2023"); generic-h5 files may carry their own.
    pub dataset: String,
    pub citation: String,
    /// Glob of the files to read (`*`, `?`, `{a,b}`, `[…]`), matched against paths inside
    /// the inputs and against file names.
    pub files: String,
    /// flavell-h5: name of the labels JSON (uid → 1-based column → label).
    pub labels: String,
    /// flavell-h5: what to do with a file whose uid the labels JSON lacks: "error" | "drop".
    pub missing_labels: String,
    /// What to do with NaN inside a labelled neuron's trace: "error" | "interpolate".
    /// (A trace that is entirely NaN is masked out and counted either way.)
    pub nan: String,
    /// Which trace to read. nwb: "auto" (ΔF/F, else processed, else raw) | "dff" |
    /// "processed" | "raw". worm-data-parquet: "auto" or "original" (the traces as
    /// recorded) | "processed" (the successor's resampled, smoothed, normalised traces).
    pub signal: String,
    /// nwb: frame rate in Hz for series with neither timestamps nor a rate (0 = none).
    pub rate: f64,
    /// nwb: path of the RoiResponseSeries to read ("" = find it).
    pub nwb_series: String,
    /// nwb: path of the labels column ("" = find it; see nwb.rs).
    pub nwb_labels: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            format: String::new(),
            dataset: String::new(),
            citation: String::new(),
            files: String::new(),
            labels: "NeuroPAL_labels_dict.json".into(),
            missing_labels: "error".into(),
            nan: "error".into(),
            signal: "auto".into(),
            rate: 0.0,
            nwb_series: String::new(),
            nwb_labels: String::new(),
        }
    }
}

pub const FORMATS: &[&str] = &[
    "flavell-h5",
    "generic-h5",
    "flavell-json",
    "flavell-2023",
    "zimmer-mat",
    "yemini-mat",
    "leifer",
    "nwb",
    "worm-data-parquet",
];

impl Stage for Standardize {
    const NAME: &'static str = "standardize";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_STANDARDIZE");
    const CODE: &'static str = env!("WORMFLOW_CODE_STANDARDIZE");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !FORMATS.contains(&p.format.as_str()) {
            return Err(format!(
                "params.format must be one of {}; got {:?}",
                FORMATS.join(", "),
                p.format
            ));
        }
        if !matches!(p.missing_labels.as_str(), "error" | "drop") {
            return Err("params.missing_labels must be \"error\" or \"drop\"".into());
        }
        if !matches!(p.nan.as_str(), "error" | "interpolate") {
            return Err("params.nan must be \"error\" or \"interpolate\"".into());
        }
        match p.format.as_str() {
            "nwb" => {
                nwb::Signal::parse(&p.signal)?;
            }
            "worm-data-parquet" => {
                worm_data_parquet::Traces::parse(&p.signal)?;
            }
            _ if p.signal != "auto" => {
                return Err(format!(
                    "params.signal is for formats nwb and worm-data-parquet; format {} has one signal (remove signal)",
                    p.format
                ))
            }
            _ => {}
        }
        if !(p.rate >= 0.0 && p.rate.is_finite()) {
            return Err(format!(
                "params.rate must be a frame rate in Hz ≥ 0 (0 = from the file); got {}",
                p.rate
            ));
        }
        files_glob(&p.files).map_err(|e| format!("params.files: {e}"))?;
        files_glob(&p.labels).map_err(|e| format!("params.labels: {e}"))?;
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let pattern = if p.files.is_empty() {
            default_pattern(&p.format).to_string()
        } else {
            p.files.clone()
        };
        let files = find_files(ctx, &pattern)?;
        if files.is_empty() {
            bail!(
                "no input file matches {pattern:?} (format {}); check `files` and that the stage `needs` the download that provides them",
                p.format
            );
        }
        let mut worms = Vec::new();
        let mut dropped = Vec::new();
        // Worm ids must be unique: two recordings under one id would be merged downstream
        // (one's first half training, the other's second half validating).
        // (A pool of several sources numbers worms within each: the key includes the dataset.)
        let mut seen: std::collections::HashMap<(String, String), String> =
            std::collections::HashMap::new();
        let origins = Origins::of(ctx);
        let mut log = String::new();
        for (i, file) in files.iter().enumerate() {
            ctx.check_cancel()?;
            (ctx.progress)(&wormflow_api::Progress::new(
                i as f64 / files.len() as f64,
                file.file_name().unwrap_or_default().to_string_lossy(),
            ));
            let read = || -> Result<Vec<RawWorm>> {
                Ok(match p.format.as_str() {
                    "flavell-h5" => flavell_h5::read(file, ctx, &p)?,
                    "generic-h5" => generic_h5::read(file)?,
                    "flavell-json" => flavell_json::read(file)?,
                    "flavell-2023" => flavell_2023::read(file)?,
                    "zimmer-mat" => zimmer_mat::read(file)?,
                    "yemini-mat" => yemini_mat::read(file)?,
                    "leifer" => leifer::read(file)?,
                    "nwb" => nwb::read(file, &p)?,
                    "worm-data-parquet" => worm_data_parquet::read(file, &p)?,
                    _ => unreachable!("checked at plan time"),
                })
            };
            let raws = read().map_err(|e| origins.rewrite(e, file))?;
            let user_file = origins.user_path(file);
            for raw in raws {
                ctx.check_cancel()?;
                let signal =
                    if raw.signal.is_empty() { String::new() } else { format!("; {}", raw.signal) };
                log.push_str(&format!(
                    "{user_file}: worm {} — {} steps × {} columns{signal}\n",
                    raw.worm,
                    raw.n_steps(),
                    raw.n_cols
                ));
                let name = raw.worm.clone();
                let dataset = raw.dataset.clone().unwrap_or_default();
                if let Some(first) = seen.insert((dataset, name.clone()), display_name(file)) {
                    bail!(
                        "worm id {name:?} appears twice: in {first} and in {}; each recording needs its own worm id (fix the file's `worm` attribute, or split them into two standardize stages)",
                        display_name(file)
                    );
                }
                match raw.into_worm(&p).map_err(|e| origins.rewrite(e, file))? {
                    Kept::Worm(w) => worms.push(*w),
                    Kept::Dropped(reason) => {
                        log.push_str(&format!("{user_file}: worm {name} dropped: {reason}\n"));
                        dropped.push(
                            json!({"file": display_name(file), "worm": name, "reason": reason}),
                        )
                    }
                }
            }
        }
        if worms.is_empty() {
            bail!(
                "no worm with any labelled neuron in {} files matching {pattern:?}: {}",
                files.len(),
                Value::Array(dropped)
            );
        }
        write_dataset(ctx.out_dir, &worms, &ctx.file_metadata())?;
        std::fs::write(ctx.out_dir.join("dropped.json"), serde_json::to_vec_pretty(&dropped)?)?;
        // What was read from each file, and each worm dropped: the node's log.
        let _ = std::fs::write(ctx.scratch.join(wormflow_api::KIND_LOG), &log);
        let mut prov = Map::new();
        prov.insert("worms".into(), json!(worms.len()));
        prov.insert("dropped_worms".into(), json!(dropped.len()));
        Ok(prov)
    }
}

fn default_pattern(format: &str) -> &'static str {
    match format {
        "flavell-json" => "*.json",
        "flavell-2023" => "*.{json,h5}",
        "zimmer-mat" | "yemini-mat" => "*.mat",
        "leifer" => "*_gcamp.txt",
        "nwb" => "*.nwb",
        "worm-data-parquet" => "*.parquet",
        _ => "*.h5",
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().unwrap_or_default().to_string_lossy().to_string()
}

/// Where each input file came from, as its download's `.sources.json` says (the user's
/// path or URL), so messages name that rather than the store's copy.
struct Origins {
    /// (input directory, output path → origin)
    inputs: Vec<(PathBuf, std::collections::BTreeMap<String, String>)>,
}

impl Origins {
    fn of(ctx: &StageContext) -> Origins {
        let inputs = ctx
            .inputs
            .iter()
            .map(|i| {
                let map = std::fs::read(i.dir.join(crate::download::SOURCES_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                (i.dir.clone(), map)
            })
            .collect();
        Origins { inputs }
    }

    /// The user's name for an input file: its origin, else its path inside the input.
    fn user_path(&self, file: &Path) -> String {
        for (dir, map) in &self.inputs {
            if let Ok(rel) = file.strip_prefix(dir) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                return map.get(&rel).cloned().unwrap_or(rel);
            }
        }
        display_name(file)
    }

    /// The error with the store's path of `file` replaced by the user's (the readers name
    /// the file they opened, which is a copy inside the store).
    fn rewrite(&self, e: anyhow::Error, file: &Path) -> anyhow::Error {
        let text = format!("{e:#}").replace(&file.display().to_string(), &self.user_path(file));
        anyhow::Error::msg(text)
    }
}

/// Files under the input directories whose path (relative to its input dir) or file name
/// matches the glob, sorted by that relative path.
fn find_files(ctx: &StageContext, pattern: &str) -> Result<Vec<PathBuf>> {
    let glob = files_glob(pattern).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    for input in ctx.inputs {
        let mut stack = vec![input.dir.clone()];
        while let Some(dir) = stack.pop() {
            for e in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let entry = e?;
                // Hidden files (a download's .sources.json, .DS_Store) are never inputs.
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel =
                    path.strip_prefix(&input.dir).unwrap_or(&path).to_string_lossy().to_string();
                if glob.is_match(&rel) || glob.is_match(display_name(&path)) {
                    out.push((rel, path));
                }
            }
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// A `files` pattern: `*` any run of characters (`/` included), `?` one character,
/// `{json,h5}` alternatives, `[0-9]` classes.
pub fn files_glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a valid glob: {}", e.kind()))
}

/// One worm as read from a file, before labels and checks. `dataset`, `citation` and
/// `time_is_estimated` default to none/false (`..Default::default()`): only formats whose
/// files carry them (generic-h5) set them; the stage's params fill the rest.
#[derive(Default)]
pub struct RawWorm {
    pub dataset: Option<String>,
    pub worm: String,
    pub source_file: String,
    pub citation: Option<String>,
    /// Row-major (time, column) traces.
    pub values: Vec<f64>,
    pub n_cols: usize,
    /// Time stamps in seconds; may be longer than the traces (cut to fit).
    pub time: Vec<f64>,
    pub time_is_estimated: bool,
    /// One label per column (None: unidentified).
    pub labels: Vec<Option<String>>,
    /// What the traces are and where in the file they were read ("" = the format's one).
    pub signal: String,
    /// Where the recording came from, as the file says (generic-h5 `source`, NWB identifier).
    pub source: String,
    /// How the time axis was obtained, when it is worth saying.
    pub time_note: String,
}

pub enum Kept {
    Worm(Box<Worm>),
    Dropped(String),
}

impl RawWorm {
    fn n_steps(&self) -> usize {
        self.values.len().checked_div(self.n_cols).unwrap_or(0)
    }

    /// Check, label and convert to the standard layout.
    pub fn into_worm(self, p: &Params) -> Result<Kept> {
        let where_ = format!("{} (worm {})", self.source_file, self.worm);
        if self.labels.iter().all(Option::is_none) {
            return Ok(Kept::Dropped(format!(
                "no identified neurons: none of its {} trace columns has a neuron label",
                self.n_cols
            )));
        }
        let n = self.n_steps();
        if n == 0 || self.n_cols == 0 {
            bail!("{where_}: the recording is empty ({n} time steps × {} neurons)", self.n_cols);
        }
        if self.labels.len() != self.n_cols {
            bail!("{where_}: {} labels for {} trace columns", self.labels.len(), self.n_cols);
        }
        if self.time.len() < n {
            bail!(
                "{where_}: {} time stamps for {n} frames; the time vector must cover every frame",
                self.time.len()
            );
        }
        let time = &self.time[..n];
        if let Some(i) = time.iter().position(|t| !t.is_finite()) {
            bail!("{where_}: time stamp {i} is {}; time stamps must be finite", time[i]);
        }
        if let Some(i) = time.windows(2).position(|w| w[1] <= w[0]) {
            bail!(
                "{where_}: time stamps are not increasing at frame {} ({} s then {} s); fix the file's time vector",
                i + 1,
                time[i],
                time[i + 1]
            );
        }
        let labels: Vec<Option<&str>> = self.labels.iter().map(|l| l.as_deref()).collect();
        let map = neurons::map_labels(&labels);
        let mut traces: Vec<Option<Vec<f32>>> = vec![None; N_NEURONS];
        let mut masked = 0;
        for (col, slot) in map.slots.iter().enumerate() {
            let Some(slot) = *slot else { continue };
            let mut trace: Vec<f64> = (0..n).map(|r| self.values[r * self.n_cols + col]).collect();
            let neuron = &neurons::names()[slot];
            if let Some(r) = trace.iter().position(|v| v.is_infinite()) {
                bail!("{where_}: neuron {neuron} (column {}) is infinite at frame {r}; the file is corrupt or not ΔF/F", col + 1);
            }
            if trace.iter().all(|v| v.is_nan()) {
                masked += 1;
                continue;
            }
            if let Some(r) = trace.iter().position(|v| v.is_nan()) {
                if p.nan != "interpolate" {
                    bail!("{where_}: neuron {neuron} (column {}) is NaN at frame {r}; set params.nan = \"interpolate\" to fill gaps linearly", col + 1);
                }
                interpolate_nans(&mut trace);
            }
            traces[slot] = Some(trace.into_iter().map(|v| v as f32).collect());
        }
        if traces.iter().all(Option::is_none) {
            return Ok(Kept::Dropped(if masked > 0 {
                format!("every labelled trace is NaN: {masked} columns carry a neuron label, and all their values are NaN (not a number); the file holds no activity for its identified neurons — check how it was exported")
            } else {
                format!(
                    "no identified neurons among its labels ({} columns: {} unknown, {} duplicate, {} ambiguous dropped labels)",
                    self.n_cols, map.unknown, map.duplicate, map.ambiguous_dropped
                )
            }));
        }
        let t0 = time[0];
        Ok(Kept::Worm(Box::new(Worm {
            dataset: self
                .dataset
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| p.dataset.clone()),
            worm: self.worm,
            t: time.iter().map(|t| t - t0).collect(),
            traces,
            info: WormInfo {
                source_file: self.source_file,
                citation: if p.citation.is_empty() {
                    self.citation.unwrap_or_default()
                } else {
                    p.citation.clone()
                },
                time_is_estimated: self.time_is_estimated,
                unknown_labels: map.unknown,
                duplicate_labels: map.duplicate,
                ambiguous_resolved: map.ambiguous_resolved,
                ambiguous_dropped: map.ambiguous_dropped,
                masked_neurons: masked,
                resampling: String::new(),
                signal: self.signal,
                source: self.source,
                time_note: self.time_note,
            },
        })))
    }
}

/// Fill NaN gaps by linear interpolation between the nearest finite neighbours (edges take
/// the nearest finite value).
fn interpolate_nans(x: &mut [f64]) {
    let finite: Vec<usize> = (0..x.len()).filter(|&i| x[i].is_finite()).collect();
    for i in 0..x.len() {
        if x[i].is_finite() {
            continue;
        }
        let after = finite.partition_point(|&j| j < i);
        x[i] = match (after.checked_sub(1).map(|k| finite[k]), finite.get(after).copied()) {
            (Some(a), Some(b)) => x[a] + (x[b] - x[a]) * (i - a) as f64 / (b - a) as f64,
            (Some(a), None) => x[a],
            (None, Some(b)) => x[b],
            (None, None) => x[i],
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let glob_match = |p: &str, t: &str| files_glob(p).unwrap().is_match(t);
        assert!(glob_match("*.h5", "2022-07-26-31-data.h5"));
        assert!(glob_match("kato/*worm?.h5", "kato/WT_worm1.h5"));
        assert!(!glob_match("*.h5", "labels.json"));
        assert!(glob_match("*/Flavell2023/*.{json,h5}", "opensource/Flavell2023/a.h5"));
        assert!(glob_match("*/Flavell2023/*.{json,h5}", "x/y/Flavell2023/b.json"));
        assert!(!glob_match("*/Flavell2023/*.{json,h5}", "x/Flavell2023/README.txt"));
        assert!(files_glob("*.{json").unwrap_err().contains("not a valid glob"));
    }

    #[test]
    fn nan_gaps_are_interpolated() {
        let mut x = [f64::NAN, 1.0, f64::NAN, f64::NAN, 4.0, f64::NAN];
        interpolate_nans(&mut x);
        assert_eq!(x, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
    }
}
