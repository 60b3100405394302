//! Tables that index into recordings instead of copying them:
//!
//! `split.parquet` — one row per worm: dataset, worm, n_steps, train_start, train_end,
//! val_start, val_end (time-step indices, end exclusive).
//!
//! `windows.parquet` — one row per window: set ("train" | "val"), dataset, worm, start,
//! length (time steps, input window L plus the one-step target).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;

use crate::parquet_io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    pub dataset: String,
    pub worm: String,
    pub n_steps: u64,
    pub train: (u64, u64),
    pub val: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub set: String,
    pub dataset: String,
    pub worm: String,
    pub start: u64,
    pub length: u64,
}

fn strings<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> &'a str) -> ArrayRef {
    Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
}

/// Indices are stored as signed Int64 (see parquet_io): `start - 1` must not wrap for a
/// pandas or polars user.
fn i64s<T>(rows: &[T], f: impl Fn(&T) -> u64) -> ArrayRef {
    Arc::new(Int64Array::from(rows.iter().map(|r| f(r) as i64).collect::<Vec<_>>()))
}

fn index(a: &Int64Array, r: usize, name: &str, path: &Path) -> Result<u64> {
    u64::try_from(a.value(r))
        .ok()
        .with_context(|| format!("{}: row {r} has a negative {name}", path.display()))
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| format!("{}: missing or mistyped column {name:?}", path.display()))
}

pub fn write_split(path: &Path, rows: &[SplitRow], metadata: &parquet_io::Metadata) -> Result<()> {
    parquet_io::write_batch(
        path,
        RecordBatch::try_from_iter([
            ("dataset", strings(rows, |r| &r.dataset)),
            ("worm", strings(rows, |r| &r.worm)),
            ("n_steps", i64s(rows, |r| r.n_steps)),
            ("train_start", i64s(rows, |r| r.train.0)),
            ("train_end", i64s(rows, |r| r.train.1)),
            ("val_start", i64s(rows, |r| r.val.0)),
            ("val_end", i64s(rows, |r| r.val.1)),
        ])?,
        metadata,
    )
}

pub fn read_split(path: &Path) -> Result<Vec<SplitRow>> {
    let mut out = Vec::new();
    for b in parquet_io::read_batches(path)? {
        let (ds, wm) =
            (col::<StringArray>(&b, "dataset", path)?, col::<StringArray>(&b, "worm", path)?);
        let names = ["n_steps", "train_start", "train_end", "val_start", "val_end"];
        let cols =
            names.iter().map(|n| col::<Int64Array>(&b, n, path)).collect::<Result<Vec<_>>>()?;
        for r in 0..b.num_rows() {
            let mut v = [0u64; 5];
            for (k, c) in cols.iter().enumerate() {
                v[k] = index(c, r, names[k], path)?;
            }
            out.push(SplitRow {
                dataset: ds.value(r).into(),
                worm: wm.value(r).into(),
                n_steps: v[0],
                train: (v[1], v[2]),
                val: (v[3], v[4]),
            });
        }
    }
    Ok(out)
}

pub fn write_windows(path: &Path, rows: &[Window], metadata: &parquet_io::Metadata) -> Result<()> {
    parquet_io::write_batch(
        path,
        RecordBatch::try_from_iter([
            ("set", strings(rows, |r| &r.set)),
            ("dataset", strings(rows, |r| &r.dataset)),
            ("worm", strings(rows, |r| &r.worm)),
            ("start", i64s(rows, |r| r.start)),
            ("length", i64s(rows, |r| r.length)),
        ])?,
        metadata,
    )
}

pub fn read_windows(path: &Path) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    for b in parquet_io::read_batches(path)? {
        let s = |n: &str| col::<StringArray>(&b, n, path);
        let (set, ds, wm) = (s("set")?, s("dataset")?, s("worm")?);
        let (start, len) =
            (col::<Int64Array>(&b, "start", path)?, col::<Int64Array>(&b, "length", path)?);
        for r in 0..b.num_rows() {
            out.push(Window {
                set: set.value(r).into(),
                dataset: ds.value(r).into(),
                worm: wm.value(r).into(),
                start: index(start, r, "start", path)?,
                length: index(len, r, "length", path)?,
            });
        }
    }
    Ok(out)
}
