//! MATLAB v7.3 (HDF5) files of the Zimmer lab and related datasets, as the study read them:
//! Kato 2015 (`WT_Stim.mat`, `WT_NoStim.mat`), Nichols 2017, Skora 2018 (`WT_fasted.mat`,
//! `WT_starved.mat`), Kaplan 2020 and Uzel 2022.
//!
//! Each file holds one struct (the group named like the file, or the only group) whose
//! fields are cell arrays with one element per worm:
//! - neuron identities: `IDs` | `NeuronNames` | `neuron_ID` — per worm a cell with one entry
//!   per trace column: a char array, an empty array (unidentified), or a cell of candidate
//!   names (the first non-empty one is taken, as the study did);
//! - traces: `traces` | `deltaFOverF_bc` | `traces_bleach_corrected` — per worm a T × N double
//!   matrix (MATLAB order; HDF5 stores it as N × T);
//! - time: `timeVectorSeconds` | `tv` | `time_vector` — per worm T seconds.
//!
//! Cells are HDF5 datasets of object references; char arrays are UTF-16 `uint16` datasets
//! with attribute `MATLAB_class = "char"`; empty arrays carry `MATLAB_empty`.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use hdf5_pure::{AttrValue, Dataset, File, Object};

use super::{display_name, RawWorm};

const ID_FIELDS: &[&str] = &["IDs", "NeuronNames", "neuron_ID"];
const TRACE_FIELDS: &[&str] = &["traces", "deltaFOverF_bc", "traces_bleach_corrected"];
const TIME_FIELDS: &[&str] = &["timeVectorSeconds", "tv", "time_vector"];

pub fn read(path: &Path) -> Result<Vec<RawWorm>> {
    let name = display_name(path);
    let err = |what: String| anyhow!("{}: {what}", path.display());
    let file = File::open(path).map_err(|e| {
        err(format!(
            "cannot read as MATLAB v7.3/HDF5 ({e}); MATLAB v5 files must be re-saved with -v7.3"
        ))
    })?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
    let group = match file.group(&stem) {
        Ok(g) => g,
        Err(_) => {
            let groups: Vec<String> = file
                .root()
                .groups()
                .unwrap_or_default()
                .into_iter()
                .filter(|g| !g.starts_with('#'))
                .collect();
            match groups.as_slice() {
                [only] => file.group(only).map_err(|e| err(e.to_string()))?,
                _ => bail!(
                    "{}: expected one struct named {stem:?}; found groups {groups:?}",
                    path.display()
                ),
            }
        }
    };
    let field = |names: &[&str]| -> Result<Dataset> {
        names.iter().find_map(|n| group.dataset(n).ok()).ok_or_else(|| {
            err(format!(
                "the struct has none of the fields {names:?}; is this a Zimmer-lab .mat file?"
            ))
        })
    };
    let ids = cell(&field(ID_FIELDS)?, path)?;
    let traces = cell(&field(TRACE_FIELDS)?, path)?;
    let times = cell(&field(TIME_FIELDS)?, path)?;
    if ids.len() != traces.len() || traces.len() != times.len() {
        bail!(
            "{}: {} ID cells, {} trace cells and {} time cells; expected one of each per worm",
            path.display(),
            ids.len(),
            traces.len(),
            times.len()
        );
    }
    let mut worms = Vec::new();
    for (w, ((id, trace), time)) in ids.iter().zip(&traces).zip(&times).enumerate() {
        let where_ = format!("{}: worm {}", path.display(), w + 1);
        let trace =
            as_dataset(trace).ok_or_else(|| anyhow!("{where_}: traces cell is not a matrix"))?;
        let shape = trace.shape().map_err(|e| anyhow!("{where_}: {e}"))?;
        let [n_cols, n_steps] = shape[..] else {
            bail!("{where_}: traces have shape {shape:?}; expected a 2-D matrix")
        };
        let (n_cols, n_steps) = (n_cols as usize, n_steps as usize);
        let stored = trace.read_f64().map_err(|e| anyhow!("{where_}: cannot read traces: {e}"))?;
        // MATLAB's T × N (column-major) arrives as N × T: transpose to time-major.
        let mut values = vec![0.0; n_steps * n_cols];
        for c in 0..n_cols {
            for r in 0..n_steps {
                values[r * n_cols + c] = stored[c * n_steps + r];
            }
        }
        let time = as_dataset(time)
            .ok_or_else(|| anyhow!("{where_}: time cell is not a vector"))?
            .read_f64()
            .map_err(|e| anyhow!("{where_}: {e}"))?;
        let id = as_dataset(id).ok_or_else(|| anyhow!("{where_}: IDs cell is not a cell array"))?;
        let labels = cell(id, path)?.iter().map(label_of).collect::<Result<Vec<_>>>()?;
        worms.push(RawWorm {
            worm: format!("{stem}_worm{}", w + 1),
            source_file: name.clone(),
            values,
            n_cols,
            time,
            labels,
            ..Default::default()
        });
    }
    Ok(worms)
}

fn as_dataset(o: &Object) -> Option<&Dataset> {
    match o {
        Object::Dataset(d) => Some(d),
        _ => None,
    }
}

/// The elements of a MATLAB cell array.
fn cell(d: &Dataset, path: &Path) -> Result<Vec<Object>> {
    d.dereference()
        .map_err(|e| anyhow!("{}: expected a cell array (object references): {e}", path.display()))
}

fn matlab_class(d: &Dataset) -> String {
    match d.attrs().ok().and_then(|a| a.get("MATLAB_class").cloned()) {
        Some(
            AttrValue::String(s)
            | AttrValue::AsciiString(s)
            | AttrValue::VarLenString(s)
            | AttrValue::VarLenAsciiString(s),
        ) => s,
        Some(AttrValue::AsciiStringSized { value, .. } | AttrValue::StringSized { value, .. }) => {
            value
        }
        _ => String::new(),
    }
}

fn is_empty(d: &Dataset) -> bool {
    d.attrs().is_ok_and(|a| a.contains_key("MATLAB_empty"))
}

/// One identity entry: a name, nothing, or the first name of a cell of candidates.
fn label_of(o: &Object) -> Result<Option<String>> {
    let Some(d) = as_dataset(o) else { return Ok(None) };
    if is_empty(d) {
        return Ok(None);
    }
    match matlab_class(d).as_str() {
        "char" => {
            let units = d.read_u16().map_err(|e| anyhow!("cannot read a neuron name: {e}"))?;
            let s = String::from_utf16_lossy(&units).trim_end_matches('\0').trim().to_string();
            Ok((!s.is_empty()).then_some(s))
        }
        "cell" => {
            for candidate in
                d.dereference().map_err(|e| anyhow!("cannot read a cell of names: {e}"))?
            {
                if let Some(name) = label_of(&candidate)? {
                    return Ok(Some(name));
                }
            }
            Ok(None)
        }
        _ => Ok(None), // a number (e.g. NaN) marks an unidentified trace
    }
}
