//! The libtorch half of wormflow: runs `train` and `evaluate` jobs for the engine — one
//! job (`wormflow-torch JOB.json`), or node after node for the run (`--serve`, the protocol
//! in wormflow_api::helper), so libtorch and a GPU's context start once per worker. Not
//! meant to be run by hand.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wormflow_api::helper::{END_OF_LOG, GROUP_PREFIX, SERVE_ARG};
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
/// on stdin (or `group PATH`), `progress …` lines and then `ok` / `failed MESSAGE` on
/// stdout. After a panic (libtorch may be left unusable) or a cancel, answer and exit: the
/// engine starts a fresh helper for the next node.
fn serve(cancel: &AtomicBool) -> ExitCode {
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        let outcome = match line.strip_prefix(GROUP_PREFIX) {
            Some(group) => run_group_caught(group, cancel),
            None => run_caught(line, cancel),
        };
        let (answer, fatal) = match outcome {
            Ok(()) => ("ok".to_string(), false),
            Err((message, panicked)) => {
                (format!("failed {}", message.replace('\n', " ")), panicked)
            }
        };
        eprintln!("{END_OF_LOG}");
        if say(&answer).is_err() {
            break;
        }
        if fatal || cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// One line on stdout, flushed (the engine reads answers line by line).
fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush())
}

/// One job, its error as one line (and whether it was a panic).
fn run_caught(path: &str, cancel: &AtomicBool) -> Result<(), (String, bool)> {
    caught(path, || run(path, cancel))
}

/// A group of jobs: each member's answer is said as it is known (`K ok`, `K failed …`);
/// the error returned is the group's (a panic, or a group file that cannot be read).
fn run_group_caught(path: &str, cancel: &AtomicBool) -> Result<(), (String, bool)> {
    caught(path, || run_group(path, cancel))
}

fn caught(path: &str, f: impl FnOnce() -> anyhow::Result<()>) -> Result<(), (String, bool)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
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

fn read_job(path: &str) -> anyhow::Result<Job> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// The context a job's node runs with in this process; `progress` says its updates.
fn context<'a>(
    job: &'a Job,
    cancel: &'a AtomicBool,
    helpers: &'a wormflow_api::helper::HelperPool,
    progress: &'a (dyn Fn(&wormflow_api::Progress) + Sync),
) -> StageContext<'a> {
    StageContext {
        node: &job.node,
        origin: &job.origin,
        params: &job.params,
        inputs: &job.inputs,
        out_dir: &job.out_dir,
        workspace: &job.workspace,
        scratch: &job.scratch,
        threads: job.threads,
        cancel,
        checkpoints: job.checkpoints.as_deref(),
        helpers,
        progress,
    }
}

fn progress_line(prefix: &str, update: &wormflow_api::Progress) {
    let _ = say(&format!("{prefix}progress {}", serde_json::to_string(update).unwrap_or_default()));
}

fn keep_provenance(job: &Job, provenance: &wormflow_api::Provenance) -> anyhow::Result<()> {
    std::fs::write(job.scratch.join("provenance.json"), serde_json::to_vec(provenance)?)?;
    Ok(())
}

fn run(path: &str, cancel: &AtomicBool) -> anyhow::Result<()> {
    let job = read_job(path)?;
    let helpers = wormflow_api::helper::HelperPool::new();
    let progress = |update: &wormflow_api::Progress| progress_line("", update);
    let ctx = context(&job, cancel, &helpers, &progress);
    let provenance = match job.kind.as_str() {
        "train" => train::run(&serde_json::from_value(job.params.clone())?, &ctx)?,
        "evaluate" => evaluate::run(&serde_json::from_value(job.params.clone())?, &ctx)?,
        other => anyhow::bail!("wormflow-torch runs train and evaluate jobs, not {other:?}"),
    };
    keep_provenance(&job, &provenance)
}

/// The jobs of a group file: train jobs trained together (`train::run_group`), any other
/// job on its own; each member's answer is said as `K ok` / `K failed MESSAGE`.
fn run_group(path: &str, cancel: &AtomicBool) -> anyhow::Result<()> {
    let paths: Vec<String> = serde_json::from_slice(&std::fs::read(path)?)?;
    let jobs: Vec<anyhow::Result<Job>> = paths.iter().map(|p| read_job(p)).collect();
    let helpers = wormflow_api::helper::HelperPool::new();
    let prefixes: Vec<String> = (0..jobs.len()).map(|k| format!("{k} ")).collect();
    type Reporter<'a> = Box<dyn Fn(&wormflow_api::Progress) + Sync + 'a>;
    let reporters: Vec<Reporter> = prefixes
        .iter()
        .map(|prefix| {
            Box::new(move |u: &wormflow_api::Progress| progress_line(prefix, u)) as Reporter
        })
        .collect();
    let answer = |k: usize, job: Option<&Job>, result: anyhow::Result<wormflow_api::Provenance>| {
        let result = result.and_then(|p| job.map_or(Ok(()), |j| keep_provenance(j, &p)));
        let line = match result {
            Ok(()) => format!("{k} ok"),
            Err(e) => {
                format!("{k} failed {}", one_line(&format!("{e:#}"), &paths[k]).replace('\n', " "))
            }
        };
        say(&line)
    };
    let mut train_members = Vec::new();
    for (k, job) in jobs.iter().enumerate() {
        match job {
            Err(e) => answer(k, None, Err(anyhow::anyhow!("{e:#}")))?,
            Ok(job) if job.kind == "train" => {
                match serde_json::from_value::<train::Params>(job.params.clone()) {
                    Ok(params) => train_members.push((k, job, params)),
                    Err(e) => answer(k, Some(job), Err(e.into()))?,
                }
            }
            Ok(job) => {
                let ctx = context(job, cancel, &helpers, &*reporters[k]);
                let result = match job.kind.as_str() {
                    "evaluate" => serde_json::from_value(job.params.clone())
                        .map_err(anyhow::Error::from)
                        .and_then(|p| evaluate::run(&p, &ctx)),
                    other => Err(anyhow::anyhow!(
                        "wormflow-torch runs train and evaluate jobs, not {other:?}"
                    )),
                };
                answer(k, Some(job), result)?;
            }
        }
    }
    let contexts: Vec<StageContext> = train_members
        .iter()
        .map(|(k, job, _)| context(job, cancel, &helpers, &*reporters[*k]))
        .collect();
    let nodes: Vec<(train::Params, &StageContext)> =
        train_members.iter().zip(&contexts).map(|((_, _, p), ctx)| (p.clone(), ctx)).collect();
    // Each member answered as soon as its stack is done: the engine stores it then.
    let mut unsaid = Ok(());
    train::run_group(&nodes, &mut |i, result| {
        let (k, job, _) = &train_members[i];
        if let Err(e) = answer(*k, Some(job), result) {
            unsaid = Err(e);
        }
    });
    Ok(unsaid?)
}
