//! `wormflow watch`: keep the plan in a long-lived salsa database, re-plan on every save
//! of pipeline.toml (only what the edit touched is recomputed) and run what became stale.

use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use salsa::Setter;

use super::{run_once, RunArgs};
use crate::kinds::Registry;
use crate::plan::{self, PipelineSource, PlanDb, COUNTERS};
use crate::store::Store;

pub(super) fn watch(
    registry: &Registry,
    file: &Path,
    overrides: &[String],
    args: &RunArgs,
    max_runs: Option<usize>,
) -> Result<ExitCode> {
    let mut db = PlanDb::new(registry.clone());
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let src = PipelineSource::new(&db, file.to_path_buf(), text, overrides.to_vec());
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e| {
        let _ = tx.send(e);
    })?;
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let name = file.file_name().map(|n| n.to_os_string());
    let mut runs = 0;
    loop {
        let before = COUNTERS.snapshot();
        match plan::graph(&db, src).clone() {
            Err(e) => eprintln!("error: {e}\n(waiting for the next save of {})", file.display()),
            Ok(graph) => {
                let after = COUNTERS.snapshot();
                eprintln!(
                    "planned {} nodes: re-expanded {} stage(s) / {} node(s)",
                    graph.nodes.len(),
                    after[1] - before[1],
                    after[2] - before[2]
                );
                match crate::workspace::planned(&db, src, graph).and_then(|p| {
                    Store::open(&p.store_root)
                        .and_then(|store| run_once(&p, &store, registry, args))
                }) {
                    Ok(_) => {}
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
        }
        runs += 1;
        if max_runs.is_some_and(|m| runs >= m) {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("watching {} for changes (Ctrl-C to stop)", file.display());
        // Wait for a change to the pipeline file, then let the editor finish writing.
        loop {
            let event = rx.recv().context("file watcher stopped")?;
            let touches_file = event
                .as_ref()
                .is_ok_and(|e| e.paths.iter().any(|p| p.file_name() == name.as_deref()));
            if touches_file {
                std::thread::sleep(Duration::from_millis(100));
                while rx.try_recv().is_ok() {}
                break;
            }
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if src.text(&db) != &text {
            src.set_text(&mut db).to(text);
        }
    }
}
