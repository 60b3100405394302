//! `wormflow compare STAGE…` and `wormflow diff NODE NODE`: a sweep as a table and what
//! sets two nodes apart. The engine finds each node's stored result; the table itself is
//! built with polars by `wormflow_stages::sweep` (the report's tables use the same code).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use wormflow_stages::sweep::{self, Format, SweepNode};

use crate::status::Resolver;
use crate::store::{ActionRecord, Store};
use crate::workspace::Planned;

/// What `compare` was asked for.
pub struct CompareArgs<'a> {
    pub stages: &'a [String],
    pub params: &'a [String],
    pub sort: &'a [String],
    pub filter: Option<&'a str>,
    pub format: Format,
    /// Where the Parquet table goes (required for Format::Parquet).
    pub output: Option<&'a PathBuf>,
}

/// A param of node `i` by name: its own, else the nearest upstream node's that has it
/// (an evaluation's `lr` is its train node's).
fn param_of(p: &Planned, i: usize, name: &str) -> Value {
    let mut queue = VecDeque::from([i]);
    let mut seen = vec![false; p.graph.nodes.len()];
    while let Some(j) = queue.pop_front() {
        if std::mem::replace(&mut seen[j], true) {
            continue;
        }
        if let Some(v) = p.graph.nodes[j].params.get(name) {
            return v.clone();
        }
        queue.extend(p.graph.inputs[j].iter().copied());
    }
    Value::Null
}

/// Each node's stored result (the current one, else the latest) and whether it is current.
fn stored(p: &Planned, store: &Store, indices: &[usize]) -> Vec<Option<(ActionRecord, bool)>> {
    let resolver = Resolver::new(&p.graph, store, &p.workspace);
    let states = resolver.states(Some(&p.graph.with_ancestors(indices)));
    indices.iter().map(|&i| resolver.current_or_latest(i, states[i].as_ref())).collect()
}

fn sweep_node(
    p: &Planned,
    store: &Store,
    i: usize,
    action: &ActionRecord,
    fresh: bool,
    params: &[String],
) -> SweepNode {
    let node = &p.graph.nodes[i];
    SweepNode {
        stage: node.stage.clone(),
        node: node.id.clone(),
        state: if fresh { "fresh" } else { "stale" }.into(),
        matrix: node.matrix.clone(),
        params: params.iter().map(|name| (name.clone(), param_of(p, i, name))).collect(),
        files: action
            .outputs
            .iter()
            .map(|o| (o.path.clone(), store.object_path(&o.hash)))
            .collect(),
        timing: timing(&action.provenance),
    }
}

/// `seconds` and `seconds.<phase>` from a record's provenance (a kind's measured phases,
/// e.g. train's start / load / train / validation / write): the fixed cost per node, in
/// the sweep table.
fn timing(provenance: &serde_json::Map<String, Value>) -> Vec<(String, f64)> {
    let total = provenance.get("seconds").and_then(Value::as_f64).map(|s| ("seconds".into(), s));
    let phases =
        provenance.get(wormflow_api::PHASES).and_then(Value::as_object).into_iter().flatten();
    total
        .into_iter()
        .chain(phases.filter_map(|(name, s)| Some((format!("seconds.{name}"), s.as_f64()?))))
        .collect()
}

/// The sweep nodes of `indices` that have a stored result, and the ids of those never built.
fn sweep_nodes(
    p: &Planned,
    store: &Store,
    indices: &[usize],
    params: &[String],
) -> (Vec<SweepNode>, Vec<String>) {
    let (mut nodes, mut never) = (Vec::new(), Vec::new());
    for (&i, result) in indices.iter().zip(stored(p, store, indices)) {
        match result {
            Some((action, fresh)) => nodes.push(sweep_node(p, store, i, &action, fresh, params)),
            None => never.push(p.graph.nodes[i].id.clone()),
        }
    }
    (nodes, never)
}

pub fn compare(p: &Planned, args: &CompareArgs) -> Result<ExitCode> {
    match without_panics("compare", || print_tables(p, args)) {
        // `wormflow compare … | head` closed the pipe: what was wanted was printed.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn print_tables(p: &Planned, args: &CompareArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let mut out = std::io::stdout().lock();
    for (k, stage) in args.stages.iter().enumerate() {
        let indices: Vec<usize> = p
            .graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| &n.stage == stage)
            .map(|(i, _)| i)
            .collect();
        if indices.is_empty() {
            let mut names: Vec<&str> = p.graph.nodes.iter().map(|n| n.stage.as_str()).collect();
            names.dedup();
            bail!("no stage {stage:?} in {}; its stages: {}", p.file.display(), names.join(", "));
        }
        let (nodes, never) = sweep_nodes(p, &store, &indices, args.params);
        if nodes.is_empty() {
            // No table to filter or sort: say so, rather than that a column is missing.
            eprintln!(
                "{stage}: no results yet; `wormflow run {stage}` builds its {} nodes",
                indices.len()
            );
            continue;
        }
        let table = sweep::table(&nodes).with_context(|| format!("stage {stage}"))?;
        let mut table = sweep::select(table, args.filter, args.sort)
            .with_context(|| format!("stage {stage}"))?;
        match (args.format, args.output) {
            (Format::Parquet, Some(path)) => {
                let path = if args.stages.len() > 1 {
                    path.with_file_name(format!("{stage}.parquet"))
                } else {
                    path.clone()
                };
                let mut file = std::fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                sweep::write(&mut table, Format::Parquet, &mut file)?;
                eprintln!("{stage}: {} rows → {}", table.height(), path.display());
            }
            (Format::Parquet, None) => bail!("--parquet needs a file: --parquet sweep.parquet"),
            (Format::Text, _) => {
                if k > 0 {
                    writeln!(out)?;
                }
                writeln!(out, "{stage} ({} of {} nodes)", table.height(), indices.len())?;
                sweep::write(&mut table, Format::Text, &mut out)?;
            }
            (format, _) => sweep::write(&mut table, format, &mut out)?,
        }
        if !never.is_empty() {
            eprintln!(
                "{stage}: {} nodes never built (`wormflow run {stage}`): {}",
                never.len(),
                abbreviated(&never)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `f`, turning a panic inside it (polars panics on some inputs instead of returning
/// an error) into a one-line error: the user sees what failed, not a backtrace.
fn without_panics<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| {
        let message = wormflow_api::panic_message(&*panic);
        let first_line = message.lines().next().unwrap_or("").to_string();
        bail!("{what} stopped inside polars: {first_line}; check --where and --sort (please report it if they look right)")
    })
}

fn abbreviated(items: &[String]) -> String {
    match items.len() {
        0..=4 => items.join(", "),
        n => format!("{}, … and {} more", items[..3].join(", "), n - 3),
    }
}

/// A node's top-level params as `params.x` → canonical JSON (matrix values are already
/// substituted into them, and the sweep table's axis columns show them too).
fn flat_params(node: &crate::graph::NodeRecipe) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Value::Object(o) = &node.params {
        for (k, v) in o {
            m.insert(format!("params.{k}"), crate::hash::canonical_json(v));
        }
    }
    m
}

pub fn diff(p: &Planned, a: &str, b: &str) -> Result<ExitCode> {
    without_panics("diff", || diff_nodes(p, a, b))
}

fn diff_nodes(p: &Planned, a: &str, b: &str) -> Result<ExitCode> {
    let index = |id: &str| {
        p.graph
            .index
            .get(id)
            .copied()
            .with_context(|| format!("no node {id:?}; `wormflow dag` lists the nodes"))
    };
    let (ia, ib) = (index(a)?, index(b)?);
    let store = Store::open_existing(&p.store_root);
    let (na, nb) = (&p.graph.nodes[ia], &p.graph.nodes[ib]);
    let mut lines: Vec<(String, String)> = Vec::new();
    if na.kind != nb.kind {
        lines.push(("kind".to_string(), format!("{} → {}", na.kind, nb.kind)));
    }
    let (pa, pb) = (flat_params(na), flat_params(nb));
    for k in pa.keys().chain(pb.keys().filter(|k| !pa.contains_key(*k))) {
        let (x, y) = (
            pa.get(k).map_or("(none)", String::as_str),
            pb.get(k).map_or("(none)", String::as_str),
        );
        if x != y {
            lines.push((k.clone(), format!("{x} → {y}")));
        }
    }
    let results = stored(p, &store, &[ia, ib]);
    if let [Some((ra, fa)), Some((rb, fb))] = &results[..] {
        for (x, y) in ra.inputs.iter().zip(&rb.inputs) {
            if x.node != y.node || x.output_hash != y.output_hash {
                lines.push((
                    "input".into(),
                    format!(
                        "{} ({}) → {} ({})",
                        x.node,
                        x.output_hash.short(),
                        y.node,
                        y.output_hash.short()
                    ),
                ));
            }
        }
        if ra.inputs.len() != rb.inputs.len() {
            lines.push(("inputs".into(), format!("{} → {}", ra.inputs.len(), rb.inputs.len())));
        }
        let nodes =
            [sweep_node(p, &store, ia, ra, *fa, &[]), sweep_node(p, &store, ib, rb, *fb, &[])];
        let table = sweep::table(&nodes)?;
        let text = sweep::text_rows(
            &table,
            &table.get_column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )?;
        for (k, name) in table.get_column_names().iter().enumerate() {
            let name = name.as_str();
            if name == "node" || name.starts_with("params.") || text[0][k] == text[1][k] {
                continue;
            }
            lines.push((
                name.to_string(),
                format!("{} → {}", blank(&text[0][k]), blank(&text[1][k])),
            ));
        }
    } else {
        let never: Vec<&str> = [(a, &results[0]), (b, &results[1])]
            .into_iter()
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id)
            .collect();
        lines.push(("metrics".into(), format!("none: never built: {}", never.join(", "))));
    }
    println!("{a} → {b}");
    if lines.is_empty() {
        println!("  no differences");
    }
    let width = lines.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (k, change) in lines {
        println!("  {k:<width$}  {change}");
    }
    Ok(ExitCode::SUCCESS)
}

fn blank(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}
