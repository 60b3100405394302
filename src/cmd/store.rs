//! `gc` and `verify`: looking after the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::status::{NodeState, Resolver};
use crate::store::{gc, verify, Store};
use crate::workspace::Planned;

pub(super) fn gc_cmd(p: &Planned, dry_run: bool, forget: &[PathBuf]) -> Result<ExitCode> {
    use crate::store::roots::{pipeline_id, Roots};
    let store = Store::open_marked(&p.store_root)?;
    let this = pipeline_id(&p.file);
    for f in forget {
        let id = pipeline_id(f);
        if id == this {
            bail!(
                "--forget {}: that is the pipeline gc runs for; its results are what it keeps",
                f.display()
            );
        }
        let verb = if dry_run { "would forget" } else { "forgot" };
        match dry_run {
            true if Roots::read(&store, &id).is_some() => {
                println!("{verb} the results of {}", id.display())
            }
            false if Roots::forget(&store, &id)? => {
                println!("{verb} the results of {}", id.display())
            }
            _ => println!("{} has no results recorded in this store", id.display()),
        }
    }
    let forgotten: Vec<PathBuf> = forget.iter().map(|f| pipeline_id(f)).collect();
    // Who keeps what: this pipeline (computed now), then every other recorded pipeline.
    let mut kept_for: Vec<(String, usize)> = Vec::new();
    let keep = || {
        let resolver = Resolver::new(&p.graph, &store, &p.workspace);
        let mut keep = gc::Keep::default();
        for (i, state) in resolver.states(None).iter().enumerate() {
            match state {
                Some(NodeState::Fresh { key, .. }) => {
                    keep.actions.insert(*key);
                    keep.jobs.insert(*key);
                }
                Some(NodeState::Stale { parts, .. }) => {
                    keep.jobs.insert(parts.key);
                }
                _ => {}
            }
            // The latest result of every current node stays too, so `explain` keeps working.
            if let Some(k) = store.read_ref(&p.graph.nodes[i].id) {
                keep.actions.insert(k);
            }
        }
        kept_for.push((format!("{} (this pipeline)", this.display()), keep.actions.len()));
        for (path, roots) in Roots::all(&store) {
            let Some(roots) = roots else {
                kept_for.push((format!("{} (unreadable; kept nothing)", path.display()), 0));
                continue;
            };
            if roots.pipeline == this || forgotten.contains(&roots.pipeline) {
                continue;
            }
            if !roots.pipeline.exists() {
                kept_for.push((
                    format!("{} (file gone; its results are released)", roots.pipeline.display()),
                    0,
                ));
                if !dry_run {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            kept_for.push((
                format!("{} (last run {})", roots.pipeline.display(), roots.updated),
                roots.nodes.len(),
            ));
            keep.actions.extend(roots.nodes.values().copied());
            keep.jobs.extend(roots.nodes.values().copied());
        }
        keep
    };
    let r = gc::collect(&store, keep, dry_run)?;
    if !dry_run {
        crate::results::remove_litter(&p.workspace);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    if dry_run && !r.removed_nodes.is_empty() {
        println!(
            "{verb} the results of {} node records no pipeline reaches:",
            r.removed_nodes.len()
        );
        for n in &r.removed_nodes {
            println!("  {n}");
        }
    }
    for (who, n) in &kept_for {
        println!("keeping {n} results for {who}");
    }
    println!(
        "{verb} {} action records and {} objects ({:.1} MB); kept {} records, {} objects",
        r.actions_removed,
        r.objects_removed,
        r.bytes_freed as f64 / 1e6,
        r.actions_kept,
        r.objects_kept
    );
    if r.checkpoints_removed > 0 {
        println!(
            "{verb} {} checkpoints of finished nodes or of nodes no longer in the pipeline",
            r.checkpoints_removed
        );
    }
    if r.job_files_removed > 0 {
        println!(
            "{verb} {} Slurm job files of nodes no longer in the pipeline",
            r.job_files_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify_cmd(p: &Planned, repair: bool) -> Result<ExitCode> {
    if !p.store_root.exists() {
        println!("no store at {} yet: nothing to verify", p.store_root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open_marked(&p.store_root)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let r = verify::verify(&store, repair, threads)?;
    for (o, why) in &r.corrupt_objects {
        println!("corrupt object: {} ({why})", o.display());
    }
    for (path, why) in &r.broken_actions {
        println!("broken record: {} ({why})", path.display());
    }
    for (path, why) in &r.damaged_checkpoints {
        println!(
            "damaged checkpoint: {} ({why}); the node would start again without it",
            path.display()
        );
    }
    println!(
        "checked {} objects ({:.1} MB): {}",
        r.objects_checked,
        r.bytes_checked as f64 / 1e6,
        if r.is_clean() {
            "all intact".to_string()
        } else if r.repaired {
            format!(
                "removed {} corrupt objects and {} records{}; `wormflow run` recomputes them",
                r.corrupt_objects.len(),
                r.broken_actions.len(),
                match r.damaged_checkpoints.len() {
                    0 => String::new(),
                    n => format!(" (and {n} damaged checkpoints: those nodes start afresh)"),
                }
            )
        } else {
            "damage found; run `wormflow verify --repair`, then `wormflow run`".to_string()
        }
    );
    Ok(if r.is_clean() || r.repaired { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
