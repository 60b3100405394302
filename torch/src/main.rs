//! The libtorch half of wormflow: runs `train` and `evaluate` jobs for the engine — one
//! job (`wormflow-torch JOB.json`), or node after node for the run (`--serve`, the protocol
//! in wormflow_api::helper), so libtorch and a GPU's context start once per worker. Not
//! meant to be run by hand.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wormflow_api::helper::{END_OF_LOG, SERVE_ARG};
use wormflow_api::StageContext;
use wormflow_stages::torch_stages::Job;
use wormflow_torch::{evaluate, train};

fn main() -> ExitCode {
    // libtorch reports errors by panicking with its C++ backtrace (thousands of
    // characters); say it in one line instead (see `one_line`).
    std::panic::set_hook(Box::new(|_| {}));
    wormflow_api::child::die_with_parent();
    // The engine cancels with SIGTERM (then SIGKILL after a grace period): stop between
    // batches and report "cancelled" rather than die mid-write.
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&cancel)) {
        eprintln!("cannot handle SIGTERM: {e}");
        return ExitCode::from(1);
    }
    match std::env::args().nth(1).as_deref() {
        Some(SERVE_ARG) => serve(&cancel),
        Some(path) => match run_caught(path, &cancel) {
            Ok(()) => ExitCode::SUCCESS,
            Err((message, _)) => {
                eprintln!("{message}");
                ExitCode::from(1)
            }
        },
        None => {
            eprintln!("usage: wormflow-torch JOB.json | wormflow-torch {SERVE_ARG} (started by wormflow for train and evaluate nodes)");
            ExitCode::from(2)
        }
    }
}

/// Serve node after node (the protocol in wormflow_api::helper): a job file's path per line
/// on stdin, `progress …` lines and then `ok` / `failed MESSAGE` on stdout. After a panic
/// (libtorch may be left unusable) or a cancel, answer and exit: the engine starts a fresh
/// helper for the next node.
fn serve(cancel: &AtomicBool) -> ExitCode {
    for line in std::io::stdin().lines() {
        let Ok(path) = line else { break };
        let (answer, fatal) = match run_caught(path.trim(), cancel) {
            Ok(()) => ("ok".to_string(), false),
            Err((message, panicked)) => {
                (format!("failed {}", message.replace('\n', " ")), panicked)
            }
        };
        eprintln!("{END_OF_LOG}");
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            break;
        }
        if fatal || cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// One job, its error as one line (and whether it was a panic).
fn run_caught(path: &str, cancel: &AtomicBool) -> Result<(), (String, bool)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(path, cancel))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((one_line(&format!("{e:#}"), path), false)),
        Err(panic) => {
            let e = anyhow::anyhow!("libtorch failed: {}", wormflow_api::panic_message(&*panic));
            Err((one_line(&format!("{e:#}"), path), true))
        }
    }
}

/// The first line of an error without libtorch's C++ backtrace, with the model's size
/// params (what to change when it ran out of memory).
fn one_line(error: &str, job_path: &str) -> String {
    let is_torch = error.contains("Exception raised from")
        || error.contains("libtorch failed")
        || error.contains("Torch(");
    if !is_torch {
        return error.to_string();
    }
    let first = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take_while(|l| !l.starts_with("Exception raised from") && !l.starts_with("frame #"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut first: String = first.chars().take(400).collect();
    if let Ok(job) = std::fs::read(job_path)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice::<Job>(&b)?))
    {
        let p = &job.params;
        first = format!(
            "{}: {first} (model = {}, hidden = {}, batch_size = {}; if it ran out of memory, lower hidden or batch_size)",
            job.node, p["model"], p["hidden"], p["batch_size"]
        );
    }
    first
}

fn run(path: &str, cancel: &AtomicBool) -> anyhow::Result<()> {
    let job: Job = serde_json::from_slice(&std::fs::read(path)?)?;
    let helpers = wormflow_api::helper::HelperPool::new();
    let progress = |update: &wormflow_api::Progress| {
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(update).unwrap_or_default();
        let _ = writeln!(out, "progress {line}");
        let _ = out.flush();
    };
    let ctx = StageContext {
        node: &job.node,
        origin: &job.origin,
        params: &job.params,
        inputs: &job.inputs,
        out_dir: &job.out_dir,
        workspace: &job.workspace,
        scratch: &job.scratch,
        threads: job.threads,
        cancel,
        helpers: &helpers,
        progress: &progress,
    };
    let provenance = match job.kind.as_str() {
        "train" => train::run(&serde_json::from_value(job.params.clone())?, &ctx)?,
        "evaluate" => evaluate::run(&serde_json::from_value(job.params.clone())?, &ctx)?,
        other => anyhow::bail!("wormflow-torch runs train and evaluate jobs, not {other:?}"),
    };
    std::fs::write(job.scratch.join("provenance.json"), serde_json::to_vec(&provenance)?)?;
    Ok(())
}
