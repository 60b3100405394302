//! Garbage collection: keep what the current pipeline and every other pipeline recorded in
//! the store (`roots/`) can reach, delete the rest.

use std::collections::HashSet;
use std::fs;

use anyhow::Result;

use super::{read_dir_sorted, remove_entry, Store};
use crate::hash::Hash;

#[derive(Debug, Default)]
pub struct GcReport {
    pub actions_removed: usize,
    pub objects_removed: usize,
    pub bytes_freed: u64,
    pub actions_kept: usize,
    pub objects_kept: usize,
    pub job_files_removed: usize,
    /// Checkpoint folders of finished keys or keys no current node has.
    pub checkpoints_removed: usize,
    /// Node ids of the records removed (or that would be), sorted.
    pub removed_nodes: Vec<String>,
}

/// What the current pipeline can reach.
#[derive(Debug, Default)]
pub struct Keep {
    /// Action records to keep (with the objects they reference).
    pub actions: HashSet<Hash>,
    /// Keys whose Slurm job files (`<store>/slurm/KEY.*`) stay: every current key, stored or
    /// not, since a failed job's output is what one reads next and a queued job needs its
    /// description. Files of keys no current node has are history.
    pub jobs: HashSet<Hash>,
}

/// Remove every action not in `keep().actions` and every object no kept action references,
/// the Slurm job files of keys not in `keep().jobs`, plus leftover work directories and key
/// locks. Takes the store's exclusive lock first, so it waits for running `wormflow run`s and
/// `wormflow exec` jobs to finish, and only then asks what to keep (what they stored counts).
pub fn collect(store: &Store, keep: impl FnOnce() -> Keep, dry_run: bool) -> Result<GcReport> {
    let _lock = store.lock_exclusive()?;
    let keep = keep();
    let keep_actions = &keep.actions;
    let mut report = GcReport::default();
    let mut live_objects = HashSet::new();
    for (path, rec) in store.all_actions() {
        match rec {
            Ok(rec) if keep_actions.contains(&rec.key) => {
                report.actions_kept += 1;
                live_objects.extend(rec.outputs.iter().map(|o| o.hash));
            }
            other => {
                report.actions_removed += 1;
                report.removed_nodes.push(match other {
                    Ok(rec) => rec.node,
                    Err(why) => format!("{} ({why})", path.display()),
                });
                if !dry_run {
                    remove_entry(&path)?;
                }
            }
        }
    }
    report.removed_nodes.sort();
    for (path, hash) in store.all_objects() {
        if hash.is_some_and(|h| live_objects.contains(&h))
            && fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
        {
            report.objects_kept += 1;
            continue;
        }
        report.objects_removed += 1;
        report.bytes_freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        if !dry_run {
            remove_entry(&path)?;
        }
    }
    for file in read_dir_sorted(&store.root.join("slurm")) {
        let key: Option<Hash> =
            file.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok());
        if key.is_some_and(|k| keep.jobs.contains(&k)) {
            continue;
        }
        report.job_files_removed += 1;
        if !dry_run {
            remove_entry(&file)?;
        }
    }
    // Checkpoints: kept while their key is current and not finished (a rerun resumes it).
    for dir in read_dir_sorted(&store.root.join(super::CHECKPOINTS)) {
        let key: Option<Hash> =
            dir.file_name().and_then(|s| s.to_str()).and_then(|s| s.parse().ok());
        if key.is_some_and(|k| keep.jobs.contains(&k) && store.cached_action(&k).is_none()) {
            continue;
        }
        report.checkpoints_removed += 1;
        if !dry_run {
            let _ = fs::remove_dir_all(&dir);
        }
    }
    if !dry_run {
        // Temporaries of atomic writes a crash cut short (no run is writing: gc holds the
        // store's exclusive lock).
        let shards = read_dir_sorted(&store.root.join("actions"));
        for dir in shards.iter().chain([&store.root.join("refs")]) {
            for f in read_dir_sorted(dir) {
                if f.file_name().is_some_and(|n| super::is_temp(&n.to_string_lossy())) {
                    let _ = fs::remove_file(f);
                }
            }
        }
        for leftover in read_dir_sorted(&store.root.join("tmp")) {
            let _ = fs::remove_dir_all(&leftover).or_else(|_| fs::remove_file(&leftover));
        }
        for lock in read_dir_sorted(&store.root.join("locks")) {
            if lock.file_name().is_some_and(|n| n != "store.lock") {
                let _ = fs::remove_file(lock);
            }
        }
        for r in read_dir_sorted(&store.root.join("refs")) {
            if !r.exists() {
                continue;
            }
            let target: Option<Hash> =
                fs::read_to_string(&r).ok().and_then(|s| s.trim().parse().ok());
            if !target.is_some_and(|k| keep_actions.contains(&k)) {
                let _ = fs::remove_file(r);
            }
        }
    }
    Ok(report)
}
