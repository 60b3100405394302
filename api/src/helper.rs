//! Long-lived helper processes. A kind whose nodes run in a helper program (the libtorch
//! helper, `wormflow-torch`) asks the run's pool for one; a helper serves node after node,
//! so its start — process, shared libraries, a GPU's context — is paid once per worker
//! slot, not once per node. The engine owns the pool for the length of a run and hands it
//! to every node in `StageContext::helpers`; when the run ends the helpers are stopped.
//!
//! Protocol, spoken by `PROGRAM --serve`:
//! - the pool writes one line per node to the helper's stdin: the path of a job file;
//! - the helper answers on stdout with any number of `progress JSON` lines (a
//!   [`crate::Progress`]), then `ok` or `failed MESSAGE` (one line);
//! - what it writes to stderr while a node runs is that node's log; it ends each node's
//!   stderr with the line [`END_OF_LOG`] (before its answer), so the log is complete;
//! - a helper that may be unusable after a node (a libtorch panic) reports `failed …`
//!   and exits; the pool then starts a fresh one for the next node. EOF on stdin: exit.
//! - a group (nodes a kind runs at once, `StageKind::run_group`): the line is
//!   `group PATH`, PATH a JSON array of job paths; the helper prefixes each member's
//!   `progress …`, `ok` and `failed …` lines with the member's index and a space, says
//!   each member's `K ok` as soon as that member's outputs are written (the engine stores
//!   it then), and ends with `ok` (or `failed MESSAGE`, which fails every member not yet
//!   answered).
//!
//! Each helper is a supervised child (`child.rs`): its own process group, stopped on
//! cancel (SIGTERM, SIGKILL after the grace period), and it dies with its parent.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crate::child::{self, PipeTail, Supervised};
use crate::Progress;

/// The argument that starts a helper program in serving mode.
pub const SERVE_ARG: &str = "--serve";

/// A request line naming a group file instead of one job: `group PATH`.
pub const GROUP_PREFIX: &str = "group ";

fn parse_progress(line: &str) -> Option<Progress> {
    serde_json::from_str(line.strip_prefix("progress ")?).ok()
}

/// The line a helper writes to stderr at the end of each node (ASCII record separator).
pub const END_OF_LOG: &str = "\u{1e}";

/// How one node in a helper ended (besides the files it wrote).
#[derive(Debug)]
pub struct Served {
    /// What the helper wrote to stderr during the node.
    pub log: String,
    /// The helper's process id and how many nodes it has served, this one included.
    pub pid: i32,
    pub nodes_served: u64,
}

/// A group member's answer (`Err`: the helper's message), by index, with the helper's
/// log and counts so far.
pub type Answered<'a> = dyn FnMut(usize, Result<(), String>, &Served) + 'a;

/// Why a node in a helper did not end with `ok`.
#[derive(Debug)]
pub enum HelperError {
    /// The node failed; the message is the helper's, `log` its stderr during the node.
    Failed { message: String, log: String },
    /// The run was cancelled: the helper was stopped.
    Cancelled,
    /// The helper could not be started, or died without an answer.
    Lost(String),
}

/// Fields drop in order: stdin first, so an idle helper sees EOF and exits before its
/// process group is stopped (no grace period to wait out at the end of a run).
struct Helper {
    stdin: ChildStdin,
    child: Supervised,
    program: PathBuf,
    lines: mpsc::Receiver<String>,
    stderr: PipeTail,
    served: u64,
}

/// Idle helpers, by program; a node takes one (or starts one) and gives it back after.
#[derive(Default)]
pub struct HelperPool {
    idle: Mutex<Vec<Helper>>,
}

const TICK: Duration = Duration::from_millis(25);

impl HelperPool {
    pub fn new() -> HelperPool {
        HelperPool::default()
    }

    /// Run the job at `job` in a helper of `program`; `progress` gets its progress lines.
    pub fn run(
        &self,
        program: &Path,
        job: &Path,
        cancel: &AtomicBool,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Served, HelperError> {
        let mut on_line = |line: &str, _: &dyn Fn() -> Served| {
            if let Some(update) = parse_progress(line) {
                progress(&update);
            }
        };
        let (answer, served) =
            self.exchange(program, &job.display().to_string(), cancel, &mut on_line)?;
        match answer {
            Ok(()) => Ok(served),
            Err(message) => Err(HelperError::Failed { message, log: served.log }),
        }
    }

    /// Run the jobs listed in `group` (a JSON array of job paths) in one helper, at once.
    /// `answered` hears each member's answer as the helper gives it (`Err` with the
    /// helper's message for a member that failed), with the helper's log so far; members
    /// the helper ends without answering get its final answer. `progress` gets each
    /// member's progress, by index. An `Err` (cancelled, helper lost) leaves the members
    /// not yet answered to the caller.
    pub fn run_group(
        &self,
        program: &Path,
        group: &Path,
        members: usize,
        cancel: &AtomicBool,
        progress: &(dyn Fn(usize, &Progress) + Sync),
        answered: &mut Answered,
    ) -> Result<Served, HelperError> {
        let mut done = vec![false; members];
        let mut on_line = |line: &str, served: &dyn Fn() -> Served| {
            let Some((index, rest)) = line.split_once(' ') else { return };
            let Some(k) = index.parse::<usize>().ok().filter(|&k| k < members) else { return };
            let answer = if let Some(update) = parse_progress(rest) {
                return progress(k, &update);
            } else if rest == "ok" {
                Ok(())
            } else if let Some(message) = rest.strip_prefix("failed ") {
                Err(message.to_string())
            } else {
                return;
            };
            if !std::mem::replace(&mut done[k], true) {
                answered(k, answer, &served());
            }
        };
        let line = format!("{GROUP_PREFIX}{}", group.display());
        let (answer, served) = self.exchange(program, &line, cancel, &mut on_line)?;
        for k in (0..members).filter(|&k| !done[k]) {
            let unanswered = match &answer {
                Err(message) => Err(message.clone()),
                Ok(()) => Err("the helper gave no answer for this node".to_string()),
            };
            answered(k, unanswered, &served);
        }
        Ok(served)
    }

    /// Send one request line to a helper of `program` and read its answer lines until `ok`
    /// or `failed …`; every other line goes to `on_line`, with what `Served` would say now
    /// (the log so far) should it need that.
    fn exchange(
        &self,
        program: &Path,
        request: &str,
        cancel: &AtomicBool,
        on_line: &mut dyn FnMut(&str, &dyn Fn() -> Served),
    ) -> Result<(Result<(), String>, Served), HelperError> {
        let mut helper = match self.take(program) {
            Some(h) => h,
            None => Helper::start(program).map_err(HelperError::Lost)?,
        };
        helper.stderr.clear();
        if writeln!(helper.stdin, "{request}").and_then(|_| helper.stdin.flush()).is_err() {
            // It died while idle (killed from outside): one fresh try.
            helper = Helper::start(program).map_err(HelperError::Lost)?;
            writeln!(helper.stdin, "{request}")
                .and_then(|_| helper.stdin.flush())
                .map_err(|e| HelperError::Lost(format!("cannot send it the job: {e}")))?;
        }
        helper.served += 1;
        let answer = loop {
            match helper.lines.recv_timeout(TICK) {
                Ok(line) => {
                    if line == "ok" {
                        break Ok(());
                    } else if let Some(message) = line.strip_prefix("failed ") {
                        break Err(message.to_string());
                    }
                    let served = || Served {
                        log: helper.log_so_far(),
                        pid: helper.child.pid,
                        nodes_served: helper.served,
                    };
                    on_line(&line, &served);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.load(Ordering::Relaxed) {
                        // Stops its process group (SIGTERM, then SIGKILL); not reused.
                        drop(helper);
                        return Err(HelperError::Cancelled);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let log = helper.log();
                    let status = helper.child.wait(&AtomicBool::new(false), Some(TICK * 40));
                    return Err(HelperError::Lost(format!(
                        "it exited without an answer ({}){}",
                        match status {
                            Ok(child::Ended::Exited(s)) => s.to_string(),
                            _ => "still running".to_string(),
                        },
                        if log.trim().is_empty() {
                            String::new()
                        } else {
                            format!(": {}", log.trim())
                        }
                    )));
                }
            }
        };
        let log = helper.log();
        let (pid, nodes_served) = (helper.child.pid, helper.served);
        // Back to the pool either way: a helper that says a node failed is still usable
        // unless it exits, and the next request finds that out (its stdin is closed) and
        // starts a fresh one.
        self.give_back(helper);
        Ok((answer, Served { log, pid, nodes_served }))
    }

    fn take(&self, program: &Path) -> Option<Helper> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = idle.iter().position(|h| h.program == program)?;
        Some(idle.swap_remove(at))
    }

    fn give_back(&self, helper: Helper) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(helper);
    }
}

impl Helper {
    fn start(program: &Path) -> Result<Helper, String> {
        let mut command = Command::new(program);
        command.arg(SERVE_ARG).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = child::spawn(&mut command)
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        // A node's log keeps its last MiB (libtorch can be chatty).
        let stderr = PipeTail::capture(child.stderr.take().expect("piped"), 1 << 20);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper { program: program.to_path_buf(), child, stdin, lines, stderr, served: 0 })
    }

    /// What the helper has written to stderr since the request, without waiting.
    fn log_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).replace(END_OF_LOG, "")
    }

    /// What the helper wrote to stderr during the node: waits (up to a second) for the
    /// end-of-log line, which the helper writes before its answer but which the reader
    /// thread may not have copied yet.
    fn log(&self) -> String {
        let marker = format!("{END_OF_LOG}\n");
        for _ in 0..200 {
            let kept = self.stderr.snapshot();
            if let Some(text) = kept.strip_suffix(marker.as_bytes()) {
                return String::from_utf8_lossy(text).into_owned();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.log_so_far()
    }
}
