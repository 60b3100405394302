//! A long node's checkpoints: what it saves to resume after a kill, in the directory the
//! engine gives it (`StageContext::checkpoints`, `<store>/checkpoints/<key>/`), which
//! outlives an interrupted attempt and is removed once the node's result is stored.
//!
//! A checkpoint is a *generation*: a folder `gen-<n>` holding the kind's files and, written
//! last, `manifest.json` (file → blake3 and size). A generation is trusted only whole: one
//! whose manifest is missing (a kill mid-write) or whose files do not hash to it (a flipped
//! byte) is never read. Saving writes the next generation under a temporary name, renames
//! it into place, then removes the older ones, so a kill at any point leaves the previous
//! checkpoint or the new one — never a mixture. The engine's `verify` checks generations
//! the same way (`check`), `gc` removes folders of finished or unknown keys.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    /// File name → (blake3 hex, size in bytes).
    files: BTreeMap<String, (String, u64)>,
}

fn generation_number(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("gen-")?.parse().ok()
}

/// The complete-looking generations under `dir`, newest first.
fn generations(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((generation_number(&e.path())?, e.path())))
        .collect();
    found.sort_by_key(|b| std::cmp::Reverse(b.0));
    found
}

/// Save a new generation: `write` fills the folder it is given; the manifest is written
/// last, the folder renamed into place, older generations removed.
pub fn save(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let next = generations(dir).first().map_or(1, |(n, _)| n + 1);
    let staging = dir.join(format!("tmp-{}-{next}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    write(&staging)?;
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&staging)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let bytes = fs::read(&path)?;
        fs::File::open(&path)?.sync_all()?;
        files.insert(name, (blake3::hash(&bytes).to_hex().to_string(), bytes.len() as u64));
    }
    let manifest = serde_json::to_vec_pretty(&Manifest { files })?;
    let mut f = fs::File::create(staging.join(MANIFEST))?;
    f.write_all(&manifest)?;
    f.sync_all()?;
    let target = dir.join(format!("gen-{next}"));
    fs::rename(&staging, &target)
        .with_context(|| format!("cannot move the checkpoint into {}", target.display()))?;
    for (n, old) in generations(dir) {
        if n < next {
            let _ = fs::remove_dir_all(old);
        }
    }
    // Staging folders of attempts that were killed mid-write.
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("tmp-") && entry.path() != staging {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Whether generation `path` is whole: its manifest is there and every file it lists has
/// that hash and size (and nothing else is there). The error says what is wrong.
pub fn check(path: &Path) -> Result<()> {
    let manifest: Manifest = serde_json::from_slice(
        &fs::read(path.join(MANIFEST)).context("it has no manifest (a save was cut short)")?,
    )
    .context("its manifest is damaged")?;
    for (name, (hash, size)) in &manifest.files {
        let bytes = fs::read(path.join(name)).with_context(|| format!("{name} is missing"))?;
        if bytes.len() as u64 != *size || blake3::hash(&bytes).to_hex().as_str() != hash {
            bail!("{name} does not match its manifest (damaged)");
        }
    }
    for entry in fs::read_dir(path)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != MANIFEST && !manifest.files.contains_key(&name) {
            bail!("{name} is not in its manifest");
        }
    }
    Ok(())
}

/// The newest whole generation under `dir`, if any, and why each newer one was discarded
/// (those are removed: a damaged checkpoint is never trusted).
pub fn latest(dir: &Path) -> (Option<PathBuf>, Vec<String>) {
    let mut discarded = Vec::new();
    for (_, path) in generations(dir) {
        match check(&path) {
            Ok(()) => return (Some(path), discarded),
            Err(e) => {
                discarded.push(format!("checkpoint {} discarded: {e:#}", path.display()));
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
    (None, discarded)
}

/// Every generation under `dir` that is not whole, with why (for `wormflow verify`).
pub fn damaged(dir: &Path) -> Vec<(PathBuf, String)> {
    generations(dir)
        .into_iter()
        .filter_map(|(_, path)| check(&path).err().map(|e| (path, format!("{e:#}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_text(dir: &Path, text: &str) {
        save(dir, |d| Ok(fs::write(d.join("state.txt"), text)?)).unwrap();
    }

    #[test]
    fn the_newest_whole_generation_wins_and_damage_is_never_read() {
        let tmp = std::env::temp_dir().join(format!("wf-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        save_text(&tmp, "one");
        save_text(&tmp, "two");
        let (latest, why) = latest(&tmp);
        let latest = latest.unwrap();
        assert!(why.is_empty());
        assert_eq!(fs::read_to_string(latest.join("state.txt")).unwrap(), "two");
        assert_eq!(generations(&tmp).len(), 1, "older generations are removed");
        // A flipped byte: discarded with a reason, and removed.
        let mut bytes = fs::read(latest.join("state.txt")).unwrap();
        bytes[0] ^= 1;
        fs::write(latest.join("state.txt"), bytes).unwrap();
        assert_eq!(damaged(&tmp).len(), 1);
        let (none, why) = super::latest(&tmp);
        assert!(none.is_none());
        assert!(why[0].contains("state.txt does not match"), "{why:?}");
        // A save cut short (no manifest) is never read either.
        fs::create_dir_all(tmp.join("gen-9")).unwrap();
        fs::write(tmp.join("gen-9/state.txt"), "half").unwrap();
        assert!(super::latest(&tmp).0.is_none());
        let _ = fs::remove_dir_all(&tmp);
    }
}
