//! The libtorch half of wormflow: runs one `train` or `evaluate` job for the engine (see
//! torch_stages.rs for the protocol). Not meant to be run by hand.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wormflow_api::StageContext;
use wormflow_stages::torch_stages::Job;
use wormflow_torch::{evaluate, train};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!(
            "usage: wormflow-torch JOB.json (started by wormflow for train and evaluate nodes)"
        );
        return ExitCode::from(2);
    };
    // libtorch reports errors by panicking with its C++ backtrace (thousands of
    // characters); say it in one line instead (see `one_line`).
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| run(&path)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(anyhow::anyhow!("libtorch failed: {}", msg.unwrap_or_default()))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", one_line(&format!("{e:#}"), &path));
            ExitCode::from(1)
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

fn run(path: &str) -> anyhow::Result<()> {
    wormflow_api::child::die_with_parent();
    let job: Job = serde_json::from_slice(&std::fs::read(path)?)?;
    // The engine cancels with SIGTERM (then SIGKILL after a grace period): stop between
    // batches and report "cancelled" rather than die mid-write.
    let cancel = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&cancel))?;
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
        cancel: &cancel,
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
