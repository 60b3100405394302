//! The libtorch half of wormflow: runs one `train` or `evaluate` job for the engine (see
//! torch_stages.rs for the protocol). Not meant to be run by hand.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use wormflow_api::StageContext;
use wormflow_stages::torch_stages::Job;
use wormflow_torch::{evaluate, train};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: wormflow-torch JOB.json (started by wormflow for train and evaluate nodes)");
        return ExitCode::from(2);
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(path: &str) -> anyhow::Result<()> {
    let job: Job = serde_json::from_slice(&std::fs::read(path)?)?;
    let cancel = AtomicBool::new(false);
    let progress = |fraction: f64, message: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "progress {fraction} {}", message.replace('\n', " "));
        let _ = out.flush();
    };
    let ctx = StageContext {
        node: &job.node,
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
