//! The contract between wormflow's engine and the stage kinds it runs.
//!
//! A stage kind is a name, a code version, default parameters and a function from input
//! directories to an output directory. The engine knows nothing else about what a stage
//! does, and a stage never touches the store, keys or locks. This crate is all the two
//! sides share, so the engine never depends on the science and vice versa.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value};

pub mod cancel;
pub mod checkpoint;
pub mod child;
pub mod cost;
pub mod helper;
pub mod local;
pub mod relpath;

/// One finished upstream node, as a stage sees it (serialisable, so a stage can hand its
/// context to a helper process).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InputNode {
    /// The upstream stage's name.
    pub stage: String,
    /// The upstream node's id, e.g. `train[model=lstm]`.
    pub node: String,
    /// Its matrix coordinates (empty when the stage has no matrix).
    pub matrix: BTreeMap<String, Value>,
    /// A read-only directory holding its outputs.
    pub dir: PathBuf,
    /// The directory standing for the whole needed stage: `dir` itself, or for a gathered
    /// matrix stage the parent of all its instances' directories.
    pub stage_dir: PathBuf,
}

/// Who made a file: written into every Parquet file's and safetensors file's key-value
/// metadata, so a file copied out of results/ still says where it came from.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The node's id, e.g. `train[model=lstm]`.
    pub node: String,
    /// The stage (as named in pipeline.toml) and its kind.
    pub stage: String,
    pub kind: String,
    /// The node's key in the store (hex): the name of its action record.
    pub key: String,
    /// The wormflow version that ran it.
    pub wormflow_version: String,
}

impl Origin {
    /// Key-value pairs under `wormflow.*`, with the node's resolved params as JSON.
    pub fn metadata(&self, params: &Value) -> Vec<(String, String)> {
        vec![
            ("wormflow.node".into(), self.node.clone()),
            ("wormflow.stage".into(), self.stage.clone()),
            ("wormflow.kind".into(), self.kind.clone()),
            ("wormflow.key".into(), self.key.clone()),
            ("wormflow.version".into(), self.wormflow_version.clone()),
            ("wormflow.params".into(), params.to_string()),
        ]
    }
}

/// Everything a stage may use while it runs.
pub struct StageContext<'a> {
    pub node: &'a str,
    /// Where the node's files come from (for their metadata).
    pub origin: &'a Origin,
    /// Fully resolved parameters (defaults merged, matrix values substituted).
    pub params: &'a Value,
    /// Inputs in the order of `needs`, instances of a matrixed input in matrix order.
    pub inputs: &'a [InputNode],
    /// The empty directory the stage must fill.
    pub out_dir: &'a Path,
    /// Directory of the pipeline.toml, for resolving relative paths in params.
    pub workspace: &'a Path,
    /// Scratch directory, removed after the node.
    pub scratch: &'a Path,
    /// Threads the stage may use: its share of the cores when nodes run in parallel.
    pub threads: usize,
    /// Set when the run is being cancelled; long stages should check it.
    pub cancel: &'a AtomicBool,
    /// For a kind that resumes (`StageKind::checkpoints`): the node's checkpoint folder,
    /// kept across interrupted attempts and removed once its result is stored (see
    /// [`checkpoint`]). None for other kinds.
    pub checkpoints: Option<&'a Path>,
    /// The run's long-lived helper processes, for kinds that run nodes in a helper program.
    pub helpers: &'a helper::HelperPool,
    /// Reports progress (shown on the node's bar, in plain log lines and as `--json` events).
    pub progress: &'a (dyn Fn(&Progress) + Sync),
}

/// A file in `StageContext::scratch` where a kind may leave what the tools it ran printed (a
/// command's stdout and stderr, a helper's stderr): the engine puts it in the node's log,
/// `<store>/logs/<node>.log`, after the progress the node reported.
pub const KIND_LOG: &str = "command.log";

/// One progress report of a running node: `fraction` in [0, 1] and a short message for bars
/// and log lines; the optional numbers give `--json` readers fields instead of text.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub fraction: f64,
    pub message: String,
    /// Training: the epoch just finished, of how many, and its losses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// A message the run must show (a node resumed, a checkpoint discarded): never dropped
    /// by the rate limit on progress, printed as its own line even under bars.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notice: bool,
}

impl Progress {
    pub fn new(fraction: f64, message: impl Into<String>) -> Progress {
        Progress { fraction, message: message.into(), ..Progress::default() }
    }

    /// A [`Progress::notice`]: a message always shown.
    pub fn notice(fraction: f64, message: impl Into<String>) -> Progress {
        Progress { notice: true, ..Progress::new(fraction, message) }
    }
}

impl StageContext<'_> {
    /// `Err(Cancelled)` once the run is being cancelled: call it at least every second in
    /// long loops (see [`cancel`]).
    pub fn check_cancel(&self) -> Result<(), cancel::Cancelled> {
        cancel::check(self.cancel)
    }

    /// The key-value metadata every file the stage writes should carry (see [`Origin`]).
    pub fn file_metadata(&self) -> Vec<(String, String)> {
        self.origin.metadata(self.params)
    }

    /// Inputs coming from one upstream stage.
    pub fn inputs_of<'b>(&'b self, stage: &'b str) -> impl Iterator<Item = &'b InputNode> + 'b {
        self.inputs.iter().filter(move |i| i.stage == stage)
    }
}

/// The message a panic carried (`panic!("…")` gives a `&str` or a `String`), or "" — for
/// the places that catch a panic and report it in words (the engine around a node, the
/// torch helper around libtorch, `compare` around polars).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// What a stage run reports besides its files: provenance entries (device, library
/// versions, …) recorded in the action record but not part of the key.
pub type Provenance = Map<String, Value>;

/// How a member of a group ended, by its index in the group (`StageKind::run_group`).
pub type Finished<'a> = dyn FnMut(usize, anyhow::Result<Provenance>) + 'a;

/// The provenance entry under which a stage lists what the user must hear although nothing
/// failed (e.g. a model that diverged): an array of strings. The engine shows them as
/// warnings whenever the node's result is used, and counts them in the run's summary.
pub const WARNINGS: &str = "warnings";

/// The provenance entry under which a stage records where its time went: an object of
/// phase name → seconds (train: `start`, `load`, `train`, `validation`, `write`).
/// `wormflow compare` shows each as a `seconds.<phase>` column.
pub const PHASES: &str = "phases";

/// The warnings a stage recorded in its provenance (see [`WARNINGS`]).
pub fn warnings_of(provenance: &Provenance) -> Vec<String> {
    provenance
        .get(WARNINGS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect()
}

/// A stage kind the engine can run.
pub trait StageKind: Send + Sync {
    fn name(&self) -> &str;
    /// Changes whenever the stage's code changes what it produces.
    fn version(&self) -> &str;
    /// What `version` is made of: source file → content hash, `crate <name>` → locked
    /// version; recorded with each result so `explain` can say which file or crate changed.
    fn code(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Default parameters; a user's params are merged over these. Unless
    /// `accepts_any_params`, a param not listed here is an error.
    fn defaults(&self) -> Map<String, Value>;
    fn accepts_any_params(&self) -> bool {
        false
    }
    /// Params naming files outside the store whose contents belong in the key
    /// (e.g. a `command`'s `deps`). Paths are relative to the workspace.
    fn file_deps(&self, _params: &Value) -> Vec<String> {
        Vec::new()
    }
    /// Check params before anything runs; the message should say what to change.
    fn validate(&self, _params: &Value) -> Result<(), String> {
        Ok(())
    }
    /// Whether the kind gets private copies of its inputs: it runs code wormflow does not
    /// control (a user's command), which may write into them. Otherwise inputs are hard
    /// links to the store's read-only objects, checked after the node ran.
    fn isolates_inputs(&self) -> bool {
        false
    }
    /// Whether an empty output directory is acceptable.
    fn allows_empty_output(&self, _params: &Value) -> bool {
        false
    }
    fn run(&self, ctx: &StageContext) -> anyhow::Result<Provenance>;
    /// Params that choose how a node runs, not what it computes (how often a long node
    /// saves a checkpoint): left out of its key, so changing one reruns nothing.
    fn execution_params(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether the kind resumes long nodes: the engine then gives each node a checkpoint
    /// folder (`StageContext::checkpoints`) that survives a kill, removes it once the
    /// node's result is stored, and `gc`/`verify` look after it.
    fn checkpoints(&self) -> bool {
        false
    }
    /// What running a node with these params would cost, from its params and what is
    /// known of its inputs (`cost.rs`). `None`: the kind has no model of its cost (the
    /// engine then uses the store's history of the kind).
    fn estimate(&self, _params: &Value, _inputs: &[cost::CostInput]) -> Option<cost::Estimate> {
        None
    }
    /// Nodes of one stage whose group keys are equal may run together in one
    /// [`StageKind::run_group`] call — for the torch kinds one stacked computation of models
    /// that differ only in seed, data draw or optimizer params. `None`: never grouped.
    /// Grouping is an execution choice like `-j`: it never enters a key, and a node's
    /// outputs must not depend on its company beyond rounding.
    fn group_key(&self, _params: &Value) -> Option<String> {
        None
    }
    /// Run the nodes of one group at once, telling `finished` how each member ended (its
    /// index in `ctxs`) as soon as that is known: the engine stores a finished member
    /// then, so a signal later in the group loses nothing that had finished. Once per
    /// member; a member never told of fails. One node's failure is that node's alone.
    /// The default runs them one after another.
    fn run_group(&self, ctxs: &[StageContext], finished: &mut Finished) {
        for (k, ctx) in ctxs.iter().enumerate() {
            finished(k, self.run(ctx));
        }
    }
}
