//! A planned pipeline in its workspace: the graph, where the store is, and the settings
//! (remotes, Slurm) from the same text the graph was planned from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::config::Settings;
use crate::graph::Graph;
use crate::kinds::Registry;
use crate::plan::{self, PipelineSource, PlanDb};
use crate::remote::Remote;

/// A planned pipeline with its workspace and store location.
pub struct Planned {
    pub workspace: PathBuf,
    pub graph: Arc<Graph>,
    pub store_root: PathBuf,
    pub file: PathBuf,
    pub overrides: Vec<String>,
    /// The planning database and its input, for `settings`.
    db: PlanDb,
    src: PipelineSource,
}

impl Planned {
    /// Remotes and Slurm settings (read only by the commands that use them), from the text
    /// the graph was planned from: never a second read of a file that may have changed.
    pub fn settings(&self) -> Result<Arc<Settings>> {
        Ok(plan::settings(&self.db, self.src).clone()?)
    }

    pub fn remote(&self, name: Option<&str>, writing: bool) -> Result<Remote> {
        let settings = self.settings()?;
        let (name, decl) = settings.remote(name)?;
        Remote::open(name, decl, &self.workspace, writing)
    }
}

fn workspace_of(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn read_pipeline(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {}; run wormflow in a directory with a pipeline.toml, or pass -f FILE",
            file.display()
        )
    })
}

pub fn plan(registry: &Registry, file: &Path, overrides: &[String]) -> Result<Planned> {
    let text = read_pipeline(file)?;
    let (graph, db, src) =
        plan::plan_once(registry.clone(), file.to_path_buf(), text, overrides.to_vec())?;
    planned(&db, src, graph)
}

/// The workspace of a graph planned in `db` from `src` (`watch` keeps its database).
pub fn planned(db: &PlanDb, src: PipelineSource, graph: Arc<Graph>) -> Result<Planned> {
    let file = src.file(db).clone();
    let workspace = workspace_of(&file);
    let store_root = store_location(&file, &workspace, &graph.pipeline.store)?;
    Ok(Planned {
        workspace,
        graph,
        store_root,
        overrides: src.overrides(db).clone(),
        file,
        db: db.clone(),
        src,
    })
}

/// Where `store = "…"` points: relative to the workspace, `~/…` under $HOME. It may not
/// be the workspace itself, lie inside results/, or contain it: results/ is rewritten by
/// every run, and relinking it must never touch the store.
fn store_location(file: &Path, workspace: &Path, store: &str) -> Result<PathBuf> {
    let bad = |why: String| anyhow!("{}: [pipeline] store = {store:?} {why}", file.display());
    let root = if store == "~" || store.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("starts with ~, but $HOME is not set; give the full path".into()))?;
        PathBuf::from(home).join(store.trim_start_matches('~').trim_start_matches('/'))
    } else if store.starts_with('~') {
        return Err(bad(
            "names another user's home (~user), which wormflow does not expand; give the full path"
                .into(),
        ));
    } else if store.is_empty() {
        return Err(bad("is empty; give a directory, e.g. store = \"cache\"".into()));
    } else {
        workspace.join(store)
    };
    let root = lexically_normal(&root);
    let results = workspace.join("results");
    if root == workspace {
        return Err(bad(
            "is the workspace itself; use a directory of its own, e.g. store = \"cache\"".into(),
        ));
    }
    if root.starts_with(&results) || results.starts_with(&root) {
        return Err(bad(format!("overlaps the results directory {}; choose a directory outside it, e.g. store = \"cache\"", results.display())));
    }
    Ok(root)
}

/// `a/./b/../c` → `a/c`, without touching the file system (the store may not exist yet);
/// symbolic links in the path are resolved where they exist.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    std::fs::canonicalize(&out).unwrap_or(out)
}
