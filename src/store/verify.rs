//! Re-hash every object; report (and optionally repair) corruption.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Result;

use super::{remove_entry, Store};
use crate::hash::{hash_file, Hash};

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub objects_checked: usize,
    pub bytes_checked: u64,
    /// Objects whose bytes do not match their name, or that cannot be read (with why).
    pub corrupt_objects: Vec<(PathBuf, String)>,
    /// Action records that cannot be read, or that name a missing or corrupt object.
    pub broken_actions: Vec<(PathBuf, String)>,
    /// Checkpoint generations that are not whole (a resuming node would discard them).
    pub damaged_checkpoints: Vec<(PathBuf, String)>,
    pub repaired: bool,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.broken_actions.is_empty()
            && self.damaged_checkpoints.is_empty()
    }
}

/// Check every object against its name, using `threads` threads. With `repair`, delete
/// corrupt objects and the records that depend on them, so the next `run` recomputes
/// exactly those nodes.
pub fn verify(store: &Store, repair: bool, threads: usize) -> Result<VerifyReport> {
    let _lock = if repair { Some(store.lock_exclusive()?) } else { None };
    let objects = store.all_objects();
    let corrupt = Mutex::new(Vec::new());
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let chunk = objects.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for part in objects.chunks(chunk) {
            let (corrupt, bytes) = (&corrupt, &bytes);
            s.spawn(move || {
                for (path, claimed) in part {
                    let problem = match (claimed, std::fs::symlink_metadata(path)) {
                        (None, _) => Some("not named by a hash".to_string()),
                        (_, Ok(m)) if !m.is_file() => Some(
                            "a directory (or other non-file) where an object belongs".to_string(),
                        ),
                        (Some(c), _) => match hash_file(path) {
                            Ok((h, n)) => {
                                bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                                (h != *c).then(|| "its bytes do not match its name".to_string())
                            }
                            Err(e) => Some(format!("unreadable ({e})")),
                        },
                    };
                    if let Some(why) = problem {
                        corrupt.lock().expect("lock").push((path.clone(), *claimed, why));
                    }
                }
            });
        }
    });
    let mut corrupt = corrupt.into_inner().expect("lock");
    corrupt.sort_by(|a, b| a.0.cmp(&b.0));
    let bad_hashes: HashSet<Hash> = corrupt.iter().filter_map(|(_, h, _)| *h).collect();
    let mut report = VerifyReport {
        objects_checked: objects.len(),
        bytes_checked: bytes.into_inner(),
        corrupt_objects: corrupt.into_iter().map(|(p, _, why)| (p, why)).collect(),
        ..Default::default()
    };
    for (path, rec) in store.all_actions() {
        let problem = match rec {
            Err(why) => Some(format!("not a valid record: {why}")),
            Ok(rec) => rec.outputs.iter().find_map(|o| {
                if bad_hashes.contains(&o.hash) {
                    Some(format!("{}: output {} is corrupt", rec.node, o.path))
                } else if !store.object_path(&o.hash).exists() {
                    Some(format!("{}: output {} is missing", rec.node, o.path))
                } else {
                    None
                }
            }),
        };
        if let Some(p) = problem {
            report.broken_actions.push((path, p));
        }
    }
    for dir in super::read_dir_sorted(&store.root.join(super::CHECKPOINTS)) {
        report.damaged_checkpoints.extend(wormflow_api::checkpoint::damaged(&dir));
    }
    if repair && !report.is_clean() {
        for (p, _) in &report.corrupt_objects {
            remove_entry(p)?;
        }
        for (p, _) in &report.damaged_checkpoints {
            let _ = std::fs::remove_dir_all(p);
        }
        for (p, _) in &report.broken_actions {
            remove_entry(p)?;
        }
        report.repaired = true;
    }
    Ok(report)
}
