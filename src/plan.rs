//! Planning as an incremental (salsa) computation:
//! pipeline text → declarations → per-stage nodes → graph.
//!
//! Each stage is expanded by its own tracked query that reads only its declaration and
//! those of the stages it needs, so after an edit (`watch`) only the edited stages are
//! expanded again; the others are revalidated by comparison. `PlanCounters` counts the
//! work actually done so tests and the benchmark can report it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{apply_overrides, parse_raw, ConfigError, Settings, SourceMap};
use crate::graph::{
    check_needs, declarations, expand_stage, Declarations, Graph, NeededStage, NodeRecipe,
    StageDecl,
};
use crate::kinds::Registry;

#[salsa::db]
pub trait Db: salsa::Database {
    fn registry(&self) -> &Registry;
}

#[salsa::db]
#[derive(Clone)]
pub struct PlanDb {
    storage: salsa::Storage<Self>,
    registry: Registry,
}

#[salsa::db]
impl salsa::Database for PlanDb {}

#[salsa::db]
impl Db for PlanDb {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl PlanDb {
    pub fn new(registry: Registry) -> Self {
        PlanDb { storage: salsa::Storage::default(), registry }
    }
}

/// The planning input: the file, its text and the `--set` overrides.
#[salsa::input]
pub struct PipelineSource {
    #[returns(ref)]
    pub file: PathBuf,
    #[returns(ref)]
    pub text: String,
    #[returns(ref)]
    pub overrides: Vec<String>,
}

#[salsa::interned]
pub struct StageName<'db> {
    #[returns(ref)]
    pub name: String,
}

/// How much planning work was done since the process started (for reports and tests).
pub struct PlanCounters {
    pub parses: AtomicUsize,
    pub stage_expansions: AtomicUsize,
    pub nodes_expanded: AtomicUsize,
    pub graph_builds: AtomicUsize,
}

pub static COUNTERS: PlanCounters = PlanCounters {
    parses: AtomicUsize::new(0),
    stage_expansions: AtomicUsize::new(0),
    nodes_expanded: AtomicUsize::new(0),
    graph_builds: AtomicUsize::new(0),
};

impl PlanCounters {
    pub fn snapshot(&self) -> [usize; 4] {
        [
            self.parses.load(Ordering::Relaxed),
            self.stage_expansions.load(Ordering::Relaxed),
            self.nodes_expanded.load(Ordering::Relaxed),
            self.graph_builds.load(Ordering::Relaxed),
        ]
    }
}

#[salsa::tracked(returns(ref))]
pub fn parsed(db: &dyn Db, src: PipelineSource) -> Result<Arc<Declarations>, ConfigError> {
    COUNTERS.parses.fetch_add(1, Ordering::Relaxed);
    let file = src.file(db);
    let text = apply_overrides(file, src.text(db), src.overrides(db))?;
    let map = SourceMap::new(file, &text);
    let raw = parse_raw(file, &text)?;
    declarations(&map, raw).map(Arc::new)
}

/// One stage's declaration; equal after an unrelated edit, so dependents stay memoised.
#[salsa::tracked(returns(ref))]
fn stage_decl<'db>(
    db: &'db dyn Db,
    src: PipelineSource,
    name: StageName<'db>,
) -> Option<Arc<StageDecl>> {
    parsed(db, src).as_ref().ok()?.stages.get(name.name(db)).cloned()
}

/// A stage's matrix (its own, or the one `matrix_from` names): all that its consumers'
/// expansion depends on. `matrix_from` must name a needed stage, and needs are acyclic
/// before any stage is expanded, so this recursion ends.
#[salsa::tracked(returns(ref))]
fn stage_matrix<'db>(
    db: &'db dyn Db,
    src: PipelineSource,
    name: StageName<'db>,
) -> Vec<(String, Vec<serde_json::Value>)> {
    match stage_decl(db, src, name).as_ref() {
        None => Vec::new(),
        Some(d) => match &d.matrix_from {
            Some(from) => stage_matrix(db, src, StageName::new(db, from.clone())).clone(),
            None => d.matrix.clone(),
        },
    }
}

#[salsa::tracked(returns(ref))]
fn stage_nodes<'db>(
    db: &'db dyn Db,
    src: PipelineSource,
    name: StageName<'db>,
) -> Result<Arc<Vec<Arc<NodeRecipe>>>, ConfigError> {
    COUNTERS.stage_expansions.fetch_add(1, Ordering::Relaxed);
    let mut decl =
        stage_decl(db, src, name).clone().expect("stage_nodes is called for declared stages");
    if decl.matrix_from.is_some() {
        Arc::make_mut(&mut decl).matrix = stage_matrix(db, src, name).clone();
    }
    let needed: Vec<NeededStage> = decl
        .needs
        .iter()
        .map(|(n, _)| NeededStage {
            name: n.clone(),
            matrix: stage_matrix(db, src, StageName::new(db, n.clone())).clone(),
        })
        .collect();
    let pipeline = pipeline_decl(db, src);
    let nodes = expand_stage(src.file(db), &pipeline, &decl, &needed, db.registry())?;
    COUNTERS.nodes_expanded.fetch_add(nodes.len(), Ordering::Relaxed);
    Ok(Arc::new(nodes.into_iter().map(Arc::new).collect()))
}

#[salsa::tracked]
fn pipeline_decl(db: &dyn Db, src: PipelineSource) -> crate::graph::PipelineDecl {
    parsed(db, src).as_ref().map(|d| d.pipeline.clone()).unwrap_or(crate::graph::PipelineDecl {
        name: String::new(),
        store: String::new(),
        seed: 0,
    })
}

/// The stage order, once needs are known to name stages and to form no cycle.
#[salsa::tracked(returns(ref))]
fn stage_order(db: &dyn Db, src: PipelineSource) -> Result<Vec<String>, ConfigError> {
    let decls = parsed(db, src).clone()?;
    check_needs(&decls)
}

#[salsa::tracked(returns(ref))]
pub fn graph(db: &dyn Db, src: PipelineSource) -> Result<Arc<Graph>, ConfigError> {
    build_graph(db, src)
        .map_err(|e| crate::config::attribute_to_overrides(e, src.text(db), src.overrides(db)))
}

fn build_graph(db: &dyn Db, src: PipelineSource) -> Result<Arc<Graph>, ConfigError> {
    let order = stage_order(db, src).clone()?;
    let mut per_stage = Vec::with_capacity(order.len());
    for stage in &order {
        per_stage.push(stage_nodes(db, src, StageName::new(db, stage.clone())).clone()?);
    }
    COUNTERS.graph_builds.fetch_add(1, Ordering::Relaxed);
    Ok(Arc::new(Graph::build(pipeline_decl(db, src), per_stage)))
}

/// Remotes and Slurm settings, from the same text (and `--set`) as the graph; read only by
/// the commands that use them, so a mistake there does not stop `status`.
#[salsa::tracked(returns(ref))]
pub fn settings(db: &dyn Db, src: PipelineSource) -> Result<Arc<Settings>, ConfigError> {
    Settings::read(src.file(db), src.text(db), src.overrides(db)).map(Arc::new)
}

/// Plan once, outside any long-lived database (the CLI's usual path); the database comes
/// back with the graph so later queries (`settings`) read the same text.
pub fn plan_once(
    registry: Registry,
    file: PathBuf,
    text: String,
    overrides: Vec<String>,
) -> Result<(Arc<Graph>, PlanDb, PipelineSource), ConfigError> {
    let db = PlanDb::new(registry);
    let src = PipelineSource::new(&db, file, text, overrides);
    let graph = graph(&db, src).clone()?;
    Ok((graph, db, src))
}
