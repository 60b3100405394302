//! The content-addressed store.
//!
//! ```text
//! <store>/objects/ab/cdef…     immutable blobs named by the blake3 of their bytes
//! <store>/actions/ab/cdef….json one record per finished node, named by its key
//! <store>/refs/<node id>       key of the node's latest result (for `explain`, `gc`)
//! <store>/locks/               the store lock and per-key locks
//! <store>/tmp/                 work directories; never referenced by name
//! <store>/logs/<node id>.log   output of the node's last execution
//! ```
//!
//! Objects and records are written to a temporary file, fsynced and renamed, so a crash
//! never leaves a half-written file under a final name. A node is done iff its action
//! record exists, and the record is written last.
//!
//! Objects are made read-only and their modification time is set to a fixed stamp
//! (`OBJECT_MTIME`). Any later write to an object changes its mtime, so a damaged object
//! is noticed by a `stat` alone, without re-reading data on every `status`.

pub mod gc;
pub mod verify;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hash::{hash_file, Hash, Hasher};

/// The mtime every object carries (2001-09-09T01:46:40Z); any other value means the
/// object was written to after it was stored.
pub const OBJECT_MTIME: u64 = 1_000_000_000;
pub const ACTION_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub hash: Hash,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub stage: String,
    pub node: String,
    pub output_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepRecord {
    pub path: String,
    pub hash: Hash,
}

/// The record of a finished node: what went in, what came out, and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub schema: u32,
    pub node: String,
    pub key: Hash,
    pub kind: String,
    pub stage_version: String,
    pub params: Value,
    pub inputs: Vec<InputRecord>,
    pub deps: Vec<DepRecord>,
    pub outputs: Vec<OutputFile>,
    pub output_hash: Hash,
    pub provenance: Map<String, Value>,
}

impl ActionRecord {
    /// Read a record stored under `key`: it must be of this schema and name that key.
    pub fn decode(bytes: &[u8], key: &Hash) -> Result<ActionRecord, String> {
        let rec: ActionRecord = serde_json::from_slice(bytes).map_err(|e| format!("not an action record ({e})"))?;
        if rec.schema != ACTION_SCHEMA {
            return Err(format!("an action record of schema {}, not {ACTION_SCHEMA}", rec.schema));
        }
        if rec.key != *key {
            return Err(format!("the record of key {}, not {}", rec.key.short(), key.short()));
        }
        Ok(rec)
    }
}

/// Where an object lives relative to a store's root (local or remote: the same layout).
pub fn object_rel(h: &Hash) -> String {
    let hex = h.hex();
    format!("objects/{}/{}", &hex[..2], &hex[2..])
}

/// Where the action record of `key` lives relative to a store's root.
pub fn action_rel(key: &Hash) -> String {
    let hex = key.hex();
    format!("actions/{}/{}.json", &hex[..2], &hex[2..])
}

/// The hash of a node's output tree: paths and object hashes, in path order.
pub fn output_tree_hash(outputs: &[OutputFile]) -> Hash {
    let mut h = Hasher::new("wormflow-tree-1");
    for o in outputs {
        h.field(&o.path).hash(&o.hash);
    }
    h.finish()
}

/// A file name for a node id: readable, but with `/`, `%` and control characters escaped.
pub fn escape_node_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b',' | b'=' | b'[' | b']' | b'+' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

pub struct Store {
    pub root: PathBuf,
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", unique_suffix()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A name no other process or thread is using right now.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

/// Held for as long as the value lives.
pub struct LockGuard {
    _file: File,
}

impl Store {
    /// Open (creating if needed) the store at `root`, checking it can be written.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
        let fix = "set `store` in [pipeline] to a writable directory, or fix its permissions";
        for sub in ["objects", "actions", "refs", "locks", "tmp", "logs"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("cannot create store directory {}; {fix}", root.join(sub).display()))?;
        }
        let probe = root.join("tmp").join(format!("probe-{}", unique_suffix()));
        File::create(&probe).with_context(|| format!("store {} is not writable; {fix}", root.display()))?;
        let _ = fs::remove_file(&probe);
        Ok(store)
    }

    /// Open an existing store for reading only (status, explain, show); never creates it.
    pub fn open_existing(root: &Path) -> Store {
        Store { root: root.to_path_buf() }
    }

    pub fn object_path(&self, h: &Hash) -> PathBuf {
        self.root.join(object_rel(h))
    }

    fn action_path(&self, key: &Hash) -> PathBuf {
        self.root.join(action_rel(key))
    }

    fn ref_path(&self, node: &str) -> PathBuf {
        self.root.join("refs").join(escape_node_id(node))
    }

    pub fn log_path(&self, node: &str) -> PathBuf {
        self.root.join("logs").join(format!("{}.log", escape_node_id(node)))
    }

    /// A fresh directory under tmp/ for one node's work.
    pub fn new_work_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("tmp").join(unique_suffix());
        fs::create_dir_all(&dir).with_context(|| format!("cannot create work directory {}", dir.display()))?;
        Ok(dir)
    }

    /// Move a finished file into the objects (the caller's copy is consumed).
    /// If an intact object with the same hash exists, the file is just dropped; a damaged
    /// one is replaced.
    pub fn ingest_file(&self, src: &Path) -> Result<(Hash, u64)> {
        let (hash, size) = hash_file(src).with_context(|| format!("cannot read output {}", src.display()))?;
        self.ingest_hashed(src, hash, size)?;
        Ok((hash, size))
    }

    /// `ingest_file` for a file whose bytes the caller has just hashed (`hash`, `size`).
    pub fn ingest_hashed(&self, src: &Path, hash: Hash, size: u64) -> Result<()> {
        let dest = self.object_path(&hash);
        if self.object_intact(&hash, size) {
            fs::remove_file(src).ok();
            return Ok(());
        }
        {
            let f = OpenOptions::new().write(true).open(src).with_context(|| format!("cannot open {}", src.display()))?;
            f.sync_all()?;
            f.set_modified(UNIX_EPOCH + Duration::from_secs(OBJECT_MTIME))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src, fs::Permissions::from_mode(0o444))?;
        let parent = dest.parent().expect("object paths have a parent");
        fs::create_dir_all(parent)?;
        fs::rename(src, &dest).with_context(|| format!("cannot move {} into the store", src.display()))?;
        sync_dir(parent)?;
        Ok(())
    }

    /// Store bytes as an object.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Hash, u64)> {
        let tmp = self.root.join("tmp").join(format!("blob-{}", unique_suffix()));
        fs::write(&tmp, bytes)?;
        self.ingest_file(&tmp)
    }

    /// True when the object exists with the given size and has not been written to since
    /// it was stored (checked by `stat`, no data read).
    pub fn object_intact(&self, h: &Hash, size: u64) -> bool {
        match fs::metadata(self.object_path(h)) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.len() == size && m.mtime() == OBJECT_MTIME as i64 && m.mtime_nsec() == 0
            }
            Err(_) => false,
        }
    }

    pub fn read_action(&self, key: &Hash) -> Option<ActionRecord> {
        ActionRecord::decode(&fs::read(self.action_path(key)).ok()?, key).ok()
    }

    /// The action for `key`, if it exists and all its objects are intact.
    pub fn cached_action(&self, key: &Hash) -> Option<ActionRecord> {
        let rec = self.read_action(key)?;
        rec.outputs.iter().all(|o| self.object_intact(&o.hash, o.size)).then_some(rec)
    }

    pub fn has_action(&self, key: &Hash) -> bool {
        self.action_path(key).exists()
    }

    /// Record a finished node (written last, atomically), then point its ref at it.
    pub fn write_action(&self, rec: &ActionRecord) -> Result<()> {
        let path = self.action_path(&rec.key);
        fs::create_dir_all(path.parent().expect("action paths have a parent"))?;
        let mut bytes = serde_json::to_vec_pretty(rec)?;
        bytes.push(b'\n');
        atomic_write(&path, &bytes).with_context(|| format!("cannot write action record {}", path.display()))?;
        self.write_ref(&rec.node, &rec.key)
    }

    pub fn remove_action(&self, key: &Hash) -> io::Result<()> {
        fs::remove_file(self.action_path(key))
    }

    pub fn write_ref(&self, node: &str, key: &Hash) -> Result<()> {
        atomic_write(&self.ref_path(node), key.hex().as_bytes()).with_context(|| format!("cannot write ref for {node}"))
    }

    pub fn read_ref(&self, node: &str) -> Option<Hash> {
        fs::read_to_string(self.ref_path(node)).ok()?.trim().parse().ok()
    }

    /// The latest stored result of a node, whether or not it matches the current key.
    pub fn latest_action(&self, node: &str) -> Option<ActionRecord> {
        self.read_action(&self.read_ref(node)?)
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.root.join("locks").join(name);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))
    }

    /// Shared lock on the whole store: any number of runs, but no gc/repair meanwhile.
    pub fn lock_shared(&self) -> Result<LockGuard> {
        let f = self.lock_file("store.lock")?;
        f.lock_shared().context("cannot lock the store")?;
        Ok(LockGuard { _file: f })
    }

    /// Exclusive lock on the whole store (gc, verify --repair): waits for runs to end.
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        let f = self.lock_file("store.lock")?;
        f.lock().context("cannot lock the store")?;
        Ok(LockGuard { _file: f })
    }

    /// Exclusive lock on one key: the process holding it computes the node; another one
    /// wanting the same key waits and then finds the result stored.
    pub fn lock_key(&self, key: &Hash) -> Result<LockGuard> {
        let f = self.lock_file(&format!("{}.lock", key.hex()))?;
        f.lock().context("cannot lock a node")?;
        Ok(LockGuard { _file: f })
    }

    /// All action records in the store (for gc and verify).
    pub fn all_actions(&self) -> Vec<(PathBuf, Option<ActionRecord>)> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.root.join("actions")) {
            for file in read_dir_sorted(&shard) {
                let rec = fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
                out.push((file, rec));
            }
        }
        out
    }

    /// All object files with the hash their name claims.
    pub fn all_objects(&self) -> Vec<(PathBuf, Option<Hash>)> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.root.join("objects")) {
            let prefix = shard.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            for file in read_dir_sorted(&shard) {
                let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                out.push((file, format!("{prefix}{name}").parse().ok()));
            }
        }
        out
    }
}

pub fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_escape_to_safe_file_names() {
        assert_eq!(escape_node_id("train[model=lstm,n=3]"), "train[model=lstm,n=3]");
        assert_eq!(escape_node_id("a[p=x/y]"), "a[p=x%2Fy]");
        assert_eq!(escape_node_id(".."), "%2E.");
    }

    #[test]
    fn ingest_dedups_and_marks_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (h1, _) = store.put_bytes(b"hello").unwrap();
        let (h2, n) = store.put_bytes(b"hello").unwrap();
        assert_eq!(h1, h2);
        assert!(store.object_intact(&h1, n));
        // A write to the object is noticed without reading it.
        use std::os::unix::fs::PermissionsExt;
        let p = store.object_path(&h1);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"hellp").unwrap();
        assert!(!store.object_intact(&h1, n));
        // Storing the same bytes again repairs it.
        store.put_bytes(b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert!(store.object_intact(&h1, n));
    }
}
