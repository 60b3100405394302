//! WormWideWeb JSON (Atanas et al. 2023): `trace_array` (one list per neuron, each over
//! time), `timestamp_confocal` (seconds), `labeled` ({"<1-based neuron>": {"label": …}}),
//! and optionally `uid`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{display_name, RawWorm};

pub fn read(path: &Path) -> Result<Vec<RawWorm>> {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let field = |name: &str| {
        doc.get(name).with_context(|| {
            format!("{}: no {name:?} field; is this WormWideWeb JSON?", path.display())
        })
    };
    let traces = field("trace_array")?
        .as_array()
        .with_context(|| format!("{}: trace_array is not a list", path.display()))?;
    let n_cols = traces.len();
    let n_steps = traces.first().and_then(Value::as_array).map_or(0, Vec::len);
    let mut values = vec![0.0; n_steps * n_cols];
    for (c, trace) in traces.iter().enumerate() {
        let trace = trace
            .as_array()
            .with_context(|| format!("{}: trace_array[{c}] is not a list", path.display()))?;
        if trace.len() != n_steps {
            bail!(
                "{}: trace_array[{c}] has {} samples, trace_array[0] has {n_steps}",
                path.display(),
                trace.len()
            );
        }
        for (r, v) in trace.iter().enumerate() {
            // null (JSON has no NaN) marks a missing sample
            values[r * n_cols + c] = v.as_f64().unwrap_or(f64::NAN);
        }
    }
    let time: Vec<f64> = field("timestamp_confocal")?
        .as_array()
        .with_context(|| format!("{}: timestamp_confocal is not a list", path.display()))?
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    let mut labels = vec![None; n_cols];
    if let Some(Value::Object(m)) = doc.get("labeled") {
        for (k, entry) in m {
            let i: usize =
                k.parse().ok().filter(|&i| i >= 1 && i <= n_cols).with_context(|| {
                    format!(
                        "{}: labeled key {k:?} is not a 1-based neuron index (1..={n_cols})",
                        path.display()
                    )
                })?;
            labels[i - 1] = entry.get("label").and_then(Value::as_str).map(str::to_string);
        }
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
    Ok(vec![RawWorm {
        worm: doc.get("uid").and_then(Value::as_str).map(str::to_string).unwrap_or(stem),
        source_file: display_name(path),
        values,
        n_cols,
        time,
        labels,
        ..Default::default()
    }])
}
