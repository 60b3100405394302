//! A node's work directory: its inputs laid out from the store, an empty output directory
//! and scratch space. Removed when dropped, whether the node succeeded or not.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::graph::{render_value, NodeRecipe};
use crate::kinds::InputNode;
use crate::store::{escape_node_id, ActionRecord, OutputFile, Store};

pub struct WorkDir {
    root: PathBuf,
    pub out: PathBuf,
    pub scratch: PathBuf,
}

impl WorkDir {
    pub fn create(store: &Store) -> Result<WorkDir> {
        let root = store.new_work_dir()?;
        let out = root.join("out");
        let scratch = root.join("scratch");
        fs::create_dir_all(&out)?;
        fs::create_dir_all(&scratch)?;
        Ok(WorkDir { root, out, scratch })
    }

    /// Lay out each input's outputs as files (hard links to the store's read-only
    /// objects), under `in/<stage>/` or, for a gathered stage, `in/<stage>/<a=1,b=x>/`.
    pub fn materialize_inputs(
        &self,
        store: &Store,
        graph: &crate::graph::Graph,
        node: &NodeRecipe,
        inputs: &[(usize, ActionRecord)],
    ) -> Result<Vec<InputNode>> {
        let mut out = Vec::new();
        let mut next = inputs.iter();
        for input_ref in &node.inputs {
            let stage_dir = self.root.join("in").join(&input_ref.stage);
            for _ in &input_ref.nodes {
                let (j, action) = next.next().expect("one action per input node");
                let up = &graph.nodes[*j];
                let dir = if input_ref.gathered {
                    let coords: Vec<String> = up.matrix.iter().map(|(k, v)| format!("{k}={}", render_value(v))).collect();
                    stage_dir.join(escape_node_id(&coords.join(",")))
                } else {
                    stage_dir.clone()
                };
                for file in &action.outputs {
                    let dest = dir.join(&file.path);
                    fs::create_dir_all(dest.parent().expect("has parent"))?;
                    let src = store.object_path(&file.hash);
                    if fs::hard_link(&src, &dest).is_err() {
                        fs::copy(&src, &dest).with_context(|| format!("cannot lay out input {} for {}", file.path, node.id))?;
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

    /// Keep the stage's log (if it wrote one) next to the store's other logs.
    pub fn keep_log(&self, store: &Store, node: &str) {
        let log = self.scratch.join("command.log");
        if log.exists() {
            let _ = fs::copy(&log, store.log_path(node));
        }
    }

    /// Move every output file into the store; the listing is sorted by path.
    pub fn ingest_outputs(&self, store: &Store, node: &str, allow_empty: bool) -> Result<Vec<OutputFile>> {
        let mut files = Vec::new();
        collect_files(&self.out, &self.out, &mut files, node)?;
        files.sort();
        if files.is_empty() && !allow_empty {
            bail!("{node}: the stage finished but wrote no output into its output directory ($WORMFLOW_OUT); write the files it should produce (or set params.allow_empty = true for a command with no outputs)");
        }
        let mut outputs = Vec::with_capacity(files.len());
        for rel in files {
            let (hash, size) = store.ingest_file(&self.out.join(&rel))?;
            outputs.push(OutputFile { path: rel, hash, size });
        }
        Ok(outputs)
    }
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>, node: &str) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        let rel = path.strip_prefix(base).expect("under base").to_string_lossy().to_string();
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
