//! The `command` stage kind: a user's shell command, cached like any other stage.
//!
//! The command runs with `sh -c` in the workspace directory and gets:
//! `WORMFLOW_OUT` (empty output directory), `WORMFLOW_INPUT_<STAGE>` (one per needed stage:
//! the input's output directory, or for a gathered matrix stage a directory with one
//! subdirectory per instance, named by its matrix coordinates), `WORMFLOW_INPUTS` (path of a
//! JSON file listing every input node with its matrix and directory), `WORMFLOW_PARAMS` (JSON),
//! `WORMFLOW_NODE` and `WORMFLOW_SCRATCH`.
//!
//! It runs in a process group of its own: on Ctrl-C/SIGTERM, on `timeout_s`, and when the
//! shell exits, whatever it started is stopped too. Its inputs are private copies, so it
//! may write into them without touching the store. Its stdout and stderr go to the node's
//! log (`<store>/logs/<node>.log`).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::kinds::{Provenance, StageContext, StageKind};
use wormflow_api::child;

pub struct CommandKind;

/// The environment variable that carries one stage's input directory.
pub fn input_env_name(stage: &str) -> String {
    format!("WORMFLOW_INPUT_{}", stage.to_ascii_uppercase().replace('-', "_"))
}

fn string_list(params: &Value, key: &str) -> Result<Vec<String>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("params.{key} must be a list of strings"))
            })
            .collect(),
        Some(_) => {
            Err(format!("params.{key} must be a list of strings, e.g. {key} = [\"script.py\"]"))
        }
    }
}

impl StageKind for CommandKind {
    fn name(&self) -> &str {
        "command"
    }

    fn version(&self) -> &str {
        // Bump when what a command sees (environment, working directory) changes.
        "command-1"
    }

    fn defaults(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("cmd".into(), Value::String(String::new()));
        m.insert("deps".into(), json!([]));
        m.insert("outputs".into(), json!([]));
        m.insert("allow_empty".into(), json!(false));
        m
    }

    fn isolates_inputs(&self) -> bool {
        true // a user's command may write into its inputs
    }

    fn accepts_any_params(&self) -> bool {
        true // extra params reach the command through WORMFLOW_PARAMS
    }

    fn validate(&self, params: &Value) -> Result<(), String> {
        match params.get("cmd") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(
                    "params.cmd must be a non-empty shell command, e.g. cmd = \"python fit.py\""
                        .into(),
                )
            }
        }
        timeout(params)?;
        string_list(params, "deps")?;
        string_list(params, "outputs")?;
        Ok(())
    }

    fn file_deps(&self, params: &Value) -> Vec<String> {
        string_list(params, "deps").unwrap_or_default()
    }

    fn allows_empty_output(&self, params: &Value) -> bool {
        params.get("allow_empty").and_then(Value::as_bool).unwrap_or(false)
    }

    fn run(&self, ctx: &StageContext) -> Result<Provenance> {
        let cmd = ctx.params["cmd"].as_str().unwrap_or_default();
        // An absolute path: `sh` would be looked up along $PATH for every node.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(cmd)
            .current_dir(ctx.workspace)
            .env("WORMFLOW_OUT", ctx.out_dir)
            .env("WORMFLOW_SCRATCH", ctx.scratch)
            .env("WORMFLOW_NODE", ctx.node)
            .env("WORMFLOW_PARAMS", crate::hash::canonical_json(ctx.params))
            .stdin(Stdio::null());
        let mut listed = Vec::new();
        for input in ctx.inputs {
            listed.push(json!({"stage": input.stage, "node": input.node, "matrix": input.matrix, "dir": input.dir}));
        }
        for stage_dir in stage_dirs(ctx) {
            command.env(input_env_name(&stage_dir.0), &stage_dir.1);
        }
        // A file, not a variable: a gather over thousands of nodes outgrows the
        // kernel's limit on one environment string.
        let listing = ctx.scratch.join("inputs.json");
        std::fs::write(&listing, Value::Array(listed).to_string())
            .with_context(|| format!("cannot write {}", listing.display()))?;
        command.env("WORMFLOW_INPUTS", &listing);

        // stdout goes to a file, not a pipe: a background process that keeps a pipe open
        // would otherwise make the node wait for ever. stderr goes through a pipe into
        // memory (its tail): the cause of a failure must reach the message even when the
        // disk is full ("No space left on device" written to a file on that disk is lost).
        let out_path = ctx.scratch.join("stdout.txt");
        let stdout_file = std::fs::File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        command.stdout(stdout_file).stderr(Stdio::piped());
        let limit = timeout(ctx.params).map_err(anyhow::Error::msg)?;
        let mut child = child::spawn(&mut command)
            .with_context(|| format!("{}: cannot start `sh -c {cmd:?}`", ctx.node))?;
        let stderr_tail =
            child::PipeTail::capture(child.stderr.take().expect("piped"), STDERR_KEPT);
        let ended = child
            .wait(ctx.cancel, limit)
            .with_context(|| format!("{}: lost track of `sh -c {cmd:?}`", ctx.node))?;
        // A process that left the command's group may hold the pipe open: wait a second.
        let stderr = stderr_tail.finish(Duration::from_secs(1));
        let stdout = std::fs::read(&out_path).unwrap_or_default();
        let log =
            [b"--- stdout ---\n".as_slice(), &stdout, b"\n--- stderr ---\n", &stderr].concat();
        let _ = std::fs::write(ctx.scratch.join(wormflow_api::KIND_LOG), &log);
        let status = match ended {
            child::Ended::Exited(status) => status,
            child::Ended::Cancelled => {
                return Err(anyhow::Error::new(wormflow_api::cancel::Cancelled)
                    .context(format!("{}: its processes were stopped", ctx.node)))
            }
            child::Ended::TimedOut(limit) => bail!(
                "{}: command `{cmd}` ran past params.timeout_s = {}; its processes were stopped and nothing was stored (raise timeout_s if it needs longer)",
                ctx.node,
                limit.as_secs_f64()
            ),
        };
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "failed".to_string(),
            };
            let tail = tail_lines(&String::from_utf8_lossy(&stderr), 15);
            bail!(
                "{}: command `{cmd}` {how}; nothing was stored. Last lines of its stderr:\n{tail}",
                ctx.node
            );
        }
        for required in string_list(ctx.params, "outputs").unwrap_or_default() {
            if !ctx.out_dir.join(&required).exists() {
                bail!("{}: command `{cmd}` succeeded but did not write {required:?} (listed in params.outputs) into $WORMFLOW_OUT", ctx.node);
            }
        }
        let mut prov = Map::new();
        prov.insert("command".into(), Value::String(cmd.to_string()));
        Ok(prov)
    }
}

/// How much of a command's stderr is kept (its end: where the cause is).
const STDERR_KEPT: usize = 1 << 20;

/// `params.timeout_s`: absent or 0 = no limit (checked at plan time, read when running).
fn timeout(params: &Value) -> Result<Option<Duration>, String> {
    let Some(value) = params.get("timeout_s") else { return Ok(None) };
    let seconds = value.as_f64().filter(|t| *t >= 0.0 && t.is_finite());
    let seconds = seconds.ok_or(
        "params.timeout_s must be a number of seconds ≥ 0 (0 = no limit), e.g. timeout_s = 3600",
    )?;
    Ok((seconds > 0.0).then(|| Duration::from_secs_f64(seconds)))
}

/// The directory passed for each needed stage, in `needs` order.
fn stage_dirs(ctx: &StageContext) -> Vec<(String, std::path::PathBuf)> {
    let mut out: Vec<(String, std::path::PathBuf)> = Vec::new();
    for input in ctx.inputs {
        if !out.iter().any(|(s, _)| s == &input.stage) {
            out.push((input.stage.clone(), input.stage_dir.clone()));
        }
    }
    out
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}
