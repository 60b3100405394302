//! Atanas et al. 2023 as the study's data archive carried it, in either of the two forms the
//! study's reader (worm-graph `Flavell2023Preprocessor`) accepts, chosen by file extension:
//!
//! - `*.json`: WormWideWeb JSON (see `flavell_json.rs`);
//! - `*.h5`: one recording per file with root datasets `trace_array_F20` (time × neuron,
//!   ΔF/F20), `neuropal_label` (one label per neuron; `"missing"` for an unidentified one,
//!   `?` for a left/right ambiguity) and `timestamp_confocal` (seconds).

use std::path::Path;

use anyhow::{bail, Result};

use super::{display_name, flavell_json, RawWorm};
use crate::h5::H5;

const SIGNAL: &str = "trace_array_F20";
const LABELS: &str = "neuropal_label";
const TIME: &str = "timestamp_confocal";
/// What the archive writes for a neuron NeuroPAL did not identify.
const UNIDENTIFIED: &str = "missing";

pub fn read(path: &Path) -> Result<Vec<RawWorm>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => flavell_json::read(path),
        Some("h5") => read_h5(path),
        _ => bail!("{}: format flavell-2023 reads .json and .h5 files only; narrow params.files (default \"*.{{json,h5}}\")", path.display()),
    }
}

fn read_h5(path: &Path) -> Result<Vec<RawWorm>> {
    let h5 = H5::open(path)?;
    let (n_steps, n_cols, values) = h5.matrix(SIGNAL)?;
    let names = h5.strings(LABELS)?;
    let (_, time) = h5.f64s(TIME)?;
    if names.len() != n_cols || time.len() != n_steps {
        bail!(
            "{}: {SIGNAL} is {n_steps} × {n_cols} (time × neuron) but there are {} labels in {LABELS} and {} times in {TIME}; \
             a file written neuron × time is not this layout",
            path.display(),
            names.len(),
            time.len()
        );
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
    Ok(vec![RawWorm {
        worm: stem,
        source_file: display_name(path),
        values,
        n_cols,
        time,
        labels: names
            .iter()
            // h5py's fixed-length strings come padded with NULs or spaces.
            .map(|n| n.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
            .map(|n| (!n.is_empty() && n != UNIDENTIFIED).then(|| n.to_string()))
            .collect(),
        ..Default::default()
    }])
}
