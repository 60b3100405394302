//! A node's work directory: its inputs laid out from the store, an empty output directory
//! and scratch space. Removed when dropped, whether the node succeeded or not.
//!
//! Every input object is re-hashed before the node reads it (once per process): `status`
//! trusts a `stat`, but no node computes from bytes that rotted under an intact mtime.
//! Inputs of kinds that run code wormflow does not control (`command`) are private copies;
//! the others get hard links to the read-only objects, re-checked after the node ran.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::graph::{coordinates, NodeRecipe};
use crate::hash::Hash;
use crate::kinds::InputNode;
use crate::store::{escape_node_id, ActionRecord, OutputFile, Store};

pub struct WorkDir {
    root: PathBuf,
    pub out: PathBuf,
    pub scratch: PathBuf,
    /// Objects laid out as hard links: (input file, object hash, size, upstream node).
    linked: Vec<(String, Hash, u64, String)>,
}

impl WorkDir {
    pub fn create(store: &Store) -> Result<WorkDir> {
        let root = store.new_work_dir()?;
        let out = root.join("out");
        let scratch = root.join("scratch");
        fs::create_dir_all(&out)?;
        fs::create_dir_all(&scratch)?;
        Ok(WorkDir { root, out, scratch, linked: Vec::new() })
    }

    /// Lay out each input's outputs as files (hard links to the store's read-only
    /// objects), under `in/<stage>/` or, for a gathered stage, `in/<stage>/<a=1,b=x>/`.
    /// With `private`, they are copies the node may write to.
    pub fn materialize_inputs(
        &mut self,
        store: &Store,
        graph: &crate::graph::Graph,
        node: &NodeRecipe,
        inputs: &[(usize, ActionRecord)],
        private: bool,
    ) -> Result<Vec<InputNode>> {
        let mut out = Vec::new();
        let mut next = inputs.iter();
        for input_ref in &node.inputs {
            let stage_dir = self.root.join("in").join(&input_ref.stage);
            for _ in &input_ref.nodes {
                let (j, action) = next.next().expect("one action per input node");
                let up = &graph.nodes[*j];
                let dir = if input_ref.gathered {
                    stage_dir.join(escape_node_id(&coordinates(&up.matrix)))
                } else {
                    stage_dir.clone()
                };
                for file in &action.outputs {
                    let dest = dir.join(&file.path);
                    fs::create_dir_all(dest.parent().expect("has parent"))?;
                    store.verify_object(&file.hash, file.size).map_err(|why| {
                        anyhow::anyhow!(
                            "{}: its input {} from {} {why}; `wormflow run` recomputes {}",
                            node.id,
                            file.path,
                            up.id,
                            up.id
                        )
                    })?;
                    let src = store.object_path(&file.hash);
                    if dest.exists() {
                        bail!("{}: input file {} of {} is laid out twice (does `needs` list a stage twice?)", node.id, file.path, up.id);
                    }
                    if private || fs::hard_link(&src, &dest).is_err() {
                        fs::copy(&src, &dest).with_context(|| {
                            format!("cannot lay out input {} for {}", file.path, node.id)
                        })?;
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
                    } else {
                        self.linked.push((file.path.clone(), file.hash, file.size, up.id.clone()));
                    }
                }
                fs::create_dir_all(&dir)?;
                out.push(InputNode {
                    stage: up.stage.clone(),
                    node: up.id.clone(),
                    matrix: up.matrix.clone(),
                    dir,
                    stage_dir: stage_dir.clone(),
                });
            }
        }
        Ok(out)
    }

    /// After the node ran: every input it got as a hard link must still be the object it
    /// was. One that changed (a stage wrote into it) is removed from the store, so the
    /// upstream node is recomputed, and this node fails.
    pub fn check_inputs_untouched(&self, store: &Store, node: &str) -> Result<()> {
        for (path, hash, size, upstream) in &self.linked {
            if store.object_intact(hash, *size) {
                continue;
            }
            let object = store.object_path(hash);
            if !object.exists() {
                // Another node that shared this input damaged it meanwhile (and removed it).
                bail!("{node}: its input {path} from {upstream} was damaged by another node while this one ran; nothing was stored, and `wormflow run` recomputes {upstream}");
            }
            let _ = crate::store::remove_entry(&object);
            bail!("{node}: wrote into its input {path} from {upstream}, a read-only store object; nothing was stored, the damaged object was removed, and `wormflow run` recomputes {upstream}");
        }
        Ok(())
    }

    /// Move every output file into the store; the listing is sorted by path.
    pub fn ingest_outputs(
        &self,
        store: &Store,
        node: &str,
        allow_empty: bool,
    ) -> Result<Vec<OutputFile>> {
        match fs::symlink_metadata(&self.out) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{node}: its output directory ($WORMFLOW_OUT) was replaced by a link or a file; nothing was stored (write the outputs into the directory itself)"),
            Err(_) => bail!("{node}: its output directory ($WORMFLOW_OUT) was removed while it ran; nothing was stored (write the outputs into it, do not delete it)"),
        }
        let mut files = Vec::new();
        collect_files(&self.out, &self.out, &mut files, node)?;
        files.sort();
        if files.is_empty() && !allow_empty {
            bail!("{node}: the stage finished but wrote no output into its output directory ($WORMFLOW_OUT); write the files it should produce (or set params.allow_empty = true for a command with no outputs)");
        }
        let paths: Vec<PathBuf> = files.iter().map(|rel| self.out.join(rel)).collect();
        let hashed = store.ingest_files(&paths)?;
        Ok(files
            .into_iter()
            .zip(hashed)
            .map(|(path, (hash, size))| OutputFile { path, hash, size })
            .collect())
    }
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>, node: &str) -> Result<()> {
    let cannot = |e: std::io::Error| {
        anyhow::anyhow!("{node}: cannot read its output directory {}: {e}", dir.display())
    };
    for entry in fs::read_dir(dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let path = entry.path();
        let ft = entry.file_type().map_err(cannot)?;
        let rel_path = path.strip_prefix(base).expect("under base");
        let Some(rel) = rel_path.to_str().map(str::to_string) else {
            bail!("{node}: output {:?} has a name that is not UTF-8; name outputs in UTF-8 (they become file names in results/ and on remotes)", rel_path.to_string_lossy());
        };
        if ft.is_symlink() {
            bail!("{node}: output {rel} is a symbolic link; write a regular file (the store keeps bytes, not links)");
        } else if ft.is_dir() {
            collect_files(base, &path, out, node)?;
        } else if ft.is_file() {
            out.push(rel);
        } else {
            bail!("{node}: output {rel} is not a regular file");
        }
    }
    Ok(())
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
