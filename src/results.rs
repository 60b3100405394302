//! `results/<node id>/` in the workspace: read-only links to each node's latest outputs,
//! so users open files without knowing hashes.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::store::{escape_node_id, unique_suffix, ActionRecord, Store};

/// Marker link inside each results directory naming the key it shows; lets a no-op run
/// skip nodes whose links are current with one `readlink`.
const KEY_MARKER: &str = ".wormflow-key";

/// Point `results/<node>/` at the action's outputs (no-op when already current).
/// Best effort: a workspace that cannot hold links does not fail the run.
pub fn link(workspace: &Path, store: &Store, action: &ActionRecord) {
    let dir = workspace.join("results").join(escape_node_id(&action.node));
    let key = action.key.hex();
    if fs::read_link(dir.join(KEY_MARKER)).is_ok_and(|t| t.as_os_str() == key.as_str()) {
        return;
    }
    let _ = replace_links(&dir, store, action, &key);
}

fn replace_links(dir: &Path, store: &Store, action: &ActionRecord, key: &str) -> std::io::Result<()> {
    let parent = dir.parent().expect("results dir has a parent");
    fs::create_dir_all(parent)?;
    let fresh = parent.join(format!(".new-{}", unique_suffix()));
    let result = fill_and_swap(dir, &fresh, store, action, key);
    if result.is_err() {
        // Another run may have swapped in the same links meanwhile; leave no litter.
        let _ = fs::remove_dir_all(&fresh);
    }
    result
}

fn fill_and_swap(dir: &Path, fresh: &Path, store: &Store, action: &ActionRecord, key: &str) -> std::io::Result<()> {
    let parent = dir.parent().expect("results dir has a parent");
    fs::create_dir_all(fresh)?;
    let objects = fs::canonicalize(&store.root)?;
    for o in &action.outputs {
        let dest = fresh.join(&o.path);
        fs::create_dir_all(dest.parent().expect("has parent"))?;
        let hex = o.hash.hex();
        symlink(objects.join("objects").join(&hex[..2]).join(&hex[2..]), dest)?;
    }
    symlink(key, fresh.join(KEY_MARKER))?;
    let old = parent.join(format!(".old-{}", unique_suffix()));
    let had_old = fs::rename(dir, &old).is_ok();
    fs::rename(fresh, dir)?;
    if had_old {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}
