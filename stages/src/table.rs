//! The standard recording format, as Parquet:
//!
//! `recordings.parquet` — one row per (worm, time step): `dataset` utf8, `worm` utf8,
//! `t` f64 (seconds from the start), then one nullable Float32 column per canonical neuron
//! (neurons.csv order); a neuron not recorded in a worm is null in all its rows. One row
//! group per worm.
//!
//! `worms.parquet` — one row per worm: dataset, worm, n_steps, dt (median, s), n_labelled,
//! labelled (list<utf8>), source_file, citation, time_is_estimated, and counts of what was
//! dropped or masked: unknown_labels, duplicate_labels, ambiguous_resolved,
//! ambiguous_dropped, masked_neurons; what preprocess did to the time axis (resampling); and
//! what the file said: signal (what the traces are, where they were read), source,
//! time_note (how the time axis was obtained).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, ListBuilder,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::neurons::{self, N_NEURONS};
use crate::parquet_io;

/// What is known about a worm besides its traces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WormInfo {
    pub source_file: String,
    pub citation: String,
    pub time_is_estimated: bool,
    pub unknown_labels: u32,
    pub duplicate_labels: u32,
    pub ambiguous_resolved: u32,
    pub ambiguous_dropped: u32,
    pub masked_neurons: u32,
    /// What preprocess did to the time axis, in words ("" before preprocessing).
    pub resampling: String,
    /// What the traces are and where they were read (e.g. "ΔF/F: processing/…").
    pub signal: String,
    /// Where the recording came from, as its file says.
    pub source: String,
    /// How the time axis was obtained, when it is worth saying (estimated, from a rate).
    pub time_note: String,
}

/// One worm's recording in the standard layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Worm {
    pub dataset: String,
    pub worm: String,
    /// Seconds from the start of the recording, increasing.
    pub t: Vec<f64>,
    /// One entry per canonical neuron: its trace (same length as `t`) or None.
    pub traces: Vec<Option<Vec<f32>>>,
    pub info: WormInfo,
}

impl Worm {
    pub fn n_steps(&self) -> usize {
        self.t.len()
    }

    pub fn labelled(&self) -> Vec<&str> {
        (0..N_NEURONS)
            .filter(|&i| self.traces[i].is_some())
            .map(|i| neurons::names()[i].as_str())
            .collect()
    }

    /// Median time step in seconds (NaN for fewer than two steps).
    pub fn median_dt(&self) -> f64 {
        let mut d: Vec<f64> = self.t.windows(2).map(|w| w[1] - w[0]).collect();
        if d.is_empty() {
            return f64::NAN;
        }
        d.sort_by(|a, b| a.total_cmp(b));
        let m = d.len() / 2;
        if d.len() % 2 == 1 {
            d[m]
        } else {
            0.5 * (d[m - 1] + d[m])
        }
    }
}

fn recording_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("worm", DataType::Utf8, false),
        Field::new("t", DataType::Float64, false),
    ];
    fields.extend(neurons::names().iter().map(|n| Field::new(n, DataType::Float32, true)));
    Arc::new(Schema::new(fields))
}

/// Write `recordings.parquet`: one row group per worm.
pub fn write_recordings(
    path: &Path,
    worms: &[Worm],
    metadata: &parquet_io::Metadata,
) -> Result<()> {
    let schema = recording_schema();
    let mut w = parquet_io::writer(path, schema.clone(), metadata)?;
    for worm in worms {
        let n = worm.n_steps();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![worm.dataset.as_str(); n])),
            Arc::new(StringArray::from(vec![worm.worm.as_str(); n])),
            Arc::new(Float64Array::from(worm.t.clone())),
        ];
        for trace in &worm.traces {
            cols.push(match trace {
                Some(v) => Arc::new(Float32Array::from(v.clone())),
                None => Arc::new(Float32Array::new_null(n)),
            });
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
        w.flush()?;
    }
    w.close()?;
    Ok(())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .with_context(|| {
            format!(
                "{}: no column {name:?}; is it a wormflow recordings/worms table?",
                path.display()
            )
        })?
        .as_any()
        .downcast_ref::<T>()
        .with_context(|| format!("{}: column {name:?} has the wrong type", path.display()))
}

/// Read `recordings.parquet` (and the matching `worms.parquet` beside it, if present).
pub fn read_recordings(dir: &Path) -> Result<Vec<Worm>> {
    let path = dir.join("recordings.parquet");
    let infos = read_worm_infos(&dir.join("worms.parquet")).unwrap_or_default();
    let mut worms: Vec<Worm> = Vec::new();
    for batch in parquet_io::read_batches(&path)? {
        let dataset = column::<StringArray>(&batch, "dataset", &path)?;
        let worm = column::<StringArray>(&batch, "worm", &path)?;
        let t = column::<Float64Array>(&batch, "t", &path)?;
        let neuron_cols: Vec<&Float32Array> = neurons::names()
            .iter()
            .map(|n| column::<Float32Array>(&batch, n, &path))
            .collect::<Result<_>>()?;
        let mut start = 0;
        while start < batch.num_rows() {
            let (ds, wm) = (dataset.value(start), worm.value(start));
            let mut end = start + 1;
            while end < batch.num_rows() && dataset.value(end) == ds && worm.value(end) == wm {
                end += 1;
            }
            let recorded: Vec<bool> = neuron_cols
                .iter()
                .map(|c| c.null_count() == 0 || (start..end).any(|r| c.is_valid(r)))
                .collect();
            let continues = worms.last().is_some_and(|w| w.dataset == ds && w.worm == wm);
            if !continues {
                let info = infos
                    .iter()
                    .find(|(d, w, _)| d == ds && w == wm)
                    .map(|(_, _, i)| i.clone())
                    .unwrap_or_default();
                let traces = recorded.iter().map(|&r| r.then(Vec::new)).collect();
                worms.push(Worm {
                    dataset: ds.to_string(),
                    worm: wm.to_string(),
                    t: Vec::new(),
                    traces,
                    info,
                });
            }
            let w = worms.last_mut().expect("pushed above");
            w.t.extend_from_slice(&t.values()[start..end]);
            for (slot, col) in neuron_cols.iter().enumerate() {
                match (&mut w.traces[slot], recorded[slot]) {
                    (Some(v), true) => v.extend_from_slice(&col.values()[start..end]),
                    (Some(_), false) | (None, true) => {
                        bail!(
                            "{}: worm {wm}, neuron {}: recorded in some rows and not others",
                            path.display(),
                            neurons::names()[slot]
                        )
                    }
                    (None, false) => {}
                }
            }
            start = end;
        }
    }
    Ok(worms)
}

/// Write `worms.parquet`.
pub fn write_worms(path: &Path, worms: &[Worm], metadata: &parquet_io::Metadata) -> Result<()> {
    let mut labelled = ListBuilder::new(StringBuilder::new());
    for w in worms {
        for name in w.labelled() {
            labelled.values().append_value(name);
        }
        labelled.append(true);
    }
    // Counts as signed Int64, as in every table (see parquet_io).
    let counts = |f: fn(&WormInfo) -> u32| {
        Arc::new(Int64Array::from(worms.iter().map(|w| f(&w.info) as i64).collect::<Vec<_>>()))
            as ArrayRef
    };
    let strs = |f: fn(&Worm) -> &str| {
        Arc::new(StringArray::from(worms.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let batch = RecordBatch::try_from_iter([
        ("dataset", strs(|w| &w.dataset)),
        ("worm", strs(|w| &w.worm)),
        (
            "n_steps",
            Arc::new(Int64Array::from(worms.iter().map(|w| w.n_steps() as i64).collect::<Vec<_>>()))
                as ArrayRef,
        ),
        (
            "dt",
            Arc::new(Float64Array::from(worms.iter().map(Worm::median_dt).collect::<Vec<_>>()))
                as ArrayRef,
        ),
        (
            "n_labelled",
            Arc::new(Int64Array::from(
                worms.iter().map(|w| w.labelled().len() as i64).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        ("labelled", Arc::new(labelled.finish()) as ArrayRef),
        ("source_file", strs(|w| &w.info.source_file)),
        ("citation", strs(|w| &w.info.citation)),
        (
            "time_is_estimated",
            Arc::new(BooleanArray::from(
                worms.iter().map(|w| w.info.time_is_estimated).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        ("unknown_labels", counts(|i| i.unknown_labels)),
        ("duplicate_labels", counts(|i| i.duplicate_labels)),
        ("ambiguous_resolved", counts(|i| i.ambiguous_resolved)),
        ("ambiguous_dropped", counts(|i| i.ambiguous_dropped)),
        ("masked_neurons", counts(|i| i.masked_neurons)),
        ("resampling", strs(|w| &w.info.resampling)),
        ("signal", strs(|w| &w.info.signal)),
        ("source", strs(|w| &w.info.source)),
        ("time_note", strs(|w| &w.info.time_note)),
    ])?;
    parquet_io::write_batch(path, batch, metadata)
}

/// (dataset, worm, info) rows of a `worms.parquet`.
pub fn read_worm_infos(path: &Path) -> Result<Vec<(String, String, WormInfo)>> {
    let mut out = Vec::new();
    for batch in parquet_io::read_batches(path)? {
        let ds = column::<StringArray>(&batch, "dataset", path)?;
        let wm = column::<StringArray>(&batch, "worm", path)?;
        let src = column::<StringArray>(&batch, "source_file", path)?;
        let cit = column::<StringArray>(&batch, "citation", path)?;
        let est = column::<BooleanArray>(&batch, "time_is_estimated", path)?;
        let u = |name: &str| column::<Int64Array>(&batch, name, path);
        let (unk, dup, ares, adrop, masked) = (
            u("unknown_labels")?,
            u("duplicate_labels")?,
            u("ambiguous_resolved")?,
            u("ambiguous_dropped")?,
            u("masked_neurons")?,
        );
        // Tables written by older versions lack the later text columns.
        let optional = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        };
        let text = |c: &Option<StringArray>, r: usize| {
            c.as_ref().map_or_else(String::new, |c| c.value(r).to_string())
        };
        let (resampling, signal, source, time_note) =
            (optional("resampling"), optional("signal"), optional("source"), optional("time_note"));
        for r in 0..batch.num_rows() {
            out.push((
                ds.value(r).to_string(),
                wm.value(r).to_string(),
                WormInfo {
                    source_file: src.value(r).to_string(),
                    citation: cit.value(r).to_string(),
                    time_is_estimated: est.value(r),
                    unknown_labels: unk.value(r) as u32,
                    duplicate_labels: dup.value(r) as u32,
                    ambiguous_resolved: ares.value(r) as u32,
                    ambiguous_dropped: adrop.value(r) as u32,
                    masked_neurons: masked.value(r) as u32,
                    resampling: text(&resampling, r),
                    signal: text(&signal, r),
                    source: text(&source, r),
                    time_note: text(&time_note, r),
                },
            ));
        }
    }
    Ok(out)
}

/// Write both tables of a set of worms into `dir`.
pub fn write_dataset(dir: &Path, worms: &[Worm], metadata: &parquet_io::Metadata) -> Result<()> {
    write_recordings(&dir.join("recordings.parquet"), worms, metadata)?;
    write_worms(&dir.join("worms.parquet"), worms, metadata)
}
