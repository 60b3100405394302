//! The log every node leaves in `<store>/logs/<node>.log`, whatever its kind: a header, the
//! progress it reported (at most one line a second, with the time since it started), what
//! the kind itself wrote to `wormflow_api::KIND_LOG` in its scratch directory (a command's stdout and stderr, the torch
//! helper's stderr), and how it ended.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wormflow_api::Progress;

use crate::store::Store;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub struct NodeLog {
    started: Instant,
    lines: Mutex<(String, Option<Instant>)>, // the log so far, and when progress was last logged
}

impl NodeLog {
    pub fn new(node: &str, kind: &str, key: &str) -> NodeLog {
        let header = format!("# {node} (kind {kind}, key {key})\n");
        NodeLog { started: Instant::now(), lines: Mutex::new((header, None)) }
    }

    /// Log a progress report unless one was logged less than a second ago (the last one of
    /// a node — fraction 1 — always is).
    pub fn progress(&self, update: &Progress) {
        let mut guard = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = guard.1.is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY);
        if due || update.fraction >= 1.0 {
            let elapsed = self.started.elapsed().as_secs_f64();
            let percent = (update.fraction.clamp(0.0, 1.0) * 100.0).round();
            guard.0.push_str(&format!("[{elapsed:8.1}s] {percent:>3}% {}\n", update.message));
            guard.1 = Some(now);
        }
    }

    /// Write the log to the store: what was logged, the kind's own output from `scratch`,
    /// and the outcome. Best effort: a log that cannot be written fails nothing.
    pub fn keep(&self, store: &Store, node: &str, scratch: &Path, error: Option<&str>) {
        let guard = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = guard.0.clone();
        if let Ok(own) = std::fs::read_to_string(scratch.join(wormflow_api::KIND_LOG)) {
            text.push_str(&own);
            if !own.ends_with('\n') {
                text.push('\n');
            }
        }
        let seconds = self.started.elapsed().as_secs_f64();
        match error {
            None => text.push_str(&format!("# done in {seconds:.1}s\n")),
            Some(e) => text.push_str(&format!("# FAILED after {seconds:.1}s: {e}\n")),
        }
        if let Ok(mut f) = File::create(store.log_path(node)) {
            let _ = f.write_all(text.as_bytes());
        }
    }
}
