//! NWB (Neurodata Without Borders 2.x, HDF5) files, as the WormID datasets on DANDI write
//! them (focolab/NWBelegans conventions, extension `ndx-multichannel-volume`):
//!
//! - traces: an `RoiResponseSeries` (time × ROIs), usually `SignalCalciumImResponseSeries`,
//!   inside a `DfOverF` (`SignalDFoF`, ΔF/F), a `Fluorescence` (`SignalRawFluor`, raw) or
//!   directly in the processing module (`CalciumActivity`, processed traces). Found by
//!   `neurodata_type` (or that name) under every processing module; `params.nwb_series`
//!   names one by path instead. Which signal is `params.signal`: `dff`, `raw`, `processed`,
//!   or `auto` (ΔF/F, else processed, else raw — the study models ΔF/F-like signals and
//!   normalises them itself in preprocess).
//! - time: the series' `timestamps`, else `starting_time` + its `rate` attribute, else
//!   `params.rate` (some dandisets, e.g. 000541, carry neither).
//! - identities: a `SegmentationLabels` (`NeuronIDs/labels`, one string per ROI) in the
//!   series' module, else an `ID_labels` column of a `PlaneSegmentation` (ragged
//!   `VectorData` + `VectorIndex`, one character per element as NWBelegans writes it), in
//!   the series' module first, then in the others (`NeuroPAL/NeuroPALSegmentation/…`).
//!   Trace column c is labelled by row `rois[c]` of that table. "" = not identified.
//!   The `rois` region's `table` reference is not followed (hdf5-pure 0.47 reads no
//!   reference attributes): the table is found by those locations and checked against
//!   the region's largest index; `params.nwb_labels` names it by path instead.
//! - older files with one `TimeSeries` per neuron (`acquisition/Activity_0000`, …, e.g.
//!   the Leifer lab's NWB 2.1.0 files) are read column by column; a series is identified
//!   only if its name or description is a neuron's name.
//!
//! Only those datasets are read (the file is opened for streaming): image volumes are
//! never touched, so memory stays proportional to the traces.

use std::path::Path;

use anyhow::{bail, Result};

use super::{display_name, Params, RawWorm};
use crate::h5::H5;
use crate::neurons;

/// The kinds of trace an NWB file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Dff,
    Processed,
    Raw,
}

impl Signal {
    fn describe(self) -> &'static str {
        match self {
            Signal::Dff => "ΔF/F",
            Signal::Processed => "processed",
            Signal::Raw => "raw fluorescence",
        }
    }

    /// `params.signal` for NWB files: None = auto.
    pub fn parse(param: &str) -> Result<Option<Signal>, String> {
        match param {
            "auto" => Ok(None),
            "dff" => Ok(Some(Signal::Dff)),
            "processed" => Ok(Some(Signal::Processed)),
            "raw" => Ok(Some(Signal::Raw)),
            other => Err(format!(
                "params.signal for NWB must be \"auto\", \"dff\", \"processed\" or \"raw\"; got {other:?}"
            )),
        }
    }
}

/// A trace matrix found in the file.
struct Series {
    path: String,
    signal: Signal,
    /// The processing module it belongs to (`processing/<name>`).
    module: String,
}

const SERIES_NAME: &str = "SignalCalciumImResponseSeries";

fn neurodata_type(h5: &H5, path: &str) -> String {
    h5.text_attr(path, "neurodata_type").unwrap_or_default()
}

fn is_trace_series(h5: &H5, path: &str) -> bool {
    let named = path.rsplit('/').next() == Some(SERIES_NAME);
    (named || neurodata_type(h5, path) == "RoiResponseSeries")
        && h5.shape(&format!("{path}/data")).is_ok_and(|s| s.len() == 2)
}

/// What a container's name and type say about its signal.
fn signal_of_container(h5: &H5, path: &str) -> Signal {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if neurodata_type(h5, path) == "DfOverF" || name.contains("dfof") || name.contains("dff") {
        Signal::Dff
    } else if name.contains("raw") {
        Signal::Raw
    } else {
        Signal::Processed
    }
}

/// The processing modules' paths (`processing/<name>`), sorted.
fn modules(h5: &H5) -> Vec<String> {
    h5.members("processing")
        .map(|(m, _)| m.into_iter().map(|m| format!("processing/{m}")).collect())
        .unwrap_or_default()
}

/// Every RoiResponseSeries under the processing modules (directly, or one container down).
fn find_series(h5: &H5) -> Vec<Series> {
    let mut out = Vec::new();
    for mpath in modules(h5) {
        let Some((children, _)) = h5.members(&mpath) else { continue };
        for child in children {
            let cpath = format!("{mpath}/{child}");
            if is_trace_series(h5, &cpath) {
                out.push(Series { path: cpath, signal: Signal::Processed, module: mpath.clone() });
                continue;
            }
            // A series group holding a soft link cannot be listed; try the usual name.
            let inner = h5.members(&cpath).map(|(g, _)| g).unwrap_or_default();
            let names = if inner.is_empty() { vec![SERIES_NAME.to_string()] } else { inner };
            for name in names {
                let spath = format!("{cpath}/{name}");
                if is_trace_series(h5, &spath) {
                    let signal = signal_of_container(h5, &cpath);
                    out.push(Series { path: spath, signal, module: mpath.clone() });
                }
            }
        }
    }
    out
}

/// What the file holds, for an error when no trace series matches.
fn inventory(h5: &H5) -> String {
    let mut lines = Vec::new();
    for top in ["processing", "acquisition"] {
        let Some((groups, _)) = h5.members(top) else { continue };
        for g in groups.iter().take(12) {
            let path = format!("{top}/{g}");
            let kids = h5.members(&path).map(|(g, d)| {
                let mut all: Vec<String> = g
                    .iter()
                    .map(|k| {
                        let t = neurodata_type(h5, &format!("{path}/{k}"));
                        if t.is_empty() {
                            k.clone()
                        } else {
                            format!("{k} ({t})")
                        }
                    })
                    .collect();
                all.extend(d);
                all
            });
            lines.push(match kids {
                Some(k) if k.len() > 8 => {
                    format!("{path}: {}, … ({} in all)", k[..8].join(", "), k.len())
                }
                Some(k) => format!("{path}: {}", k.join(", ")),
                None => format!("{path}: (cannot be listed)"),
            });
        }
        if groups.len() > 12 {
            lines.push(format!("{top}: … {} groups in all", groups.len()));
        }
    }
    if lines.is_empty() {
        "no processing or acquisition groups".into()
    } else {
        lines.join("; ")
    }
}

fn pick_series(h5: &H5, path: &Path, p: &Params) -> Result<Series> {
    let wanted = Signal::parse(&p.signal).map_err(anyhow::Error::msg)?;
    if !p.nwb_series.is_empty() {
        let s = p.nwb_series.trim_matches('/').to_string();
        if !h5.shape(&format!("{s}/data")).is_ok_and(|d| d.len() == 2) {
            bail!(
                "{}: params.nwb_series = {s:?} has no 2-D `data` dataset; the file holds: {}",
                path.display(),
                inventory(h5)
            );
        }
        let parent = s.rsplit_once('/').map_or("", |(a, _)| a).to_string();
        let module = s.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
        let signal =
            if parent == module { Signal::Processed } else { signal_of_container(h5, &parent) };
        return Ok(Series { path: s, signal, module });
    }
    let found = find_series(h5);
    let order = match wanted {
        Some(s) => vec![s],
        None => vec![Signal::Dff, Signal::Processed, Signal::Raw],
    };
    for signal in order {
        if let Some(s) = found.iter().find(|s| s.signal == signal) {
            return Ok(Series { path: s.path.clone(), signal, module: s.module.clone() });
        }
    }
    if found.is_empty() {
        bail!(
            "{}: no RoiResponseSeries of traces (time × ROIs) under processing/; the file holds: {}. Name the series with params.nwb_series",
            path.display(),
            inventory(h5)
        );
    }
    let have: Vec<String> =
        found.iter().map(|s| format!("{} ({})", s.path, s.signal.describe())).collect();
    bail!(
        "{}: no {} series (params.signal = {:?}); the file has {}",
        path.display(),
        wanted.map_or("matching", Signal::describe),
        p.signal,
        have.join(", ")
    )
}

/// Time stamps for `n_steps` frames of the series, and how they were obtained.
fn series_time(
    h5: &H5,
    path: &Path,
    series: &str,
    n_steps: usize,
    n_cols: usize,
    p: &Params,
) -> Result<(Vec<f64>, String, bool)> {
    let stamps = format!("{series}/timestamps");
    if h5.has(&stamps) {
        let (_, t) = h5.f64s(&stamps)?;
        if t.len() != n_steps && t.len() == n_cols {
            bail!("{}: {series}/data is {n_steps} × {n_cols} but there are {n_cols} time stamps: the traces look transposed (NWB stores time first); rewrite them as (time, ROIs)", path.display());
        }
        return Ok((t, "timestamps".into(), false));
    }
    let start = format!("{series}/starting_time");
    if let Some(rate) = h5.number_attr(&start, "rate").filter(|r| *r > 0.0) {
        let t0 = h5.f64s(&start).ok().and_then(|(_, v)| v.first().copied()).unwrap_or(0.0);
        let t = (0..n_steps).map(|i| t0 + i as f64 / rate).collect();
        return Ok((t, format!("starting_time + rate ({rate} Hz)"), false));
    }
    if p.rate > 0.0 {
        let t = (0..n_steps).map(|i| i as f64 / p.rate).collect();
        return Ok((
            t,
            format!("params.rate ({} Hz; the file has no rate or timestamps)", p.rate),
            true,
        ));
    }
    // A series group that cannot be listed holds a soft link, perhaps its timestamps.
    let unlisted = if h5.members(series).is_none() {
        " (its group holds a soft link, perhaps timestamps shared with another series, which hdf5-pure 0.47 cannot follow in old-style groups)"
    } else {
        ""
    };
    bail!(
        "{}: {series} has neither readable timestamps nor starting_time with a rate{unlisted}; set params.rate to the recording's frame rate in Hz (e.g. rate = 4.0 for dandiset 000541, as the study's successor assumes)",
        path.display()
    )
}

/// A column of labels: plain strings, or ragged (`<path>_index` holds each row's end).
fn label_column(h5: &H5, path: &str) -> Result<Vec<String>> {
    let values = h5.strings(path)?;
    let index = format!("{path}_index");
    if !h5.has(&index) {
        return Ok(values);
    }
    let ends = h5.indices(&index)?;
    let mut rows = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for (r, &end) in ends.iter().enumerate() {
        let end = end as usize;
        if end < start || end > values.len() {
            bail!(
                "{}: {index} row {r} ends at {end}, outside 0..={} of {path}",
                h5.path.display(),
                values.len()
            );
        }
        rows.push(values[start..end].concat());
        start = end;
    }
    Ok(rows)
}

/// Where identities may be, best first: SegmentationLabels in the series' module, then
/// `ID_labels` columns of segmentation tables (the series' module first).
fn label_candidates(h5: &H5, module: &str) -> Vec<String> {
    let mut modules = modules(h5);
    modules.sort_by_key(|m| m != module);
    let mut out = Vec::new();
    if let Some((kids, _)) = h5.members(module) {
        for k in kids {
            let path = format!("{module}/{k}");
            if (k == "NeuronIDs" || neurodata_type(h5, &path) == "SegmentationLabels")
                && h5.has(&format!("{path}/labels"))
            {
                out.push(format!("{path}/labels"));
            }
        }
    }
    for m in &modules {
        let Some((kids, _)) = h5.members(m) else { continue };
        for k in kids {
            let container = format!("{m}/{k}");
            // Tables are one level down (ImageSegmentation → PlaneSegmentation).
            let Some((tables, _)) = h5.members(&container) else { continue };
            for t in tables {
                let column = format!("{container}/{t}/ID_labels");
                if h5.has(&column) {
                    out.push(column);
                }
            }
        }
    }
    out
}

fn column_labels(
    h5: &H5,
    path: &Path,
    series: &Series,
    n_cols: usize,
    p: &Params,
) -> Result<(Vec<Option<String>>, String)> {
    let rois_path = format!("{}/rois", series.path);
    let rois: Vec<usize> = if h5.has(&rois_path) {
        h5.indices(&rois_path)?.into_iter().map(|r| r as usize).collect()
    } else if h5.members(&series.path).is_none() {
        bail!(
            "{}: {} cannot be listed, so its `rois` region (probably a soft link to another series' region) cannot be read; hdf5-pure 0.47 does not follow soft links in old-style groups. Name the labels with params.nwb_labels only if trace column c is row c of that table",
            path.display(),
            series.path
        );
    } else {
        (0..n_cols).collect()
    };
    if rois.len() != n_cols {
        bail!(
            "{}: {rois_path} has {} entries for {n_cols} trace columns",
            path.display(),
            rois.len()
        );
    }
    let need = rois.iter().max().map_or(0, |m| m + 1);
    let candidates = if p.nwb_labels.is_empty() {
        label_candidates(h5, &series.module)
    } else {
        vec![p.nwb_labels.trim_matches('/').to_string()]
    };
    for c in &candidates {
        let rows = label_column(h5, c)?;
        if rows.len() < need {
            if !p.nwb_labels.is_empty() {
                bail!(
                    "{}: {c} has {} rows but {rois_path} indexes row {}",
                    path.display(),
                    rows.len(),
                    need - 1
                );
            }
            continue;
        }
        let labels = rois
            .iter()
            .map(|&r| Some(rows[r].trim().to_string()).filter(|l| !l.is_empty()))
            .collect();
        return Ok((labels, c.clone()));
    }
    Ok((vec![None; n_cols], String::new()))
}

/// Older layout: one 1-D TimeSeries per neuron in a group (acquisition, or a module).
fn per_neuron_series(h5: &H5) -> Option<(String, Vec<String>)> {
    let groups = std::iter::once("acquisition".to_string()).chain(modules(h5));
    for g in groups {
        let Some((kids, _)) = h5.members(&g) else { continue };
        let series: Vec<String> = kids
            .into_iter()
            .map(|k| format!("{g}/{k}"))
            .filter(|k| {
                neurodata_type(h5, k) == "TimeSeries"
                    && h5.shape(&format!("{k}/data")).is_ok_and(|s| s.len() == 1)
            })
            .collect();
        if series.len() >= 2 {
            return Some((g, series));
        }
    }
    None
}

fn read_per_neuron(
    h5: &H5,
    path: &Path,
    group: &str,
    series: &[String],
) -> Result<(RawWorm, String)> {
    let mut columns = Vec::with_capacity(series.len());
    let mut labels = Vec::with_capacity(series.len());
    let mut time: Option<Vec<f64>> = None;
    for s in series {
        let (_, v) = h5.f64s(&format!("{s}/data"))?;
        let (t, _, _) = series_time(h5, path, s, v.len(), 1, &Params::default())?;
        match &time {
            Some(t0) if t0.len() != v.len() => bail!(
                "{}: {s} has {} samples, the other series of {group} {}; one TimeSeries per neuron must share the time axis",
                path.display(),
                v.len(),
                t0.len()
            ),
            Some(_) => {}
            None => time = Some(t),
        }
        let name = s.rsplit('/').next().unwrap_or(s);
        let description = h5.text_attr(s, "description").unwrap_or_default();
        let label = [name, description.as_str()]
            .into_iter()
            .map(neurons::normalise)
            .find(|l| neurons::index_of(l).is_some());
        labels.push(label);
        columns.push(v);
    }
    let n_steps = columns[0].len();
    let values = (0..n_steps).flat_map(|r| columns.iter().map(move |c| c[r])).collect();
    let worm = RawWorm {
        values,
        n_cols: columns.len(),
        time: time.unwrap_or_default(),
        labels,
        ..Default::default()
    };
    Ok((worm, format!("{} TimeSeries in {group}, one per neuron", series.len())))
}

fn first_text(h5: &H5, path: &str) -> Option<String> {
    h5.strings(path).ok()?.into_iter().map(|s| s.trim().to_string()).find(|s| !s.is_empty())
}

pub fn read(path: &Path, p: &Params) -> Result<Vec<RawWorm>> {
    let h5 = H5::open_streaming(path)?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
    let (mut worm, signal) = match pick_series(&h5, path, p) {
        Ok(series) => {
            let (n_steps, n_cols, values) = h5.matrix(&format!("{}/data", series.path))?;
            let (time, time_note, time_is_estimated) =
                series_time(&h5, path, &series.path, n_steps, n_cols, p)?;
            let (labels, label_source) = column_labels(&h5, path, &series, n_cols, p)?;
            let from = if label_source.is_empty() {
                "no neuron labels in the file".to_string()
            } else {
                format!("labels from {label_source}")
            };
            let signal = format!("{}: {} ({from})", series.signal.describe(), series.path);
            let worm = RawWorm {
                values,
                n_cols,
                time,
                labels,
                time_is_estimated,
                time_note,
                ..Default::default()
            };
            (worm, signal)
        }
        // No RoiResponseSeries: an older file with one TimeSeries per neuron?
        Err(e) => match per_neuron_series(&h5) {
            Some((group, series)) if p.nwb_series.is_empty() && p.signal == "auto" => {
                read_per_neuron(&h5, path, &group, &series)?
            }
            _ => return Err(e),
        },
    };
    worm.worm = stem;
    worm.source_file = display_name(path);
    worm.citation = first_text(&h5, "general/related_publications");
    worm.source = first_text(&h5, "identifier")
        .map(|id| format!("NWB file, identifier {id}"))
        .unwrap_or_default();
    worm.signal = signal;
    Ok(vec![worm])
}
