//! Cancellation of a running node. On SIGINT/SIGTERM the engine sets the run's cancel flag;
//! a stage running in the engine's process checks it at least every second (`check`, or
//! `StageContext::check_cancel`) and returns `Cancelled`, so the run can exit within
//! seconds — before a scheduler's SIGKILL — and nothing of the node is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The error of a node that stopped because the run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled (the run was interrupted); nothing of this node was stored")
    }
}

impl std::error::Error for Cancelled {}

/// `Err(Cancelled)` once the run is being cancelled.
pub fn check(flag: &AtomicBool) -> Result<(), Cancelled> {
    if flag.load(Ordering::Relaxed) {
        Err(Cancelled)
    } else {
        Ok(())
    }
}

/// Sleep for `d`, waking early (with `Err`) when the run is cancelled.
pub fn sleep(d: Duration, flag: &AtomicBool) -> Result<(), Cancelled> {
    let end = Instant::now() + d;
    loop {
        check(flag)?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Whether an error chain says the node was cancelled (not that it failed).
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Cancelled>())
}
