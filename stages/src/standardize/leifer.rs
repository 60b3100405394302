//! Randi et al. 2023 (Leifer lab) exported text data, three files per worm `N`:
//! `N_gcamp.txt` (one line per time step, space-separated values per neuron, `nan` for
//! missing), `N_labels.txt` (one label per line, empty when unidentified) and `N_t.txt`
//! (one time stamp per line, seconds). Labels given without a side (`AVA`) are ambiguous
//! between `AVAL` and `AVAR` and go through the `?` rule; extra labels beyond the number of
//! traces are ignored, as in the study's reader.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{display_name, RawWorm};
use crate::neurons;

pub fn read(gcamp: &Path) -> Result<Vec<RawWorm>> {
    let name = display_name(gcamp);
    let Some(id) = name.strip_suffix("_gcamp.txt") else {
        bail!(
            "{}: Leifer files are named N_gcamp.txt (with N_labels.txt and N_t.txt beside it)",
            gcamp.display()
        );
    };
    let dir = gcamp.parent().unwrap_or(Path::new("."));
    let read = |file: String| -> Result<String> {
        let p = dir.join(&file);
        std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: cannot read {file} (each worm needs N_gcamp.txt, N_labels.txt and N_t.txt)",
                dir.display()
            )
        })
    };
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in read(format!("{id}_gcamp.txt"))?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = line
            .split_whitespace()
            .map(|v| if v.eq_ignore_ascii_case("nan") { Ok(f64::NAN) } else { v.parse::<f64>() })
            .collect::<Result<Vec<f64>, _>>()
            .with_context(|| {
                format!("{}: line {}: not a list of numbers", gcamp.display(), i + 1)
            })?;
        if let Some(first) = rows.first() {
            if first.len() != row.len() {
                bail!(
                    "{}: line {} has {} values, line 1 has {}",
                    gcamp.display(),
                    i + 1,
                    row.len(),
                    first.len()
                );
            }
        }
        rows.push(row);
    }
    let n_cols = rows.first().map_or(0, Vec::len);
    let time: Vec<f64> = read(format!("{id}_t.txt"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.trim()
                .parse::<f64>()
                .with_context(|| format!("{id}_t.txt line {}: not a number", i + 1))
        })
        .collect::<Result<_>>()?;
    let labels_text = read(format!("{id}_labels.txt"))?;
    let mut labels: Vec<Option<String>> =
        labels_text.lines().map(|l| side_ambiguous(l.trim())).collect();
    labels.resize(n_cols, None);
    if time.len() != rows.len() {
        bail!(
            "{}: {} time stamps in {id}_t.txt for {} rows of traces",
            gcamp.display(),
            time.len(),
            rows.len()
        );
    }
    Ok(vec![RawWorm {
        worm: format!("worm{id}"),
        source_file: name,
        values: rows.into_iter().flatten().collect(),
        n_cols,
        time,
        labels,
        ..Default::default()
    }])
}

/// "" → None; a canonical name stays; a name that is only canonical with L or R appended
/// becomes `NAME?`.
fn side_ambiguous(label: &str) -> Option<String> {
    if label.is_empty() {
        return None;
    }
    let norm = neurons::normalise(label);
    if neurons::index_of(&norm).is_none()
        && (neurons::index_of(&format!("{norm}L")).is_some()
            || neurons::index_of(&format!("{norm}R")).is_some())
    {
        return Some(format!("{norm}?"));
    }
    Some(norm)
}
