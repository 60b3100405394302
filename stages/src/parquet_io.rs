//! Writing and reading the Parquet tables every stage produces: one set of writer
//! properties (Snappy, a fixed `created_by` so bytes do not depend on library versions
//! beyond the format) and errors that name the file.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

pub fn props() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_created_by("wormflow".to_string()).build()
}

/// A writer for `path`; each `flush` ends a row group.
pub fn writer(path: &Path, schema: arrow::datatypes::SchemaRef) -> Result<ArrowWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(ArrowWriter::try_new(file, schema, Some(props()))?)
}

/// Write one record batch as a whole file.
pub fn write_batch(path: &Path, batch: RecordBatch) -> Result<()> {
    let mut w = writer(path, batch.schema())?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
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
