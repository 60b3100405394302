//! Tables that index into recordings instead of copying them:
//!
//! `split.parquet` — one row per part of a worm: dataset, worm, n_steps, part ("train" |
//! "val" | "test"), start, end (time-step indices, end exclusive). A worm has one row per
//! part, or one per part and segment when the split works within segments.
//!
//! `windows.parquet` — one row per window: set ("train" | "val"), dataset, worm, start,
//! length (time steps, input window L plus the one-step target). The test part never gets
//! windows here: nothing that trains or selects a model reads it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;

use crate::parquet_io;

/// Which part of a recording a time step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Train,
    Val,
    Test,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Val, Part::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Val => "val",
            Part::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One worm's split: the time-step ranges (end exclusive) of each part, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    pub dataset: String,
    pub worm: String,
    pub n_steps: u64,
    pub ranges: Vec<(Part, u64, u64)>,
}

impl SplitRow {
    /// The ranges of `part`, in time order.
    pub fn ranges_of(&self, part: Part) -> Vec<(u64, u64)> {
        self.ranges.iter().filter(|r| r.0 == part).map(|r| (r.1, r.2)).collect()
    }

    /// Time steps in `part`.
    pub fn steps_of(&self, part: Part) -> u64 {
        self.ranges_of(part).iter().map(|(a, b)| b - a).sum()
    }

    /// Where `part` first begins.
    pub fn first_start(&self, part: Part) -> Option<u64> {
        self.ranges_of(part).first().map(|r| r.0)
    }
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

/// Every window of `len` steps inside one of `ranges` (each end exclusive), `stride` apart
/// from each range's start: where evaluate's forecasts start (torch/src/forecast.rs), and
/// what the cost model counts.
pub fn sliding_starts(ranges: &[(u64, u64)], len: u64, stride: u64) -> Vec<u64> {
    ranges
        .iter()
        .flat_map(|&(a, b)| (a..).step_by(stride as usize).take_while(move |s| s + len <= b))
        .collect()
}

pub fn write_split(path: &Path, rows: &[SplitRow], metadata: &parquet_io::Metadata) -> Result<()> {
    let flat: Vec<(&SplitRow, Part, u64, u64)> =
        rows.iter().flat_map(|r| r.ranges.iter().map(move |&(p, a, b)| (r, p, a, b))).collect();
    parquet_io::write_batch(
        path,
        RecordBatch::try_from_iter([
            ("dataset", strings(&flat, |r| &r.0.dataset)),
            ("worm", strings(&flat, |r| &r.0.worm)),
            ("n_steps", i64s(&flat, |r| r.0.n_steps)),
            ("part", strings(&flat, |r| r.1.as_str())),
            ("start", i64s(&flat, |r| r.2)),
            ("end", i64s(&flat, |r| r.3)),
        ])?,
        metadata,
    )
}

/// The split's worms in file order, each with its ranges.
pub fn read_split(path: &Path) -> Result<Vec<SplitRow>> {
    let mut out: Vec<SplitRow> = Vec::new();
    for b in parquet_io::read_batches(path)? {
        let s = |n: &str| col::<StringArray>(&b, n, path);
        let (ds, wm, part) = (s("dataset")?, s("worm")?, s("part")?);
        let names = ["n_steps", "start", "end"];
        let cols =
            names.iter().map(|n| col::<Int64Array>(&b, n, path)).collect::<Result<Vec<_>>>()?;
        for r in 0..b.num_rows() {
            let mut v = [0u64; 3];
            for (k, c) in cols.iter().enumerate() {
                v[k] = index(c, r, names[k], path)?;
            }
            let p = Part::parse(part.value(r)).with_context(|| {
                format!(
                    "{}: row {r} has part {:?}; expected train, val or test",
                    path.display(),
                    part.value(r)
                )
            })?;
            let (d, w) = (ds.value(r), wm.value(r));
            match out.last_mut() {
                Some(last) if last.dataset == d && last.worm == w => {
                    last.ranges.push((p, v[1], v[2]))
                }
                _ => out.push(SplitRow {
                    dataset: d.into(),
                    worm: w.into(),
                    n_steps: v[0],
                    ranges: vec![(p, v[1], v[2])],
                }),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_fit_inside_each_range() {
        assert_eq!(sliding_starts(&[(0, 10), (20, 25)], 5, 2), vec![0, 2, 4, 20]);
        assert!(sliding_starts(&[(0, 4)], 5, 1).is_empty());
    }
}
