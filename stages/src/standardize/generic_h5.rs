//! wormflow's own per-worm HDF5 layout (the format offered to users for their recordings):
//!
//! ```text
//! /traces        (T, N) float   the signal
//! /time          (T,)   float   seconds from the start of the recording
//! /neuron_names  (N,)   string  one label per column; "" for an unidentified ROI
//! attributes (root, all optional): dataset, worm, signal, citation, source,
//!            time_is_estimated (bool), time_note
//! ```

use std::path::Path;

use anyhow::{bail, Result};

use super::{display_name, RawWorm};
use crate::h5::H5;

pub fn read(path: &Path) -> Result<Vec<RawWorm>> {
    let h5 = H5::open(path)?;
    let (n_steps, n_cols, values) = h5.matrix("traces")?;
    let (_, time) = h5.f64s("time")?;
    let names = h5.strings("neuron_names")?;
    if names.len() != n_cols && names.len() == n_steps {
        bail!(
            "{}: /traces is {n_steps} × {n_cols} and /neuron_names has {n_steps} entries: /traces looks transposed; write it as (time, neurons), one column per name",
            path.display()
        );
    }
    if names.len() != n_cols {
        bail!(
            "{}: /neuron_names has {} entries for {n_cols} columns of /traces",
            path.display(),
            names.len()
        );
    }
    if time.len() != n_steps {
        bail!("{}: /time has {} entries for {n_steps} rows of /traces", path.display(), time.len());
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
    Ok(vec![RawWorm {
        dataset: h5.attr("dataset"),
        worm: h5.attr("worm").unwrap_or(stem),
        source_file: display_name(path),
        citation: h5.attr("citation"),
        values,
        n_cols,
        time,
        time_is_estimated: h5.attr_bool("time_is_estimated").unwrap_or(false),
        signal: h5.attr("signal").unwrap_or_default(),
        source: h5.attr("source").unwrap_or_default(),
        time_note: h5.attr("time_note").unwrap_or_default(),
        labels: names.into_iter().map(|n| (!n.trim().is_empty()).then_some(n)).collect(),
    }])
}
