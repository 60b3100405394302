//! A node's child processes: each started in a process group of its own, so cancelling,
//! a timeout or the end of the node stops every process it started (a shell's background
//! jobs included), not just the first. The engine and the stages that start helpers share
//! this, so they stop their children the same way.
//!
//! Waiting blocks on the child (a waiter thread per child, no sleep-polling); the caller
//! wakes every `TICK` only to notice a cancel flag.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::os::unix::process::CommandExt; // process_group
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(25);
/// How long a group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Process groups of running children, for `kill_all` when the process must exit at once.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn register(pgid: i32, running: bool) {
    let mut set = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    if running {
        set.insert(pgid);
    } else {
        set.remove(&pgid);
    }
}

/// SIGKILL every child process group still running (before an immediate exit).
pub fn kill_all() {
    let g = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in g.iter() {
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
}

/// How a supervised child ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    Cancelled,
    TimedOut(Duration),
}

/// A running child in its own process group; its pipes, if any, are the caller's.
pub struct Supervised {
    pub pid: i32,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    waited: mpsc::Receiver<io::Result<ExitStatus>>,
}

/// The variable that tells a child which process started it (see `die_with_parent`).
pub const PARENT_PID_ENV: &str = "WORMFLOW_PARENT_PID";

/// Start `cmd` in a new process group. With no `pre_exec` hook, std starts it with
/// `posix_spawn` (a vfork, not a copy of wormflow's page tables): a fork per node was a
/// fifth of a `command` node's cost. A helper that must not outlive wormflow when wormflow
/// is killed outright calls `die_with_parent` itself (the torch helper does).
pub fn spawn(cmd: &mut Command) -> io::Result<Supervised> {
    cmd.process_group(0).env(PARENT_PID_ENV, std::process::id().to_string());
    let mut child: Child = cmd.spawn()?;
    let pid = child.id() as i32;
    register(pid, true);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (tx, waited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    Ok(Supervised { pid, stdin, stdout, stderr, waited })
}

/// In a helper started by `spawn`: be SIGKILLed when wormflow dies (even by SIGKILL), or
/// exit now if it already has. A no-op when not started by wormflow.
pub fn die_with_parent() {
    let Some(parent) = std::env::var(PARENT_PID_ENV).ok().and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: plain syscalls on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The parent may have died before prctl: then this process was re-parented.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

impl Supervised {
    /// Wait for the child to exit, or until `cancel` is set or `timeout` passes; then (and
    /// also after a normal exit) stop whatever is left of its process group.
    pub fn wait(&self, cancel: &AtomicBool, timeout: Option<Duration>) -> io::Result<Ended> {
        let started = Instant::now();
        let ended = loop {
            match self.waited.recv_timeout(TICK) {
                Ok(status) => break Ended::Exited(status?),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("lost the child's waiter"))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if cancel.load(Ordering::Relaxed) {
                break Ended::Cancelled;
            }
            if let Some(limit) = timeout.filter(|t| started.elapsed() >= *t) {
                break Ended::TimedOut(limit);
            }
        };
        if matches!(ended, Ended::Exited(_)) {
            // The leader is gone; anything it left in the background goes too.
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        } else {
            self.stop_group();
        }
        register(self.pid, false);
        Ok(ended)
    }

    /// SIGTERM the group, give it `GRACE` to exit, then SIGKILL it; reap the leader.
    fn stop_group(&self) {
        unsafe { libc::killpg(self.pid, libc::SIGTERM) };
        let exited = self.waited.recv_timeout(GRACE).is_ok();
        unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        if !exited {
            let _ = self.waited.recv_timeout(GRACE);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // A caller that returned early (an error reading pipes) still stops the group.
        if GROUPS.lock().unwrap_or_else(|e| e.into_inner()).contains(&self.pid) {
            self.stop_group();
            register(self.pid, false);
        }
    }
}

/// The end of what a child writes to a pipe, kept in memory by a reader thread: the cause
/// of a failure reaches the message even when the disk is full (a file on that disk would
/// lose it), and a chatty child cannot fill memory (only the last `keep` bytes are kept).
pub struct PipeTail {
    kept: Arc<Mutex<Vec<u8>>>,
    closed: mpsc::Receiver<()>,
    keep: usize,
}

impl PipeTail {
    pub fn capture(mut pipe: impl Read + Send + 'static, keep: usize) -> PipeTail {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (tx, closed) = mpsc::channel();
        let sink = kept.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend_from_slice(&buf[..n]);
                // Trimmed now and then, not on every read: a drain is a copy.
                if kept.len() > 2 * keep {
                    let cut = kept.len() - keep;
                    kept.drain(..cut);
                }
            }
            let _ = tx.send(());
        });
        PipeTail { kept, closed, keep }
    }

    /// The last `keep` bytes read so far.
    pub fn snapshot(&self) -> Vec<u8> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept[kept.len().saturating_sub(self.keep)..].to_vec()
    }

    /// Forget what was read so far (a long-lived child starting its next piece of work).
    pub fn clear(&self) {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// What was kept once the pipe closed — or after `limit`, if a process that left the
    /// child's process group still holds it open.
    pub fn finish(self, limit: Duration) -> Vec<u8> {
        let _ = self.closed.recv_timeout(limit);
        self.snapshot()
    }
}
