//! Sweep tables, built with polars: one row per node, its matrix axes and chosen params as
//! columns beside its one-row summary (`eval.parquet`, `model.parquet` or
//! `sample.parquet`) and, for evaluations, its losses per source dataset. What
//! `wormflow compare` prints and the report's tables show come from here.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use serde_json::Value;

use crate::summaries::DatasetLoss;

/// The summaries a node may have, in the order they are looked for.
pub const SUMMARY_FILES: [&str; 3] = ["eval.parquet", "model.parquet", "sample.parquet"];

/// One node as a sweep table sees it.
#[derive(Debug, Clone)]
pub struct SweepNode {
    pub stage: String,
    pub node: String,
    /// "fresh" or "stale" (an older result than the pipeline asks for).
    pub state: String,
    pub matrix: BTreeMap<String, Value>,
    /// Chosen params by name (`params.<name>` columns); missing ones are null.
    pub params: Vec<(String, Value)>,
    /// Output file name → where its bytes are.
    pub files: BTreeMap<String, PathBuf>,
    /// Where the node's time went, from its record: `seconds` (the whole node) and
    /// `seconds.<phase>` for each phase its kind measured (`wormflow_api::PHASES`).
    pub timing: Vec<(String, f64)>,
}

fn value_column(name: &str, v: &Value) -> Column {
    let name = PlSmallStr::from(name);
    match v {
        Value::Bool(b) => Column::new(name, [*b]),
        Value::Number(n) if n.is_i64() => Column::new(name, [n.as_i64().expect("checked")]),
        Value::Number(n) => Column::new(name, [n.as_f64().unwrap_or(f64::NAN)]),
        Value::String(s) => Column::new(name, [s.as_str()]),
        Value::Null => Column::full_null(name, 1, &DataType::String),
        other => Column::new(name, [other.to_string().as_str()]),
    }
}

fn read_parquet(path: &std::path::Path) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| anyhow::anyhow!("{} is not a readable Parquet table: {e}", path.display()))
}

/// One node's row: node, axes, params, then its summary's columns (those not already
/// given by an axis), then `val_loss[<dataset>]` and `ratio[<dataset>]` per source.
fn node_row(n: &SweepNode) -> Result<DataFrame> {
    let mut columns = vec![
        Column::new("node".into(), [n.node.as_str()]),
        Column::new("state".into(), [n.state.as_str()]),
    ];
    columns.extend(n.matrix.iter().map(|(axis, v)| value_column(axis, v)));
    columns.extend(n.params.iter().map(|(name, v)| value_column(&format!("params.{name}"), v)));
    let taken: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
    if let Some(path) = SUMMARY_FILES.iter().find_map(|f| n.files.get(*f)) {
        let summary = read_parquet(path)?;
        if summary.height() != 1 {
            bail!("{}: {} should hold one row, not {}", n.node, path.display(), summary.height());
        }
        columns.extend(
            summary
                .columns()
                .iter()
                .filter(|c| !taken.iter().any(|t| t == c.name().as_str()))
                .cloned(),
        );
    }
    if let Some(path) = n.files.get("by_dataset.parquet") {
        for d in crate::parquet_io::read_rows::<DatasetLoss>(path)? {
            columns.push(Column::new(format!("val_loss[{}]", d.dataset).into(), [d.val_loss]));
            columns.push(Column::new(format!("ratio[{}]", d.dataset).into(), [d.ratio]));
        }
    }
    columns.extend(n.timing.iter().map(|(name, s)| Column::new(name.into(), [*s])));
    Ok(DataFrame::new(1, columns)?)
}

/// The sweep table of `nodes`, in their order; columns a node lacks are null.
pub fn table(nodes: &[SweepNode]) -> Result<DataFrame> {
    if nodes.is_empty() {
        return Ok(DataFrame::empty());
    }
    // Hundreds of small files: read them on all cores (order is kept).
    use rayon::prelude::*;
    let rows = nodes.par_iter().map(node_row).collect::<Result<Vec<_>>>()?;
    Ok(polars::functions::concat_df_diagonal(&rows)?)
}

/// Keep the rows where `filter` (a SQL expression, see [`parse_filter`]) holds, then sort
/// by the named columns (a leading `-` sorts descending).
pub fn select(df: DataFrame, filter: Option<&str>, sort: &[String]) -> Result<DataFrame> {
    let columns: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
    let mut lazy = df.clone().lazy();
    if let Some(f) = filter {
        lazy = lazy.filter(parse_filter(f, &columns)?);
    }
    if !sort.is_empty() {
        let names: Vec<&str> = sort.iter().map(|s| s.trim_start_matches('-')).collect();
        if let Some(missing) = names.iter().find(|n| !columns.contains(n)) {
            bail!(
                "--sort {missing}: no such column in the sweep table; its columns: {}",
                columns.join(", ")
            );
        }
        let descending: Vec<bool> = sort.iter().map(|s| s.starts_with('-')).collect();
        lazy = lazy.sort(
            names.into_iter().map(PlSmallStr::from).collect::<Vec<_>>(),
            SortMultipleOptions::default()
                .with_order_descending_multi(descending)
                .with_nulls_last(true)
                .with_maintain_order(true),
        );
    }
    lazy.collect().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A `--where` filter over the table's `columns`: a SQL expression as polars SQL reads it
/// (`ratio < 1 AND model = 'lstm'`), where `==` also means equality and a double-quoted
/// word is a string, as a shell user types it (`model == "lstm"`); column names with
/// brackets go in backticks. Only a row filter gets through (see `sweep_filter`).
pub fn parse_filter(text: &str, columns: &[&str]) -> Result<Expr> {
    let sql = requote(text);
    crate::sweep_filter::check(&sql, text, columns).map_err(anyhow::Error::msg)?;
    polars::sql::sql_expr(&sql).map_err(|e| anyhow::anyhow!("--where {text:?} is not an expression polars SQL reads ({e}); e.g. --where 'model == \"lstm\" and ratio < 1'"))
}

/// `"x"` → `'x'` outside single-quoted strings (SQL would read `"x"` as a column name).
fn requote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_single = false;
    for c in text.chars() {
        match c {
            '\'' => {
                in_single = !in_single;
                out.push(c);
            }
            '"' if !in_single => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

/// Longest text cell on a terminal (a `learning_note` is a paragraph); CSV, JSON and
/// Parquet keep every character.
const MAX_TEXT_CELL: usize = 48;

/// The table as aligned text: numbers right-aligned (floats to 4 significant digits),
/// text left-aligned and cut at MAX_TEXT_CELL characters with "…", nulls blank.
pub fn to_text(df: &DataFrame) -> String {
    let columns = df.columns();
    let mut cells: Vec<Vec<String>> = vec![columns.iter().map(|c| c.name().to_string()).collect()];
    let shorten = |s: String| {
        // A tab or newline inside a value would break the table's rows: shown escaped.
        let s: String =
            if s.chars().any(char::is_control) { s.escape_debug().collect() } else { s };
        if s.chars().count() > MAX_TEXT_CELL {
            s.chars().take(MAX_TEXT_CELL - 1).chain(['…']).collect()
        } else {
            s
        }
    };
    for r in 0..df.height() {
        cells.push(
            columns.iter().map(|c| shorten(cell(&c.get(r).unwrap_or(AnyValue::Null)))).collect(),
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|k| cells.iter().map(|row| row[k].chars().count()).max().unwrap_or(0))
        .collect();
    let numeric: Vec<bool> = columns.iter().map(|c| c.dtype().is_primitive_numeric()).collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(k, v)| {
                if numeric[k] {
                    format!("{v:>w$}", w = widths[k])
                } else {
                    format!("{v:<w$}", w = widths[k])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::Float64(x) => float_cell(*x),
        AnyValue::Float32(x) => float_cell(*x as f64),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// The named columns of every row as text (as [`to_text`] formats cells; a column the
/// table lacks is blank).
pub fn text_rows(df: &DataFrame, columns: &[&str]) -> Result<Vec<Vec<String>>> {
    let cols: Vec<Option<&Column>> = columns.iter().map(|c| df.column(c).ok()).collect();
    Ok((0..df.height())
        .map(|r| {
            cols.iter()
                .map(|c| c.map_or_else(String::new, |c| cell(&c.get(r).unwrap_or(AnyValue::Null))))
                .collect()
        })
        .collect())
}

/// Per dataset, the `n` neuron classes with the highest and the `n` with the lowest mean
/// variance explained (over the worms that recorded them; left and right of one worm
/// count as two values): rows of dataset, rank ("most 1", …, "least 1"), class, worms,
/// variance explained, the Baseline's, and the mean MSE / the Baseline's MSE.
pub fn neuron_classes(
    rows: &[crate::summaries::NeuronError],
    n: usize,
) -> Result<Vec<Vec<String>>> {
    let df = df!(
        "dataset" => rows.iter().map(|r| r.dataset.as_str()).collect::<Vec<_>>(),
        "worm" => rows.iter().map(|r| r.worm.as_str()).collect::<Vec<_>>(),
        "class" => rows.iter().map(|r| r.class.as_str()).collect::<Vec<_>>(),
        "ve" => rows.iter().map(|r| r.variance_explained).collect::<Vec<_>>(),
        "baseline_ve" => rows.iter().map(|r| r.baseline_variance_explained).collect::<Vec<_>>(),
        "ratio" => rows.iter().map(|r| r.mse / r.baseline_mse).collect::<Vec<_>>(),
    )?;
    let ranked = df
        .lazy()
        .filter(col("ve").is_finite())
        .group_by([col("dataset"), col("class")])
        .agg([
            col("worm").n_unique().alias("worms"),
            col("ve").mean(),
            col("baseline_ve").mean(),
            col("ratio").mean(),
        ])
        .sort_by_exprs(
            [col("dataset"), col("ve"), col("class")],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .collect()?;
    let text = text_rows(&ranked, &["dataset", "class", "worms", "ve", "baseline_ve", "ratio"])?;
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = (start..text.len()).find(|&i| text[i][0] != text[start][0]).unwrap_or(text.len());
        let group = &text[start..end];
        let row = |rank: String, r: &Vec<String>| [&r[..1], &[rank][..], &r[1..]].concat();
        if group.len() <= 2 * n {
            out.extend(group.iter().enumerate().map(|(i, r)| row(format!("{}", i + 1), r)));
        } else {
            out.extend(
                group[..n].iter().enumerate().map(|(i, r)| row(format!("most {}", i + 1), r)),
            );
            out.extend(
                group[group.len() - n..]
                    .iter()
                    .enumerate()
                    .map(|(i, r)| row(format!("least {}", n - i), r)),
            );
        }
        start = end;
    }
    Ok(out)
}

/// 4 significant digits (losses: 0.03612), or the number as written when that is
/// shorter (a learning rate of 0.001, not 0.001000).
fn float_cell(x: f64) -> String {
    let (short, sig) = (x.to_string(), crate::report::fmt_sig(x, 4));
    if short.len() <= sig.len() {
        short
    } else {
        sig
    }
}

/// Output formats of a sweep table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Json,
    Parquet,
}

/// Write the table in `format` (Parquet is binary: give a file, not a terminal).
pub fn write(df: &mut DataFrame, format: Format, out: &mut dyn std::io::Write) -> Result<()> {
    match format {
        Format::Text => out.write_all(to_text(df).as_bytes())?,
        Format::Csv => CsvWriter::new(out).finish(df)?,
        Format::Json => JsonWriter::new(out).with_json_format(JsonFormat::Json).finish(df)?,
        Format::Parquet => {
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(df)?;
            out.write_all(&buf)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_quotes_are_strings_and_double_equals_is_equality() {
        let df = df!("model" => ["lstm", "ctrnn", "lstm"], "ratio" => [0.9, 1.1, 1.2]).unwrap();
        let kept = select(df.clone(), Some("model == \"lstm\" and ratio < 1"), &[]).unwrap();
        assert_eq!(kept.height(), 1);
        let sorted = select(df, None, &["-ratio".into()]).unwrap();
        assert_eq!(sorted.column("ratio").unwrap().f64().unwrap().get(0), Some(1.2));
        assert!(parse_filter("model ==", &["model"]).is_err());
        let e = select(df!("model" => ["lstm"]).unwrap(), None, &["-nosuch".into()]).unwrap_err();
        assert!(e.to_string().contains("--sort nosuch: no such column"), "{e}");
    }
}
