//! SIGINT, SIGTERM and SIGHUP during `wormflow run`: the first stops new nodes from
//! starting and cancels the running ones (each node's process group is stopped, its work
//! directory removed, nothing half-done stored), then the run exits 128 + the signal's
//! number (130 for Ctrl-C, 143 for SIGTERM). A second signal kills every child process
//! group and exits at once.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exec::INTERRUPTED;

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// How long a cancelled run may take to wind down before it exits regardless.
const BACKSTOP: std::time::Duration = std::time::Duration::from_secs(20);

/// Start handling the signals on a thread of their own.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                wormflow_api::child::kill_all();
                eprintln!("interrupted again: stopped every running command; exiting now");
                std::process::exit(128 + sig);
            }
            RECEIVED.store(sig, Ordering::SeqCst);
            eprintln!("interrupted ({}): cancelling running nodes; nothing half-done is stored (signal again to quit at once)", name(sig));
            // Stages check the cancel flag at least every second and helpers are stopped
            // within GRACE, so a run ends in seconds. Should anything still hold on, quit
            // well before a scheduler's SIGKILL (Slurm's KillWait is 30 s): records are
            // written atomically, so an exit here loses only unfinished nodes.
            std::thread::spawn(move || {
                std::thread::sleep(BACKSTOP);
                wormflow_api::child::kill_all();
                eprintln!(
                    "still running {} s after {}: stopped every running command; exiting now",
                    BACKSTOP.as_secs(),
                    name(sig)
                );
                std::process::exit(128 + sig);
            });
        }
    });
    Ok(())
}

/// The signal that interrupted the run, if one did.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
