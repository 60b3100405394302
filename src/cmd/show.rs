//! `wormflow show NODE`: what a node produced, how, and a peek into its tables.

use std::fs::File;
use std::process::ExitCode;

use anyhow::{bail, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::status::Resolver;
use crate::store::{ActionRecord, Store};
use crate::workspace::Planned;

/// Columns shown per Parquet table; wide tables (302 neurons) are cut with a note.
const MAX_COLUMNS: usize = 8;

pub fn show(p: &Planned, node: &str, rows: usize, json: bool) -> Result<ExitCode> {
    let Some(i) = p.graph.lookup(node) else {
        bail!("no node {node:?}; `wormflow dag` lists the nodes");
    };
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let states = resolver.states(Some(&p.graph.with_ancestors(&[i])));
    let Some((action, current)) = resolver.current_or_latest(i, states[i].as_ref()) else {
        bail!("{node} has never been built; run `wormflow run {node}`");
    };
    if json {
        let mut doc = serde_json::to_value(&action)?;
        if let Some(fields) = doc.as_object_mut() {
            fields.insert("current".into(), current.into());
        }
        println!("{doc}");
    } else {
        print_action(&store, &action, current, rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_action(store: &Store, a: &ActionRecord, current: bool, rows: usize) {
    println!("node     {}", a.node);
    println!(
        "key      {}{}",
        a.key,
        if current { "" } else { "  (STALE: an older result; the pipeline changed since)" }
    );
    println!("kind     {} (version {})", a.kind, a.stage_version);
    println!("params   {}", crate::hash::canonical_json(&a.params));
    for inp in &a.inputs {
        println!("input    {} ({})", inp.node, inp.output_hash.short());
    }
    for d in &a.deps {
        println!("file     {} ({})", d.path, d.hash.short());
    }
    for (k, v) in &a.provenance {
        println!("{:<8} {}", k, v);
    }
    println!(
        "outputs  ({} files, {} bytes)",
        a.outputs.len(),
        a.outputs.iter().map(|o| o.size).sum::<u64>()
    );
    for o in &a.outputs {
        println!("  {:<40} {:>12}  {}", o.path, human_size(o.size), o.hash.short());
    }
    for o in a.outputs.iter().filter(|o| o.path.ends_with(".parquet")) {
        println!("\n{}:", o.path);
        match preview_parquet(&store.object_path(&o.hash), rows) {
            Ok(text) => println!("{text}"),
            Err(e) => println!("  (cannot read: {e})"),
        }
    }
}

fn preview_parquet(path: &std::path::Path, rows: usize) -> Result<String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let total_rows = builder.metadata().file_metadata().num_rows();
    let schema = builder.schema().clone();
    let n_cols = schema.fields().len();
    let shown = n_cols.min(MAX_COLUMNS);
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), 0..shown);
    let reader =
        builder.with_projection(mask).with_batch_size(rows.max(1)).with_limit(rows).build()?;
    let batches: Vec<_> = reader.collect::<Result<_, _>>()?;
    let mut text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    text.push_str(&format!("\n{total_rows} rows × {n_cols} columns"));
    if n_cols > shown {
        text.push_str(&format!(" ({} more columns not shown)", n_cols - shown));
    }
    Ok(text)
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
