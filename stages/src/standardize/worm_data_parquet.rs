//! The study's own published pool as Parquet (Hugging Face dataset
//! `qsimeon/celegans_neural_data`, written by qsimeon/worm-data-preprocess's
//! `extra/neural_to_parquet.py`): one row per (worm, neuron), 12 source datasets.
//!
//! Columns read, and what each is checked against:
//! - `source_dataset` → the worm's `dataset`; `worm` (e.g. `worm0`, numbered within each
//!   source) → its id; (source_dataset, worm) identifies a recording.
//! - `neuron` → the label, mapped onto the 302 canonical names like every format's labels
//!   (neurons.rs); `slot` is not used: it indexes the successor's own neuron order, and a
//!   neuron is placed here by its name.
//! - `is_labeled_neuron`: rows that are false carry no identity and are skipped (counted as
//!   unidentified columns).
//! - `params.signal = "original"` (default): `original_calcium_data` with
//!   `original_time_in_seconds`, both checked to have `original_max_timesteps` entries;
//!   `"processed"`: `calcium_data` with `time_in_seconds` and `max_timesteps` (the
//!   successor's resampled, smoothed and normalised traces; `smooth_method`,
//!   `interpolate_method` and `normalization_method` go into the worm's `signal` note).
//!   Every row of one worm must have the same time vector.
//! - `raw_data_file` → `source_file`'s note (`source`).
//!
//! Only those columns are decoded (a projection), in batches of rows.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray, BooleanArray, Int64Array, ListArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{display_name, Params, RawWorm};

/// Which traces of the pool to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traces {
    Original,
    Processed,
}

impl Traces {
    pub fn parse(param: &str) -> Result<Traces, String> {
        match param {
            "auto" | "original" => Ok(Traces::Original),
            "processed" => Ok(Traces::Processed),
            other => Err(format!(
                "params.signal for worm-data-parquet must be \"original\" or \"processed\"; got {other:?}"
            )),
        }
    }

    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Traces::Original => {
                ("original_calcium_data", "original_time_in_seconds", "original_max_timesteps")
            }
            Traces::Processed => ("calcium_data", "time_in_seconds", "max_timesteps"),
        }
    }
}

/// One (source_dataset, worm) as it is gathered from its rows.
struct Gathered {
    dataset: String,
    worm: String,
    raw_file: String,
    methods: String,
    time: Vec<f64>,
    columns: Vec<Vec<f64>>,
    labels: Vec<Option<String>>,
    unlabelled_rows: usize,
}

pub fn read(path: &Path, p: &Params) -> Result<Vec<RawWorm>> {
    let traces = Traces::parse(&p.signal).map_err(anyhow::Error::msg)?;
    let (data_col, time_col, steps_col) = traces.columns();
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a Parquet file", path.display()))?;
    let mut wanted = vec!["source_dataset", "raw_data_file", "worm", "neuron", "is_labeled_neuron"];
    wanted.extend([data_col, time_col, steps_col]);
    if traces == Traces::Processed {
        wanted.extend(["smooth_method", "interpolate_method", "normalization_method"]);
    }
    let schema = builder.schema().clone();
    let mut roots = Vec::new();
    for name in &wanted {
        match schema.index_of(name) {
            Ok(i) => roots.push(i),
            Err(_) => bail!(
                "{}: no column {name:?}; a worm-data-parquet file (qsimeon/celegans_neural_data) has {}; its columns here: {}",
                path.display(),
                wanted.join(", "),
                schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    // Rows carry whole traces (thousands of values each): keep batches small.
    let reader = builder.with_projection(mask).with_batch_size(256).build()?;
    let mut worms: Vec<Gathered> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut row_number = 0usize;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: damaged Parquet data", path.display()))?;
        let text = |name: &str| -> Result<StringArray> {
            let c = cast(batch.column_by_name(name).expect("projected"), &DataType::Utf8)
                .with_context(|| format!("{}: column {name:?} is not text", path.display()))?;
            Ok(c.as_string::<i32>().clone())
        };
        let list = |name: &str| -> Result<ListArray> {
            let item = Field::new_list_field(DataType::Float64, true);
            let c =
                cast(batch.column_by_name(name).expect("projected"), &DataType::List(item.into()))
                    .with_context(|| {
                        format!("{}: column {name:?} is not a list of numbers", path.display())
                    })?;
            Ok(c.as_list::<i32>().clone())
        };
        let (datasets, files, worm_ids, neurons) =
            (text("source_dataset")?, text("raw_data_file")?, text("worm")?, text("neuron")?);
        let labelled =
            cast(batch.column_by_name("is_labeled_neuron").expect("projected"), &DataType::Boolean)
                .with_context(|| format!("{}: is_labeled_neuron is not boolean", path.display()))?;
        let labelled: &BooleanArray = labelled.as_boolean();
        let steps = cast(batch.column_by_name(steps_col).expect("projected"), &DataType::Int64)
            .with_context(|| format!("{}: {steps_col} is not an integer", path.display()))?;
        let steps: &Int64Array = steps.as_primitive();
        let (data, time) = (list(data_col)?, list(time_col)?);
        let methods = if traces == Traces::Processed {
            Some((
                text("smooth_method")?,
                text("interpolate_method")?,
                text("normalization_method")?,
            ))
        } else {
            None
        };
        for r in 0..batch.num_rows() {
            row_number += 1;
            let at = || {
                format!(
                    "{} row {row_number} ({} {})",
                    path.display(),
                    datasets.value(r),
                    worm_ids.value(r)
                )
            };
            let key = (datasets.value(r).to_string(), worm_ids.value(r).to_string());
            let i = *index.entry(key.clone()).or_insert_with(|| {
                worms.push(Gathered {
                    dataset: key.0.clone(),
                    worm: key.1.clone(),
                    raw_file: files.value(r).to_string(),
                    methods: methods.as_ref().map_or_else(String::new, |(s, i, n)| {
                        format!(
                            "smoothing {}, interpolation {}, normalisation {}",
                            s.value(r),
                            i.value(r),
                            n.value(r)
                        )
                    }),
                    time: Vec::new(),
                    columns: Vec::new(),
                    labels: Vec::new(),
                    unlabelled_rows: 0,
                });
                worms.len() - 1
            });
            let w = &mut worms[i];
            // One (dataset, worm) is one recording: rows from another raw file under the
            // same id are another worm, and merging them would mix two animals' neurons.
            if w.raw_file != files.value(r) {
                bail!(
                    "{}: worm {} of {} comes from two raw files, {} and {}; each recording needs its own (source_dataset, worm) — fix the file, or read the sources with separate standardize stages",
                    at(),
                    w.worm,
                    w.dataset,
                    w.raw_file,
                    files.value(r)
                );
            }
            if labelled.is_null(r) || !labelled.value(r) {
                w.unlabelled_rows += 1;
                continue;
            }
            let values = |l: &ListArray| -> Vec<f64> {
                if l.is_null(r) {
                    return Vec::new();
                }
                l.value(r)
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect()
            };
            let (trace, t) = (values(&data), values(&time));
            let n = steps.value(r);
            if trace.len() as i64 != n || t.len() as i64 != n {
                bail!("{}: {data_col} has {} values and {time_col} {}, but {steps_col} is {n}; the file is damaged or not the successor's layout", at(), trace.len(), t.len());
            }
            if w.columns.is_empty() {
                w.time = t;
            } else if w.time != t {
                bail!("{}: neuron {} has a different {time_col} from the worm's other neurons; one worm must share one time axis", at(), neurons.value(r));
            }
            w.columns.push(trace);
            w.labels.push(Some(neurons.value(r).to_string()));
        }
    }
    let source_name = display_name(path);
    Ok(worms
        .into_iter()
        .map(|w| {
            let n_steps = w.time.len();
            let values = (0..n_steps).flat_map(|t| w.columns.iter().map(move |c| c[t])).collect();
            let signal = match traces {
                Traces::Original => "original_calcium_data (as recorded)".to_string(),
                Traces::Processed => format!("calcium_data ({})", w.methods),
            };
            let unlabelled = w.unlabelled_rows;
            let n_cols = w.columns.len();
            let labels = w.labels;
            RawWorm {
                dataset: Some(w.dataset),
                worm: w.worm,
                source_file: source_name.clone(),
                values,
                n_cols,
                time: w.time,
                labels,
                signal,
                source: format!(
                    "worm-data-parquet, raw file {}{}",
                    w.raw_file,
                    if unlabelled > 0 {
                        format!(" ({unlabelled} unlabelled rows skipped)")
                    } else {
                        String::new()
                    }
                ),
                ..Default::default()
            }
        })
        .collect())
}
