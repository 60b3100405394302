//! Content hashing: blake3 digests, canonical JSON, and files hashed through a stat cache.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A blake3 digest, shown and stored as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of_bytes(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        blake3::Hash::from_hex(s)
            .map(|h| Hash(*h.as_bytes()))
            .map_err(|_| format!("{s:?} is not a blake3 hex digest"))
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes a sequence of fields unambiguously (each is length-prefixed), under a domain tag.
pub struct Hasher(blake3::Hasher);

impl Hasher {
    pub fn new(domain: &str) -> Self {
        let mut h = Hasher(blake3::Hasher::new());
        h.field(domain);
        h
    }
    pub fn field(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }
    pub fn hash(&mut self, h: &Hash) -> &mut Self {
        self.bytes(&h.0)
    }
    pub fn finish(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

/// JSON with object keys sorted at every level and no whitespace: equal values give equal
/// text whatever order they were written in (independent of serde_json's map features).
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, &Value> = m.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// blake3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<(Hash, u64)> {
    // update_reader reads through a stack buffer: no 1 MiB allocation (and its page faults)
    // per file, which showed up when a node writes thousands of small files.
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path)?)?;
    Ok((Hash(*h.finalize().as_bytes()), h.count()))
}

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            inode: meta.ino(),
        }
    }
}

/// Hashes of files outside the store, re-read only when size, mtime or inode change, so a
/// no-op `status` reads no data files.
#[derive(Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: BTreeMap<PathBuf, (FileStamp, Hash)>,
    #[serde(skip)]
    dirty: bool,
}

impl StatCache {
    pub fn load(path: &Path) -> StatCache {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn hash(&mut self, path: &Path) -> std::io::Result<Hash> {
        let meta = std::fs::metadata(path)?;
        // Never open a FIFO or a device: reading it may block for ever.
        if let Some(what) = wormflow_api::local::not_regular(&meta) {
            return Err(std::io::Error::other(format!("it is {what}, not a regular file")));
        }
        let stamp = FileStamp::of(&meta);
        if let Some((s, h)) = self.entries.get(path) {
            if *s == stamp {
                return Ok(*h);
            }
        }
        let (h, _) = hash_file(path)?;
        self.entries.insert(path.to_path_buf(), (stamp, h));
        self.dirty = true;
        Ok(h)
    }

    /// Write back if anything was re-hashed (best effort: it is only a cache).
    pub fn save(&self, path: &Path) {
        if self.dirty {
            if let Ok(bytes) = serde_json::to_vec(self) {
                let _ = crate::fsutil::atomic_write(path, &bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn hasher_fields_are_unambiguous() {
        let ab = Hasher::new("t").field("ab").field("c").finish();
        let a_bc = Hasher::new("t").field("a").field("bc").finish();
        assert_ne!(ab, a_bc);
    }

    #[test]
    fn hash_roundtrips_through_hex() {
        let h = Hash::of_bytes(b"worm");
        assert_eq!(h.hex().parse::<Hash>().unwrap(), h);
    }
}
