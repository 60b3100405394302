//! Yemini et al. 2021 (NeuroPAL) MATLAB v5 files (`Head_Activity_*.mat`,
//! `Tail_Activity_*.mat`), as the study read them: `fps`; `files` (one entry per worm);
//! `neurons` (neuron class names, sides not given); `is_L` (per class: per worm whether the
//! trace is the left one, NaN for unpaired neurons; 2 × worms entries when both sides were
//! recorded: the first half left, the second right); `norm_traces` (per class: per worm the
//! trace, laid out like `is_L`).
//!
//! Time is `index / fps`. The first 4 samples are dropped (they are zeros in the files, as
//! the study observed). A one-sided entry with is_L = 0 is taken as the right neuron.
//! Missing samples (NaN) go through `params.nan` (the study imputed them).

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::mat5::{parse, Value};
use super::{display_name, RawWorm};

/// Samples at the start of every trace that are zeros in the published files.
const LEADING_ZEROS: usize = 4;

pub fn read(path: &Path) -> Result<Vec<RawWorm>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let vars = parse(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let var = |name: &str| {
        vars.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
            anyhow!(
                "{}: no variable {name:?}; is this a Yemini 2021 NeuroPAL activity file?",
                path.display()
            )
        })
    };
    let fps = var("fps")?
        .numbers()
        .and_then(|v| v.first().copied())
        .ok_or_else(|| anyhow!("{}: fps is not a number", path.display()))?;
    let files: Vec<String> = var("files")?
        .cell()
        .ok_or_else(|| anyhow!("{}: files is not a cell", path.display()))?
        .iter()
        .map(|v| v.text().unwrap_or_default())
        .collect();
    let classes = var("neurons")?
        .cell()
        .ok_or_else(|| anyhow!("{}: neurons is not a cell", path.display()))?;
    let is_l =
        var("is_L")?.cell().ok_or_else(|| anyhow!("{}: is_L is not a cell", path.display()))?;
    let traces = var("norm_traces")?
        .cell()
        .ok_or_else(|| anyhow!("{}: norm_traces is not a cell", path.display()))?;
    if classes.len() != is_l.len() || classes.len() != traces.len() {
        bail!("{}: neurons, is_L and norm_traces differ in length", path.display());
    }
    let n_files = files.len();
    let mut worms = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let mut labels: Vec<Option<String>> = Vec::new();
        let mut columns: Vec<Vec<f64>> = Vec::new();
        for ((class, sides), class_traces) in classes.iter().zip(is_l).zip(traces) {
            let class = class.text().unwrap_or_default();
            let sides = sides
                .numbers()
                .ok_or_else(|| anyhow!("{}: is_L for {class} is not numeric", path.display()))?;
            let class_traces = class_traces.cell().ok_or_else(|| {
                anyhow!("{}: norm_traces for {class} is not a cell", path.display())
            })?;
            let trace = |k: usize| {
                class_traces
                    .get(k)
                    .and_then(Value::numbers)
                    .map(<[f64]>::to_vec)
                    .unwrap_or_default()
            };
            let mut push = |label: String, t: Vec<f64>| {
                if !t.is_empty() {
                    labels.push(Some(label));
                    columns.push(t);
                }
            };
            if sides.len() == 2 * n_files {
                if sides[f] == 1.0 {
                    push(format!("{class}L"), trace(f));
                }
                if !sides[n_files + f].is_nan() {
                    push(format!("{class}R"), trace(n_files + f));
                }
            } else if sides.len() == n_files {
                match sides[f] {
                    s if s.is_nan() => push(class.clone(), trace(f)),
                    1.0 => push(format!("{class}L"), trace(f)),
                    _ => push(format!("{class}R"), trace(f)),
                }
            } else {
                bail!(
                    "{}: is_L for {class} has {} entries for {n_files} worms",
                    path.display(),
                    sides.len()
                );
            }
        }
        let n_steps = columns.iter().map(Vec::len).max().unwrap_or(0);
        if n_steps <= LEADING_ZEROS {
            continue;
        }
        let n_cols = columns.len();
        let rows = n_steps - LEADING_ZEROS;
        let mut values = vec![f64::NAN; rows * n_cols];
        for (c, col) in columns.iter().enumerate() {
            for (r, v) in col.iter().enumerate().skip(LEADING_ZEROS) {
                values[(r - LEADING_ZEROS) * n_cols + c] = *v;
            }
        }
        worms.push(RawWorm {
            worm: if file.is_empty() { format!("worm{}", f + 1) } else { file.clone() },
            source_file: display_name(path),
            values,
            n_cols,
            time: (LEADING_ZEROS..n_steps).map(|k| k as f64 / fps).collect(),
            labels,
            ..Default::default()
        });
    }
    Ok(worms)
}
