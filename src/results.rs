//! `results/` in the workspace: each node's latest outputs as files that open in ordinary
//! tools under their own names, in Hive-style folders — `results/<stage>/<file>` for a
//! stage without a matrix, `results/<stage>/<axis>=<value>/…/<file>` (axes by name, values
//! escaped as Hive does) for a matrix stage — so a sweep reads as one table with its axes
//! as columns: `pl.scan_parquet("results/evaluate_size/**/eval.parquet", hive_partitioning=True)`.
//!
//! They are copies of the store's objects (reflinks where the file system can share the
//! blocks), never links: a user who edits or deletes a file in results/ can never damage
//! the store, a browser takes a file's type from its own name, and moving the workspace
//! keeps them valid. Each copy is read-only with the store's fixed mtime, so an edit shows
//! in a `stat`; the next `run` restores it and says so, and `status` reports it.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::graph::NodeRecipe;
use crate::store::{shorten_name, unique_suffix, ActionRecord, Store, OBJECT_MTIME};

/// Marker link inside each results directory naming the key it shows; lets a no-op run
/// skip nodes whose files are current with one `readlink` and a `stat` per file.
const KEY_MARKER: &str = ".wormflow-key";

/// Where a node's files are shown.
pub fn dir_of(workspace: &Path, node: &NodeRecipe) -> PathBuf {
    let mut dir = workspace.join("results").join(&node.stage);
    for (axis, value) in &node.matrix {
        dir.push(hive_folder(axis, value));
    }
    dir
}

/// Longest folder name (file systems allow 255 bytes); axis names are at most
/// `graph::MAX_AXIS_NAME`, so a value always keeps well over 100 bytes.
const MAX_FOLDER: usize = 255;

/// `axis=value` with the value as a Hive partition value that polars and pyarrow read
/// back as written: the characters Hive escapes (and control characters) as %XX, which
/// they decode; "" as Hive's null partition. One exception keeps values distinct: a
/// string that reads as JSON — `"1"` beside the number 1, `true`, `"x"` in quotes — keeps
/// JSON's quotes (`x="1"`). Too long a name keeps a prefix and a hash (see `shorten_name`).
fn hive_folder(axis: &str, v: &Value) -> String {
    let raw = match v {
        Value::String(s) if s.is_empty() => return format!("{axis}=__HIVE_DEFAULT_PARTITION__"),
        Value::String(s) if serde_json::from_str::<Value>(s).is_ok() => v.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    format!("{axis}={}", shorten_name(out, &raw, MAX_FOLDER - axis.len() - 1))
}

/// What is wrong with `results/<node>/` for this action, if anything: another result shown,
/// or files edited or removed by hand. (`node` may differ from the record's own node: two
/// nodes with one recipe share one result.)
pub fn damage(workspace: &Path, node: &NodeRecipe, action: &ActionRecord) -> Option<String> {
    let dir = dir_of(workspace, node);
    if !fs::read_link(dir.join(KEY_MARKER))
        .is_ok_and(|t| t.as_os_str() == action.key.hex().as_str())
    {
        return Some("shows another result".into());
    }
    let mut changed = Vec::new();
    for o in &action.outputs {
        match fs::symlink_metadata(dir.join(&o.path)) {
            Ok(m)
                if m.is_file()
                    && m.len() == o.size
                    && m.mtime() == OBJECT_MTIME as i64
                    && m.mtime_nsec() == 0 => {}
            Ok(_) => changed.push(format!("{} was edited", o.path)),
            Err(_) => changed.push(format!("{} was removed", o.path)),
        }
    }
    (!changed.is_empty()).then(|| changed.join(", "))
}

/// Make the action the node's shown result: its files in results/ and the node's ref (what
/// `status` and `explain` compare with). Returns warnings for the user; never fails.
pub fn show(
    workspace: &Path,
    store: &Store,
    node: &NodeRecipe,
    action: &ActionRecord,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(repaired) = link(workspace, store, node, action) {
        warnings.push(format!("results/ {repaired}; restored it from the store"));
    }
    if store.read_ref(&node.id) != Some(action.key) {
        if let Err(e) = store.write_ref(&node.id, &action.key) {
            warnings.push(format!("{e:#}"));
        }
    }
    warnings
}

/// Make `results/<node>/` show the action's outputs. Returns what had to be repaired
/// (None when it was current or newly made). Best effort: a workspace that cannot hold the
/// files does not fail the run.
fn link(
    workspace: &Path,
    store: &Store,
    node: &NodeRecipe,
    action: &ActionRecord,
) -> Option<String> {
    let why = damage(workspace, node, action)?;
    let dir = dir_of(workspace, node);
    let existed = dir.exists() && why != "shows another result";
    match replace(&dir, store, action) {
        Ok(()) if existed => Some(why),
        Ok(()) => None,
        Err(e) => Some(format!("could not be written ({e})")),
    }
}

fn replace(dir: &Path, store: &Store, action: &ActionRecord) -> std::io::Result<()> {
    let parent = dir.parent().expect("results dir has a parent");
    fs::create_dir_all(parent)?;
    let fresh = parent.join(format!(".new-{}", unique_suffix()));
    let result = fill_and_swap(dir, &fresh, store, action);
    if result.is_err() {
        // Another run may have swapped in the same files meanwhile; leave no litter.
        let _ = fs::remove_dir_all(&fresh);
    }
    result
}

fn fill_and_swap(
    dir: &Path,
    fresh: &Path,
    store: &Store,
    action: &ActionRecord,
) -> std::io::Result<()> {
    let parent = dir.parent().expect("results dir has a parent");
    fs::create_dir_all(fresh)?;
    for o in &action.outputs {
        let dest = fresh.join(&o.path);
        fs::create_dir_all(dest.parent().expect("has parent"))?;
        // fs::copy uses copy_file_range, which shares blocks where the file system can.
        fs::copy(store.object_path(&o.hash), &dest)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o444))?;
        fs::File::open(&dest)?.set_modified(UNIX_EPOCH + Duration::from_secs(OBJECT_MTIME))?;
    }
    symlink(action.key.hex(), fresh.join(KEY_MARKER))?;
    let old = parent.join(format!(".old-{}", unique_suffix()));
    let had_old = fs::rename(dir, &old).is_ok();
    fs::rename(fresh, dir)?;
    if had_old {
        make_writable(&old);
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Remove the `.new-*`/`.old-*` folders a swap left behind when its process was killed
/// mid-way (kill -9, power loss): a Hive glob over results/ would read them as data. Only
/// those of processes no longer alive go (their names start with the pid, see
/// `unique_suffix`): another run may be swapping right now. Walks the stage folders and
/// the `axis=value` folders under them, not the nodes' own files.
pub fn remove_litter(workspace: &Path) {
    fn walk(dir: &Path, depth: usize) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let swap = name.strip_prefix(".new-").or_else(|| name.strip_prefix(".old-"));
            if let Some(rest) = swap {
                let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|pid| !alive(pid)) {
                    make_writable(&entry.path());
                    let _ = fs::remove_dir_all(entry.path());
                }
            } else if depth == 0 || name.contains('=') {
                walk(&entry.path(), depth + 1);
            }
        }
    }
    walk(&workspace.join("results"), 0);
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks permission and existence.
    unsafe {
        libc::kill(pid, 0) == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

/// A user may have made read-only directories in there; removal needs them writable.
fn make_writable(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755));
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hive_values_escape_what_hive_escapes() {
        let v = |x: Value| hive_folder("a", &x);
        assert_eq!(v(json!("lstm")), "a=lstm");
        assert_eq!(v(json!(24)), "a=24");
        assert_eq!(v(json!(0.5)), "a=0.5");
        assert_eq!(v(json!(true)), "a=true");
        assert_eq!(v(json!("a/b d")), "a=a%2Fb d");
        assert_eq!(v(json!("k=v")), "a=k%3Dv", "as written, not quoted");
        assert_eq!(v(json!("tab\tnl\n")), "a=tab%09nl%0A");
        assert_eq!(v(json!("1")), "a=%221%22", "the string \"1\" is not the number 1");
        assert_eq!(v(json!("\"1\"")), "a=%22%5C%221%5C%22%22", "nor is the string '\"1\"'");
        assert_eq!(v(json!("")), "a=__HIVE_DEFAULT_PARTITION__");
        let long = v(json!("x".repeat(300)));
        assert!(long.len() <= MAX_FOLDER && long.contains('~'));
        let axis = "y".repeat(100);
        let long = hive_folder(&axis, &json!("x".repeat(300)));
        assert!(long.len() <= MAX_FOLDER && long.contains('~'), "{}", long.len());
    }
}
