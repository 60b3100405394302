//! Flavell lab per-recording HDF5 (Dag et al. 2023; Atanas et al. 2023):
//! `gcamp/traces_array_F_F20` (time, ROI) ΔF/F20, `timing/timestamp_confocal` (absolute
//! seconds), and identities from a separate labels JSON keyed by recording uid (the file
//! name without `-data.h5`) → 1-based trace column → `{"label": ...}`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use wormflow_api::StageContext;

use super::{display_name, Params, RawWorm};
use crate::h5::H5;

const SIGNAL: &str = "gcamp/traces_array_F_F20";
const TIME: &str = "timing/timestamp_confocal";

pub fn read(path: &Path, ctx: &StageContext, p: &Params) -> Result<Vec<RawWorm>> {
    let labels_path = super::find_files(ctx, &p.labels)?
        .into_iter()
        .next()
        .with_context(|| format!("labels file {:?} not found among the inputs; add it to the download stage or set params.labels", p.labels))?;
    let labels: Value = serde_json::from_slice(&std::fs::read(&labels_path)?)
        .with_context(|| format!("{}: not valid JSON", labels_path.display()))?;
    let name = display_name(path);
    let uid = name
        .strip_suffix("-data.h5")
        .or_else(|| name.strip_suffix(".h5"))
        .unwrap_or(&name)
        .to_string();
    let h5 = H5::open(path)?;
    let (n_steps, n_cols, values) = h5.matrix(SIGNAL)?;
    let (_, time) = h5.f64s(TIME)?;
    let by_column = match labels.get(&uid) {
        Some(Value::Object(m)) => Some(m),
        Some(_) => bail!("{}: entry {uid:?} is not an object of column → label", labels_path.display()),
        None if p.missing_labels == "drop" => None,
        None => bail!(
            "{}: no labels for recording {uid:?} ({}); add them, or set params.missing_labels = \"drop\" to skip unlabelled recordings",
            labels_path.display(),
            path.display()
        ),
    };
    let mut col_labels = vec![None; n_cols];
    for (col, entry) in by_column.into_iter().flatten() {
        let index: usize =
            col.parse().ok().filter(|&c| c >= 1 && c <= n_cols).with_context(|| {
                format!(
                    "{}: {uid} column {col:?} is not a 1-based column of {SIGNAL} (1..={n_cols})",
                    labels_path.display()
                )
            })?;
        let label = entry.get("label").and_then(Value::as_str).with_context(|| {
            format!("{}: {uid} column {col} has no \"label\" string", labels_path.display())
        })?;
        col_labels[index - 1] = Some(label.to_string());
    }
    let _ = n_steps;
    Ok(vec![RawWorm {
        worm: uid,
        source_file: name,
        values,
        n_cols,
        time,
        labels: col_labels,
        ..Default::default()
    }])
}
