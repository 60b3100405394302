//! What each pipeline using a store reached at its last run, so that `gc` from one
//! pipeline never deletes another's results (the default layout shares `cache/` between
//! `pipeline.toml` and `pipelines/paper.toml`).
//!
//! `<store>/roots/<blake3 of the pipeline file's path>.json` holds the pipeline's path and
//! the key of every node's result as of its last `run`. A pipeline whose file is gone no
//! longer protects anything; `gc --forget FILE` releases one explicitly.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{atomic_write, read_dir_sorted, Store};
use crate::hash::Hash;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Roots {
    /// The pipeline file (absolute).
    pub pipeline: PathBuf,
    /// When the run that wrote this ended (RFC 3339).
    pub updated: String,
    /// Node id → key of its result.
    pub nodes: BTreeMap<String, Hash>,
}

fn roots_path(store: &Store, pipeline: &Path) -> PathBuf {
    let id = Hash::of_bytes(pipeline.as_os_str().as_encoded_bytes());
    store.root.join("roots").join(format!("{}.json", &id.hex()[..32]))
}

/// The pipeline file as roots name it: absolute, so every workspace agrees.
pub fn pipeline_id(file: &Path) -> PathBuf {
    fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())
}

impl Roots {
    pub fn read(store: &Store, pipeline: &Path) -> Option<Roots> {
        serde_json::from_slice(&fs::read(roots_path(store, pipeline)).ok()?).ok()
    }

    /// Every pipeline's roots in the store, with the file each came from.
    pub fn all(store: &Store) -> Vec<(PathBuf, Option<Roots>)> {
        read_dir_sorted(&store.root.join("roots"))
            .into_iter()
            .map(|p| {
                let roots = fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok());
                (p, roots)
            })
            .collect()
    }

    /// Record what `pipeline` reaches now: `current` (node → key) for the nodes this run
    /// settled, the previous entry for the other nodes still in `node_ids`.
    pub fn record(
        store: &Store,
        pipeline: &Path,
        node_ids: &[&str],
        current: BTreeMap<String, Hash>,
    ) -> Result<()> {
        let mut nodes = Roots::read(store, pipeline).map(|r| r.nodes).unwrap_or_default();
        nodes.retain(|id, _| node_ids.binary_search(&id.as_str()).is_ok());
        nodes.extend(current);
        let roots = Roots {
            pipeline: pipeline.to_path_buf(),
            updated: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            nodes,
        };
        let path = roots_path(store, pipeline);
        fs::create_dir_all(path.parent().expect("has parent"))?;
        atomic_write(&path, &serde_json::to_vec_pretty(&roots)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn forget(store: &Store, pipeline: &Path) -> Result<bool> {
        let path = roots_path(store, pipeline);
        if !path.exists() {
            return Ok(false);
        }
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        Ok(true)
    }
}
