//! Writing and reading the Parquet tables every stage produces: one set of writer
//! properties (Snappy, a fixed `created_by` so bytes do not depend on library versions
//! beyond the format), the node's origin as key-value metadata in every file, typed rows
//! for small tables, and errors that name the file.
//!
//! Conventions every table follows (checked by tests/formats.rs): indices and counts are
//! signed Int64 (pandas and polars users subtract them), strings are Utf8, and a column has
//! the same type and nullability in every node that writes it.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_arrow::schema::{SchemaLike, TracingOptions};

/// The key-value pairs a file carries (`StageContext::file_metadata`).
pub type Metadata = [(String, String)];

pub fn props(metadata: &Metadata) -> WriterProperties {
    let kv = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("wormflow".to_string())
        .set_key_value_metadata(Some(kv))
        .build()
}

/// A writer for `path`; each `flush` ends a row group.
pub fn writer(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    metadata: &Metadata,
) -> Result<ArrowWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(ArrowWriter::try_new(file, schema, Some(props(metadata)))?)
}

/// Write one record batch as a whole file.
pub fn write_batch(path: &Path, batch: RecordBatch, metadata: &Metadata) -> Result<()> {
    let mut w = writer(path, batch.schema(), metadata)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// The Arrow fields of a row type: strings and enums without data (`Learning`) as Utf8,
/// integers as declared (use i64).
pub fn fields_of<T: Serialize + DeserializeOwned>() -> Result<Vec<FieldRef>> {
    let options =
        TracingOptions::default().strings_as_large_utf8(false).enums_without_data_as_strings(true);
    let traced = Vec::<FieldRef>::from_type::<T>(options)?;
    // Such enums trace as dictionaries; plain strings read the same in every tool and
    // concatenate across files without unifying dictionaries.
    Ok(traced
        .into_iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, v) if **v == DataType::Utf8 => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8))
            }
            _ => f,
        })
        .collect())
}

/// Write typed rows as a table whose columns are the struct's fields.
pub fn write_rows<T: Serialize + DeserializeOwned>(
    path: &Path,
    rows: &[T],
    metadata: &Metadata,
) -> Result<()> {
    let batch = serde_arrow::to_record_batch(&fields_of::<T>()?, &rows)
        .with_context(|| format!("cannot lay out {} as a table", path.display()))?;
    write_batch(path, batch, metadata)
}

/// Read a table written by [`write_rows`] (or any table with those columns) back as rows.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for batch in read_batches(path)? {
        let part: Vec<T> = serde_arrow::from_record_batch(&batch)
            .with_context(|| format!("{} does not have the expected columns", path.display()))?;
        rows.extend(part);
    }
    Ok(rows)
}

/// The single row of a one-row summary table.
pub fn read_row<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let mut rows = read_rows::<T>(path)?;
    if rows.len() != 1 {
        bail!("{} should hold one row, not {}", path.display(), rows.len());
    }
    Ok(rows.remove(0))
}

/// Every record batch of a file.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?
        .with_batch_size(65536)
        .build()?;
    reader.collect::<Result<Vec<_>, _>>().with_context(|| format!("cannot read {}", path.display()))
}
