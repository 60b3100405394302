//! The content-addressed store.
//!
//! ```text
//! <store>/objects/ab/cdef…     immutable blobs named by the blake3 of their bytes
//! <store>/actions/ab/cdef….json one record per finished node, named by its key
//! <store>/refs/<node id>       key of the node's latest result (for `explain`, `gc`)
//! <store>/locks/               the store lock and per-key locks
//! <store>/tmp/                 work directories; never referenced by name
//! <store>/logs/<node id>.log   output of the node's last execution
//! <store>/roots/<pipeline>.json what each pipeline using the store reached at its last run
//! <store>/wormflow-store.toml  the marker: this directory is a store wormflow made
//! ```
//!
//! Only a directory carrying the marker is ever written to, collected or repaired: a
//! `store = "/"` or a user's own folder is refused, never cleaned.
//!
//! Objects and records are written to a temporary file, flushed to disk and only then
//! renamed, so a crash never leaves a half-written file under a final name (a node's outputs
//! are flushed together with `syncfs`, see `ingest_files`). A node is done iff its action
//! record exists, and the record is written last.
//!
//! Objects are made read-only and their modification time is set to a fixed stamp
//! (`OBJECT_MTIME`). Any later write to an object changes its mtime, so a damaged object
//! is noticed by a `stat` alone, without re-reading data on every `status`.

pub mod gc;
pub mod roots;
pub mod verify;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::environment;
use crate::fsutil::sync_dir;
pub use crate::fsutil::{atomic_write, unique_suffix};
use crate::hash::{hash_file, Hash, Hasher};

/// The mtime every object carries (2001-09-09T01:46:40Z); any other value means the
/// object was written to after it was stored.
pub const OBJECT_MTIME: u64 = 1_000_000_000;
pub const ACTION_SCHEMA: u32 = 1;
/// The marker file of a store, and the layout version it names.
pub const MARKER: &str = "wormflow-store.toml";
pub const STORE_FORMAT: u32 = 1;
/// The folder of nodes' checkpoints, one per key (`wormflow_api::checkpoint`).
pub const CHECKPOINTS: &str = "checkpoints";

/// What a store may hold at its top level (a store written before the marker existed is
/// adopted only when it holds nothing else).
const STORE_ENTRIES: &[&str] = &[
    "objects",
    "actions",
    "refs",
    "locks",
    "tmp",
    "logs",
    "slurm",
    "roots",
    CHECKPOINTS,
    "statcache.json",
    MARKER,
];

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
    /// What the stage version is made of (file → hash, `crate x` → version), so `explain`
    /// can name what changed; empty for kinds without a manifest and older records.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub code: BTreeMap<String, String>,
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
        let rec: ActionRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("not an action record ({e})"))?;
        if rec.schema != ACTION_SCHEMA {
            return Err(format!("an action record of schema {}, not {ACTION_SCHEMA}", rec.schema));
        }
        if rec.key != *key {
            return Err(format!("the record of key {}, not {}", rec.key.short(), key.short()));
        }
        for o in &rec.outputs {
            check_relative_path(&o.path).map_err(|e| format!("output path {:?} {e}", o.path))?;
        }
        Ok(rec)
    }
}

pub use wormflow_api::relpath::check_relative_path;

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

/// Longest file name made from a node id; longer ones keep a readable prefix and end in a
/// hash of the whole id (file systems refuse names over 255 bytes, and `.log` is appended).
const MAX_NAME: usize = 200;

/// A file name for a node id: readable, but with `/`, `%` and control characters escaped,
/// and shortened (with a hash of the id) when too long for a file name.
pub fn escape_node_id(id: &str) -> String {
    shorten_name(escape_bytes(id), id, MAX_NAME)
}

/// `escaped` (a %XX-escaped form of `raw`) as a name of at most `max` bytes: whole when it
/// fits, else a readable prefix — never cut inside a character or a %XX escape — then `~`
/// and 16 hex digits of the hash of `raw`, so distinct values keep distinct names.
pub fn shorten_name(escaped: String, raw: &str, max: usize) -> String {
    if escaped.len() <= max {
        return escaped;
    }
    let mut cut = max - 18;
    while !escaped.is_char_boundary(cut)
        || escaped.as_bytes()[cut - 1] == b'%'
        || escaped.as_bytes()[cut - 2] == b'%'
    {
        cut -= 1;
    }
    format!("{}~{}", &escaped[..cut], &Hash::of_bytes(raw.as_bytes()).hex()[..16])
}

fn escape_bytes(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'.'
            | b'_'
            | b'-'
            | b','
            | b'='
            | b'['
            | b']'
            | b'+'
            | b'@' => out.push(b as char),
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
    /// Objects this process re-hashed and found intact (see `verify_object`).
    verified: std::sync::Mutex<std::collections::HashSet<Hash>>,
}

/// The temporary name `atomic_write` writes to before renaming; never a record or a ref.
pub fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// Held for as long as the value lives.
pub struct LockGuard {
    _file: File,
}

impl Store {
    /// Bytes this process may still write on the store's file system (statvfs), if the
    /// system can tell.
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a zeroed struct for the kernel to fill.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Open (creating if needed) the store at `root`, checking it can be written. A
    /// directory that exists but is not a store (no marker, other files) is refused.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store::at(root);
        let fix = "set `store` in [pipeline] to a writable directory, or fix its permissions";
        if !store.is_marked() {
            fs::create_dir_all(root)
                .with_context(|| format!("cannot create store directory {}; {fix}", root.display()))
                .map_err(environment)?;
            // Two runs creating one store at once: one marks it, the other then finds it marked.
            let dir = File::open(root)
                .with_context(|| format!("cannot open store directory {}; {fix}", root.display()))
                .map_err(environment)?;
            dir.lock()
                .with_context(|| format!("cannot lock store directory {}", root.display()))
                .map_err(environment)?;
            if !store.is_marked() {
                store.adopt_or_refuse()?;
                let marker = format!("# This directory is a wormflow store: content-addressed results. Do not put other files here.\nformat = {STORE_FORMAT}\n");
                atomic_write(&root.join(MARKER), marker.as_bytes())
                    .with_context(|| format!("store {} is not writable; {fix}", root.display()))
                    .map_err(environment)?;
            }
        }
        store.check_format()?;
        for sub in ["objects", "actions", "refs", "locks", "tmp", "logs"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| {
                    format!("cannot create store directory {}; {fix}", root.join(sub).display())
                })
                .map_err(environment)?;
        }
        let probe = root.join("tmp").join(format!("probe-{}", unique_suffix()));
        File::create(&probe)
            .with_context(|| format!("store {} is not writable; {fix}", root.display()))
            .map_err(environment)?;
        let _ = fs::remove_file(&probe);
        Ok(store)
    }

    /// Open an existing store for reading only (status, explain, show); never creates it.
    pub fn open_existing(root: &Path) -> Store {
        Store::at(root)
    }

    fn at(root: &Path) -> Store {
        Store { root: root.to_path_buf(), verified: Default::default() }
    }

    /// Open a store that must already exist and carry the marker (gc, verify --repair):
    /// these delete files, so they never act on a directory wormflow did not make.
    pub fn open_marked(root: &Path) -> Result<Store> {
        let store = Store::at(root);
        if !store.is_marked() {
            anyhow::bail!(
                "{} is not a wormflow store (it has no {MARKER}); refusing to delete anything there. Check `store` in [pipeline]",
                root.display()
            );
        }
        store.check_format()?;
        Ok(store)
    }

    pub fn is_marked(&self) -> bool {
        self.root.join(MARKER).is_file()
    }

    fn check_format(&self) -> Result<()> {
        let path = self.root.join(MARKER);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let format = text
            .lines()
            .find_map(|l| l.strip_prefix("format = "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        match format {
            Some(STORE_FORMAT) => Ok(()),
            Some(other) => anyhow::bail!("{}: store format {other}, but this wormflow reads format {STORE_FORMAT}; use the wormflow that wrote it, or another `store`", path.display()),
            None => anyhow::bail!("{}: damaged store marker (no `format = N` line); restore it or choose another `store`", path.display()),
        }
    }

    /// A directory without the marker becomes a store only when it is missing, empty, or a
    /// store written before markers existed (nothing but the store's own entries, with
    /// objects/ and actions/).
    fn adopt_or_refuse(&self) -> Result<()> {
        let Ok(entries) = fs::read_dir(&self.root) else { return Ok(()) };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let foreign: Vec<&String> =
            names.iter().filter(|n| !STORE_ENTRIES.contains(&n.as_str())).collect();
        let legacy = names.iter().any(|n| n == "objects") && names.iter().any(|n| n == "actions");
        if foreign.is_empty() && legacy {
            return Ok(());
        }
        let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
        anyhow::bail!(
            "{} exists and is not a wormflow store (it holds {}{}); wormflow keeps its results only in a directory it created. Set `store` in [pipeline] to a new or empty directory",
            self.root.display(),
            if shown.is_empty() { "no objects/ and actions/".to_string() } else { shown.join(", ") },
            if foreign.len() > shown.len() { ", …" } else { "" }
        )
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

    /// The checkpoint folder of the node with `key` (created by the engine when its kind
    /// resumes, removed once its result is stored).
    pub fn checkpoint_dir(&self, key: &Hash) -> PathBuf {
        self.root.join(CHECKPOINTS).join(key.hex())
    }

    /// A fresh directory under tmp/ for one node's work.
    pub fn new_work_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("tmp").join(unique_suffix());
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create work directory {}", dir.display()))?;
        Ok(dir)
    }

    /// Move a finished file into the objects (the caller's copy is consumed).
    /// If an intact object with the same hash exists, the file is just dropped; a damaged
    /// one is replaced.
    pub fn ingest_file(&self, src: &Path) -> Result<(Hash, u64)> {
        let (hash, size) =
            hash_file(src).with_context(|| format!("cannot read output {}", src.display()))?;
        self.ingest_hashed(src, hash, size)?;
        Ok((hash, size))
    }

    /// `ingest_file` for a file whose bytes the caller has just hashed (`hash`, `size`).
    /// A file with other hard links (a user's file linked into an output) is copied, never
    /// moved or re-moded: the store owns only what it made.
    pub fn ingest_hashed(&self, src: &Path, hash: Hash, size: u64) -> Result<()> {
        if let Some(staged) = self.stage_object(src, hash, size)? {
            File::open(&staged)?.sync_all()?;
            self.place_object(&staged, &hash)?;
            sync_dir(self.object_path(&hash).parent().expect("object paths have a parent"))?;
        }
        Ok(())
    }

    /// Move a node's finished output files into the objects, all at once: the same crash
    /// guarantee as `ingest_file` (no object ever has its final name before its bytes are on
    /// disk) with two `syncfs` calls for the batch instead of two fsyncs per file, so a node
    /// writing 10,000 small files is stored in about a second, not a minute.
    pub fn ingest_files(&self, srcs: &[PathBuf]) -> Result<Vec<(Hash, u64)>> {
        let mut hashed = Vec::with_capacity(srcs.len());
        let mut staged = Vec::new();
        for src in srcs {
            let (hash, size) =
                hash_file(src).with_context(|| format!("cannot read output {}", src.display()))?;
            if let Some(path) = self.stage_object(src, hash, size)? {
                staged.push((path, hash));
            }
            hashed.push((hash, size));
        }
        if staged.is_empty() {
            return Ok(hashed);
        }
        self.sync_filesystem()?; // the bytes, before any gets its final name
        for (path, hash) in &staged {
            self.place_object(path, hash)?;
        }
        self.sync_filesystem()?; // the names, before the caller writes the record
        Ok(hashed)
    }

    /// Flush everything written on the store's filesystem (`syncfs(2)`: one call for what
    /// would otherwise be an fsync per file and per directory).
    fn sync_filesystem(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let root = File::open(&self.root)
            .with_context(|| format!("cannot open the store {}", self.root.display()))?;
        // SAFETY: syncfs only reads the descriptor, which lives until the end of this scope.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            let e = io::Error::last_os_error();
            return Err(e).with_context(|| {
                format!("cannot flush the store {} to disk", self.root.display())
            });
        }
        Ok(())
    }

    /// Make `src` ready to become the object `hash`: `None` when an intact object already
    /// holds these bytes (`src` is dropped), else the path of a file the store owns (`src`
    /// itself, or a copy of it when it has other hard links), not yet synced or renamed.
    fn stage_object(&self, src: &Path, hash: Hash, size: u64) -> Result<Option<PathBuf>> {
        use std::os::unix::fs::MetadataExt;
        if self.object_intact(&hash, size) {
            fs::remove_file(src).ok();
            return Ok(None);
        }
        let links = fs::symlink_metadata(src)
            .with_context(|| format!("cannot read output {}", src.display()))?
            .nlink();
        if links <= 1 {
            return Ok(Some(src.to_path_buf()));
        }
        let copy = self.root.join("tmp").join(format!("copy-{}", unique_suffix()));
        fs::copy(src, &copy)
            .with_context(|| format!("cannot copy {} into the store", src.display()))?;
        let copied = hash_file(&copy).with_context(|| format!("cannot read {}", copy.display()))?;
        if copied != (hash, size) {
            let _ = fs::remove_file(&copy);
            anyhow::bail!("{} changed while it was being stored (another program writes to it); nothing stored", src.display());
        }
        Ok(Some(copy))
    }

    /// Stamp a staged file read-only with `OBJECT_MTIME` and rename it to its object path; a
    /// damaged object (or a directory where an object belongs) makes way for the good bytes.
    /// The caller makes the bytes durable before and the name durable after.
    fn place_object(&self, staged: &Path, hash: &Hash) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dest = self.object_path(hash);
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dest).with_context(|| {
                format!(
                    "cannot remove the directory {} that stands where an object belongs",
                    dest.display()
                )
            })?,
            Ok(_) => fs::remove_file(&dest)
                .with_context(|| format!("cannot replace the damaged object {}", dest.display()))?,
            Err(_) => {}
        }
        OpenOptions::new()
            .write(true)
            .open(staged)
            .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(OBJECT_MTIME)))
            .with_context(|| format!("cannot stamp {}", staged.display()))?;
        fs::set_permissions(staged, fs::Permissions::from_mode(0o444))?;
        let parent = dest.parent().expect("object paths have a parent");
        fs::create_dir_all(parent)?;
        fs::rename(staged, &dest)
            .with_context(|| format!("cannot move {} into the store", staged.display()))?;
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

    /// Re-hash an object before a node reads it (once per process and object). Bytes that
    /// no longer match their name are removed, so the node that made them is recomputed.
    pub fn verify_object(&self, h: &Hash, size: u64) -> Result<(), String> {
        if self.verified.lock().expect("verified lock").contains(h) && self.object_intact(h, size) {
            return Ok(());
        }
        let path = self.object_path(h);
        match hash_file(&path) {
            Ok((got, n)) if got == *h && n == size => {
                self.verified.lock().expect("verified lock").insert(*h);
                Ok(())
            }
            Ok(_) => {
                let _ = remove_entry(&path);
                Err(format!("is damaged in the store ({} no longer holds the bytes it is named by; removed it)", path.display()))
            }
            Err(e) => Err(format!("cannot be read from the store ({}: {e})", path.display())),
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

    /// Record a result (written last, atomically, so nothing counts as done that did not
    /// finish). The node's ref — the result results/ shows — is moved by the run that
    /// shows it (exec::Schedule::done), not here: a `--set` run stores without moving it.
    pub fn write_action(&self, rec: &ActionRecord) -> Result<()> {
        let path = self.action_path(&rec.key);
        fs::create_dir_all(path.parent().expect("action paths have a parent"))?;
        let mut bytes = serde_json::to_vec_pretty(rec)?;
        bytes.push(b'\n');
        atomic_write(&path, &bytes)
            .with_context(|| format!("cannot write action record {}", path.display()))
    }

    pub fn remove_action(&self, key: &Hash) -> io::Result<()> {
        fs::remove_file(self.action_path(key))
    }

    pub fn write_ref(&self, node: &str, key: &Hash) -> Result<()> {
        atomic_write(&self.ref_path(node), key.hex().as_bytes())
            .with_context(|| format!("cannot write ref for {node}"))
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
        f.lock_shared().context("cannot lock the store").map_err(environment)?;
        Ok(LockGuard { _file: f })
    }

    /// Exclusive lock on the whole store (gc, verify --repair): waits for runs to end.
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        let f = self.lock_file("store.lock")?;
        f.lock().context("cannot lock the store").map_err(environment)?;
        Ok(LockGuard { _file: f })
    }

    /// Exclusive lock on one key: the process holding it computes the node; another one
    /// wanting the same key waits and then finds the result stored.
    pub fn lock_key(&self, key: &Hash) -> Result<LockGuard> {
        let f = self.lock_file(&format!("{}.lock", key.hex()))?;
        f.lock().context("cannot lock a node")?;
        Ok(LockGuard { _file: f })
    }

    /// All action records in the store (for gc and verify): each read under the key its
    /// file name gives, or why it cannot be (unreadable, another key's record, a directory).
    pub fn all_actions(&self) -> Vec<(PathBuf, Result<ActionRecord, String>)> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.root.join("actions")) {
            let prefix =
                shard.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            for file in read_dir_sorted(&shard) {
                let name =
                    file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                if is_temp(&name) {
                    continue; // an atomic write still in progress, or one a crash cut short
                }
                let key: Option<Hash> =
                    name.strip_suffix(".json").and_then(|n| format!("{prefix}{n}").parse().ok());
                let rec = match key {
                    None => Err("not named by a key".to_string()),
                    Some(key) => fs::read(&file)
                        .map_err(|e| format!("unreadable ({e})"))
                        .and_then(|b| ActionRecord::decode(&b, &key)),
                };
                out.push((file, rec));
            }
        }
        out
    }

    /// All object files with the hash their name claims.
    pub fn all_objects(&self) -> Vec<(PathBuf, Option<Hash>)> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.root.join("objects")) {
            let prefix =
                shard.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            for file in read_dir_sorted(&shard) {
                let name =
                    file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                out.push((file, format!("{prefix}{name}").parse().ok()));
            }
        }
        out
    }
}

/// Remove a file, or a directory standing where a file belongs, naming the path on failure.
pub fn remove_entry(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

pub fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
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
        let long = format!("s[a={}]", "/".repeat(300));
        let name = escape_node_id(&long);
        assert!(name.len() <= MAX_NAME, "{}", name.len());
        assert_ne!(name, escape_node_id(&format!("s[a={}]", "/".repeat(301))));
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
