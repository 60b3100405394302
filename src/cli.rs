//! The `wormflow` command line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::dag::DagFormat;
use crate::exec::report::{Reporter, Verbosity};
use crate::exec::slurm::Slurm;
use crate::exec::{run_local, RunOptions, RunSummary};
use crate::graph::Graph;
use crate::kinds::Registry;
use crate::plan;
use crate::remote::Remote;
use crate::stale::{in_words, StaleReason};
use crate::status::{NodeState, Resolver};
use crate::store::{gc, verify, Store};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "wormflow",
    version,
    about = "Cached, incremental pipelines for C. elegans neural-activity models"
)]
pub struct Cli {
    /// The pipeline file (its directory is the workspace).
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "WORMFLOW_FILE",
        default_value = "pipeline.toml"
    )]
    pub file: PathBuf,
    /// Say less: only failures, warnings and the summary.
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: also nodes found up to date, and every progress message.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Override a value of the pipeline, e.g. --set stages.train.params.epochs=5 (repeatable).
    #[arg(long = "set", global = true, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Parser, Clone)]
pub struct RunArgs {
    /// Nodes or stages to bring up to date (with what they need); default: all.
    pub nodes: Vec<String>,
    /// Nodes run at once (default: the number of cores).
    #[arg(short = 'j', long, env = "WORMFLOW_JOBS")]
    pub jobs: Option<usize>,
    /// After a failure, go on with nodes that do not depend on it.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Rerun these nodes (or stages) even if their result is stored (repeatable).
    #[arg(long, value_name = "NODE")]
    pub force: Vec<String>,
    /// One JSON event per line on stdout instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Before running a node, fetch its result from the remote if it is there.
    #[arg(long)]
    pub pull: bool,
    /// The remote for --pull (default: the only one, or the one marked default).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Where nodes run: here (local) or as Slurm jobs (slurm; see [slurm] in pipeline.toml).
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// With --set: show this run's results in results/ too. Without it a --set run stores
    /// its results (later runs with the same --set reuse them) but results/, `status`,
    /// `explain` and `report` keep describing the pipeline as its file says.
    #[arg(long)]
    pub results: bool,
    /// From the global -q / -v.
    #[arg(skip)]
    pub verbosity: Verbosity,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

#[derive(Subcommand)]
pub enum Command {
    /// Bring the pipeline (or the given nodes) up to date, running only what changed.
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// List what would run and why, without running anything.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Show every node's state (fresh / stale / waiting) and why.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Say why a node is stale: which param, input, file, source file or crate changed.
    Explain {
        node: String,
        /// One JSON object: state, key and typed reasons.
        #[arg(long)]
        json: bool,
    },
    /// Print the graph of nodes.
    Dag {
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
        /// One box per stage (with its node count) instead of one per node.
        #[arg(long)]
        stages: bool,
    },
    /// Show a node's stored outputs, sizes, provenance and the first rows of Parquet files.
    Show {
        node: String,
        /// Rows of each Parquet output to print.
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
    /// Delete stored results that neither this pipeline nor any other pipeline using the
    /// store (as of its last run) reaches.
    Gc {
        /// Say what would be deleted, and what is kept for which pipeline; delete nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Stop keeping the results of this other pipeline file (repeatable).
        #[arg(long, value_name = "PIPELINE")]
        forget: Vec<PathBuf>,
    },
    /// Re-hash every stored object; report corruption (and with --repair, remove it).
    Verify {
        #[arg(long)]
        repair: bool,
    },
    /// Say where the report(s) of the pipeline are (fresh outputs named report.html).
    Report {
        /// Open it in the default browser.
        #[arg(long)]
        open: bool,
    },
    /// A sweep as a table: one row per node of each STAGE — its matrix axes, chosen params
    /// and metrics (loss, ratio to the Baseline, per source, epochs, parameters, …).
    Compare {
        #[arg(required = true)]
        stages: Vec<String>,
        /// Params to add as columns, e.g. --params lr,epochs (a node's own, else the nearest
        /// upstream node's: an evaluation's lr is its training's).
        #[arg(long, value_delimiter = ',')]
        params: Vec<String>,
        /// Sort by these columns, e.g. --sort ratio or --sort=-val_loss (descending).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        sort: Vec<String>,
        /// Keep the rows where this SQL expression holds, e.g. --where 'model == "lstm" and ratio < 1'.
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        /// Print CSV.
        #[arg(long, conflicts_with_all = ["json", "parquet"])]
        csv: bool,
        /// Print JSON (an array of row objects).
        #[arg(long, conflicts_with = "parquet")]
        json: bool,
        /// Write the table to this Parquet file (with several stages: STAGE.parquet beside it).
        #[arg(long, value_name = "FILE")]
        parquet: Option<PathBuf>,
    },
    /// What differs between two nodes: params, inputs and metrics.
    Diff { a: String, b: String },
    /// Copy the current results of the pipeline (or of NODEs and what they need) to a remote.
    Push {
        nodes: Vec<String>,
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Fetch the results the remote has for the pipeline (or NODEs), verified, into the store.
    Pull {
        nodes: Vec<String>,
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Run one submitted node by its key (what a Slurm job runs; see --executor slurm).
    Exec { key: String },
    /// Print a shell completion script, e.g. `wormflow completions bash > ~/.local/share/bash-completion/completions/wormflow`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Re-plan on every save of pipeline.toml and run what became stale.
    Watch {
        #[command(flatten)]
        args: RunArgs,
        /// Stop after this many runs (for scripts and tests).
        #[arg(long, hide = true)]
        max_runs: Option<usize>,
    },
}

/// A planned pipeline with its workspace and store location.
pub struct Planned {
    pub workspace: PathBuf,
    pub graph: Arc<Graph>,
    pub store_root: PathBuf,
    pub file: PathBuf,
    pub overrides: Vec<String>,
}

impl Planned {
    /// Remotes and Slurm settings (read only by the commands that use them).
    pub fn settings(&self) -> Result<crate::config::Settings> {
        Ok(crate::config::Settings::read(&self.file, &read_pipeline(&self.file)?, &self.overrides)?)
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
    let graph = plan::plan_once(registry.clone(), file.to_path_buf(), text, overrides.to_vec())?;
    planned(file, overrides, graph)
}

pub fn planned(file: &Path, overrides: &[String], graph: Arc<Graph>) -> Result<Planned> {
    let workspace = workspace_of(file);
    let store_root = store_location(file, &workspace, &graph.pipeline.store)?;
    Ok(Planned {
        workspace,
        graph,
        store_root,
        file: file.to_path_buf(),
        overrides: overrides.to_vec(),
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

/// Exit codes (see error.rs): 0 success, 1 a node failed or the store is damaged, 2 bad
/// input, 3 the environment, 128 + signal when interrupted.
pub fn main(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    match dispatch(&cli, &registry).map_err(crate::error::Error::from) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

impl Cli {
    fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

fn dispatch(cli: &Cli, registry: &Registry) -> Result<ExitCode> {
    match &cli.command {
        Command::Run { args, dry_run } => {
            let args = &RunArgs { verbosity: cli.verbosity(), ..args.clone() };
            let p = plan(registry, &cli.file, &cli.set)?;
            if *dry_run {
                return dry_run_report(&p, args);
            }
            let store = Store::open(&p.store_root)?;
            // Ctrl-C / SIGTERM: stop starting nodes, cancel the running ones (and Slurm
            // jobs), store nothing half-done (see signals.rs). Only for `run`: `watch`
            // keeps the default, quitting at once, so a later run is not cancelled.
            crate::signals::install().context("cannot install signal handlers")?;
            let summary = run_once(&p, &store, registry, args)?;
            if let Some(sig) = crate::signals::received() {
                eprintln!(
                    "interrupted by {}: {} nodes finished and are stored; run again to continue",
                    crate::signals::name(sig),
                    summary.ran + summary.cached + summary.pulled
                );
                return Ok(ExitCode::from((128 + sig) as u8));
            }
            Ok(exit_for(&summary))
        }
        Command::Status { json } => status(&plan(registry, &cli.file, &cli.set)?, *json),
        Command::Explain { node, json } => {
            explain(&plan(registry, &cli.file, &cli.set)?, node, *json)
        }
        Command::Dag { format, stages } => {
            let p = plan(registry, &cli.file, &cli.set)?;
            print!("{}", crate::dag::render(&p.graph, *format, *stages));
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { node, rows } => {
            crate::show::show(&plan(registry, &cli.file, &cli.set)?, node, *rows)
        }
        Command::Gc { dry_run, forget } => {
            gc_cmd(&plan(registry, &cli.file, &cli.set)?, *dry_run, forget)
        }
        Command::Verify { repair } => verify_cmd(&plan(registry, &cli.file, &cli.set)?, *repair),
        Command::Report { open } => report_cmd(&plan(registry, &cli.file, &cli.set)?, *open),
        Command::Compare { stages, params, sort, filter, csv, json, parquet } => {
            use wormflow_stages::sweep::Format;
            let format = if *csv {
                Format::Csv
            } else if *json {
                Format::Json
            } else if parquet.is_some() {
                Format::Parquet
            } else {
                Format::Text
            };
            let args = crate::compare::CompareArgs {
                stages,
                params,
                sort,
                filter: filter.as_deref(),
                format,
                output: parquet.as_ref(),
            };
            crate::compare::compare(&plan(registry, &cli.file, &cli.set)?, &args)
        }
        Command::Diff { a, b } => crate::compare::diff(&plan(registry, &cli.file, &cli.set)?, a, b),
        Command::Push { nodes, remote } | Command::Pull { nodes, remote } => {
            let pushing = matches!(cli.command, Command::Push { .. });
            let p = plan(registry, &cli.file, &cli.set)?;
            let remote = p.remote(remote.as_deref(), pushing)?;
            let store = Store::open(&p.store_root)?;
            if pushing {
                crate::sync::push(&p.graph, &store, &p.workspace, &remote, nodes)?;
            } else {
                crate::sync::pull(&p.graph, &store, &p.workspace, &remote, nodes)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { key } => exec_cmd(&plan(registry, &cli.file, &cli.set)?, registry, key),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "wormflow", &mut script);
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(crate::error::environment(anyhow!("cannot write to stdout: {e}")))
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Watch { args, max_runs } => {
            let args = &RunArgs { verbosity: cli.verbosity(), ..args.clone() };
            crate::watch::watch(registry, &cli.file, &cli.set, args, *max_runs)
        }
    }
}

pub fn run_once(
    p: &Planned,
    store: &Store,
    registry: &Registry,
    args: &RunArgs,
) -> Result<RunSummary> {
    let reporter = Reporter::with_verbosity(args.json, args.verbosity);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let pull = match (args.pull, &args.remote) {
        (true, name) => Some(Arc::new(p.remote(name.as_deref(), false)?)),
        (false, Some(_)) => {
            bail!("--remote names the remote for --pull; add --pull (or use `wormflow pull`)")
        }
        (false, None) => None,
    };
    let slurm = match args.executor {
        Executor::Slurm => Some(Slurm::new(p.settings()?, &p.file, &p.overrides)?),
        Executor::Local => None,
    };
    // Overrides of where results are shared or jobs run change no result.
    let changes_results = |o: &String| !(o.starts_with("remotes.") || o.starts_with("slurm."));
    let show_results = args.results || !p.overrides.iter().any(changes_results);
    if !show_results {
        reporter.warn("--set: results are stored but not shown in results/ (which keeps showing the pipeline as its file says); add --results to show them");
    }
    let opts = RunOptions {
        jobs,
        keep_going: args.keep_going,
        targets: args.nodes.clone(),
        force: args.force.clone(),
        pull,
        slurm,
        pipeline: Some(p.file.clone()),
        show_results,
    };
    run_local(&p.graph, store, &p.workspace, registry, &opts, &reporter)
}

/// `wormflow exec KEY`: run the node a Slurm job was submitted for, after checking that
/// the pipeline still gives it the same key.
fn exec_cmd(p: &Planned, registry: &Registry, key: &str) -> Result<ExitCode> {
    let key: crate::hash::Hash =
        key.parse().map_err(|_| anyhow!("{key:?} is not a node key (64 hex digits)"))?;
    let store = Store::open(&p.store_root)?;
    let spec_path = crate::exec::slurm::job_file(&store, &key, "json");
    let spec: crate::exec::slurm::JobSpec = serde_json::from_slice(
        &std::fs::read(&spec_path).with_context(|| format!("no job description at {}; `wormflow exec` runs nodes submitted by `run --executor slurm`", spec_path.display()))?,
    )
    .with_context(|| format!("{} is damaged", spec_path.display()))?;
    let &i = p.graph.index.get(&spec.node).ok_or_else(|| {
        anyhow!("node {} is no longer in {}; resubmit", spec.node, p.file.display())
    })?;
    let _lock = store.lock_shared()?;
    let mut inputs = Vec::new();
    for (&j, k) in p.graph.inputs[i].iter().zip(&spec.inputs) {
        let action = store.cached_action(k).ok_or_else(|| {
            anyhow!(
                "{}: input {} (result {}) is not in the store {}; is it on a shared path?",
                spec.node,
                p.graph.nodes[j].id,
                k.short(),
                store.root.display()
            )
        })?;
        inputs.push((j, action));
    }
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let outs: Vec<_> = inputs.iter().map(|(_, a)| a.output_hash).collect();
    let parts = resolver.key(i, &outs)?;
    if parts.key != key {
        bail!("{}: the pipeline changed since this job was submitted (key {} now, {} then); nothing run", spec.node, parts.key.short(), key.short());
    }
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // JSON events into the job's output: the driver forwards the progress ones.
    let reporter = Reporter::new(true);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let job = crate::exec::Job { index: i, threads, parts, force: spec.force, inputs };
    match crate::exec::execute(&resolver, registry, &reporter, job, &cancel, None)? {
        crate::exec::Outcome::Ran(action, secs) => reporter.done(&spec.node, &action, secs),
        crate::exec::Outcome::FoundStored(action) | crate::exec::Outcome::Pulled(action) => {
            reporter.cached(&spec.node, &action.key, &action)
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn exit_for(s: &RunSummary) -> ExitCode {
    if s.failed > 0 || s.skipped > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn dry_run_report(p: &Planned, args: &RunArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let mask = p.graph.targets(&args.nodes).map_err(|e| anyhow!(e))?;
    let forced: HashSet<usize> =
        p.graph.select(&args.force).map_err(|e| anyhow!(e))?.into_iter().collect();
    let states = resolver.states(Some(&mask));
    let mut would = 0;
    for (i, state) in states.iter().enumerate() {
        let Some(state) = state else { continue };
        let node = &p.graph.nodes[i].id;
        let (reasons, words) = match state {
            NodeState::Fresh { .. } if forced.contains(&i) => {
                (vec![StaleReason::Forced], StaleReason::Forced.to_string())
            }
            NodeState::Fresh { .. } => continue,
            NodeState::Stale { reasons, .. } => (reasons.clone(), in_words(reasons)),
            NodeState::Waiting { inputs } => (
                Vec::new(),
                format!("may run after {} (runs only if their output changes)", inputs.join(", ")),
            ),
            NodeState::Error(e) => (Vec::new(), format!("error: {e}")),
        };
        would += 1;
        if args.json {
            let event = json!({
                "event": "would-run",
                "node": node,
                "state": state.label(),
                "reasons": reasons,
                "after": waiting_on(state),
                "error": error_of(state),
            });
            println!("{event}");
        } else {
            println!("would run {node}: {words}");
        }
    }
    if !args.json {
        println!("{would} of {} nodes would run", states.iter().flatten().count());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(p: &Planned, json: bool) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let states = resolver.states(None);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let width = p.graph.nodes.iter().map(|n| n.id.len()).max().unwrap_or(4).min(48);
    for (i, state) in states.iter().enumerate() {
        let state = state.as_ref().expect("all nodes resolved");
        *counts.entry(state.label()).or_default() += 1;
        let node = &p.graph.nodes[i].id;
        let results_damage = match state {
            NodeState::Fresh { action, .. } => {
                crate::results::damage(&p.workspace, &p.graph.nodes[i], action)
            }
            _ => None,
        };
        let detail = match state {
            NodeState::Fresh { key, .. } => match &results_damage {
                Some(why) => {
                    format!("{}; results/ {why} (`wormflow run` restores it)", key.short())
                }
                None => key.short(),
            },
            NodeState::Stale { reasons, .. } => in_words(reasons),
            NodeState::Waiting { inputs } if json => format!("after {}", inputs.join(", ")),
            NodeState::Waiting { inputs } => format!("after {}", abbreviated(inputs, 4)),
            NodeState::Error(e) => e.clone(),
        };
        if json {
            let reasons = match state {
                NodeState::Stale { reasons, .. } => reasons.as_slice(),
                _ => &[],
            };
            let row = json!({
                "node": node,
                "state": state.label(),
                "detail": detail,
                "reasons": reasons,
                "after": waiting_on(state),
                "error": error_of(state),
            });
            println!("{row}");
        } else if !matches!(state, NodeState::Fresh { .. })
            || p.graph.nodes.len() <= 200
            || results_damage.is_some()
        {
            println!("{:<7} {node:<width$}  {detail}", state.label());
        }
    }
    if !json {
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("{} nodes: {}", p.graph.nodes.len(), parts.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The first `keep` names, then how many more (a gather can wait on hundreds of nodes).
pub fn abbreviated(names: &[String], keep: usize) -> String {
    if names.len() <= keep + 1 {
        return names.join(", ");
    }
    format!("{} and {} more", names[..keep].join(", "), names.len() - keep)
}

fn explain(p: &Planned, node: &str, json: bool) -> Result<ExitCode> {
    let Some(i) = p.graph.lookup(node) else {
        bail!(
            "{}",
            p.graph.select(&[node.to_string()]).err().unwrap_or_else(|| format!(
                "{node:?} is a stage, not a node; name one of its nodes (see `wormflow dag`)"
            ))
        );
    };
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let mask = p.graph.with_ancestors(&[i]);
    let states = resolver.states(Some(&mask));
    let state = states[i].as_ref().expect("resolved");
    let reasons = match state {
        NodeState::Stale { reasons, .. } => reasons.clone(),
        NodeState::Waiting { .. } => resolver.explain(i, None),
        _ => Vec::new(),
    };
    if json {
        let key = match state {
            NodeState::Fresh { key, .. } => Some(key.to_string()),
            NodeState::Stale { parts, .. } => Some(parts.key.to_string()),
            _ => None,
        };
        let doc = json!({
            "node": node,
            "state": state.label(),
            "key": key,
            "reasons": reasons,
            "after": waiting_on(state),
            "error": error_of(state),
        });
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    match state {
        NodeState::Fresh { key, .. } => println!("{node} is up to date (key {key})"),
        NodeState::Stale { parts, .. } => println!("{node} is stale (key {}):", parts.key.short()),
        NodeState::Waiting { inputs } => {
            println!("{node} waits on stale inputs: {}", inputs.join(", "))
        }
        NodeState::Error(e) => println!("{node}: {e}"),
    }
    for r in &reasons {
        println!("  - {r}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs a waiting node waits on (empty otherwise), for `--json`.
fn waiting_on(state: &NodeState) -> &[String] {
    match state {
        NodeState::Waiting { inputs } => inputs,
        _ => &[],
    }
}

/// Why a node's key cannot be computed, for `--json`.
fn error_of(state: &NodeState) -> Option<&str> {
    match state {
        NodeState::Error(e) => Some(e),
        _ => None,
    }
}

fn report_cmd(p: &Planned, open: bool) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let states = resolver.states(None);
    let mut found = Vec::new();
    for (i, node) in p.graph.nodes.iter().enumerate() {
        let Some((action, fresh)) = resolver.current_or_latest(i, states[i].as_ref()) else {
            continue;
        };
        if action.outputs.iter().any(|o| o.path == "report.html") {
            let path = crate::results::dir_of(&p.workspace, node).join("report.html");
            println!(
                "{}{}",
                path.display(),
                if fresh { "" } else { "  (stale: `wormflow run` brings it up to date)" }
            );
            found.push(path);
        }
    }
    if found.is_empty() {
        bail!("no report yet: add a stage of kind \"report\" and run `wormflow run`");
    }
    if open {
        open_in_browser(&found[0])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Open `path` with `$BROWSER` (a command, as in Python's `webbrowser`) or else `xdg-open`;
/// an error unless the opener ran and said it succeeded.
fn open_in_browser(path: &std::path::Path) -> Result<()> {
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let (program, args): (String, Vec<String>) = match &browser {
        Some(b) => {
            let mut words = b.split_whitespace().map(str::to_string);
            (words.next().unwrap_or_default(), words.collect())
        }
        None => ("xdg-open".into(), Vec::new()),
    };
    let status = std::process::Command::new(&program).args(&args).arg(path).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("could not open {} in a browser: `{program}` exited with {s}; set $BROWSER to a browser command, or open the file above yourself", path.display()),
        Err(e) => bail!("could not open {} in a browser: cannot run `{program}` ({e}); set $BROWSER to a browser command, or open the file above yourself", path.display()),
    }
}

fn gc_cmd(p: &Planned, dry_run: bool, forget: &[PathBuf]) -> Result<ExitCode> {
    use crate::store::roots::{pipeline_id, Roots};
    let store = Store::open_marked(&p.store_root)?;
    let this = pipeline_id(&p.file);
    for f in forget {
        let id = pipeline_id(f);
        if id == this {
            bail!(
                "--forget {}: that is the pipeline gc runs for; its results are what it keeps",
                f.display()
            );
        }
        let verb = if dry_run { "would forget" } else { "forgot" };
        match dry_run {
            true if Roots::read(&store, &id).is_some() => {
                println!("{verb} the results of {}", id.display())
            }
            false if Roots::forget(&store, &id)? => {
                println!("{verb} the results of {}", id.display())
            }
            _ => println!("{} has no results recorded in this store", id.display()),
        }
    }
    let forgotten: Vec<PathBuf> = forget.iter().map(|f| pipeline_id(f)).collect();
    // Who keeps what: this pipeline (computed now), then every other recorded pipeline.
    let mut kept_for: Vec<(String, usize)> = Vec::new();
    let keep = || {
        let resolver = Resolver::new(&p.graph, &store, &p.workspace);
        let mut keep = gc::Keep::default();
        for (i, state) in resolver.states(None).iter().enumerate() {
            match state {
                Some(NodeState::Fresh { key, .. }) => {
                    keep.actions.insert(*key);
                    keep.jobs.insert(*key);
                }
                Some(NodeState::Stale { parts, .. }) => {
                    keep.jobs.insert(parts.key);
                }
                _ => {}
            }
            // The latest result of every current node stays too, so `explain` keeps working.
            if let Some(k) = store.read_ref(&p.graph.nodes[i].id) {
                keep.actions.insert(k);
            }
        }
        kept_for.push((format!("{} (this pipeline)", this.display()), keep.actions.len()));
        for (path, roots) in Roots::all(&store) {
            let Some(roots) = roots else {
                kept_for.push((format!("{} (unreadable; kept nothing)", path.display()), 0));
                continue;
            };
            if roots.pipeline == this || forgotten.contains(&roots.pipeline) {
                continue;
            }
            if !roots.pipeline.exists() {
                kept_for.push((
                    format!("{} (file gone; its results are released)", roots.pipeline.display()),
                    0,
                ));
                if !dry_run {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            kept_for.push((
                format!("{} (last run {})", roots.pipeline.display(), roots.updated),
                roots.nodes.len(),
            ));
            keep.actions.extend(roots.nodes.values().copied());
            keep.jobs.extend(roots.nodes.values().copied());
        }
        keep
    };
    let r = gc::collect(&store, keep, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    if dry_run && !r.removed_nodes.is_empty() {
        println!(
            "{verb} the results of {} node records no pipeline reaches:",
            r.removed_nodes.len()
        );
        for n in &r.removed_nodes {
            println!("  {n}");
        }
    }
    for (who, n) in &kept_for {
        println!("keeping {n} results for {who}");
    }
    println!(
        "{verb} {} action records and {} objects ({:.1} MB); kept {} records, {} objects",
        r.actions_removed,
        r.objects_removed,
        r.bytes_freed as f64 / 1e6,
        r.actions_kept,
        r.objects_kept
    );
    if r.job_files_removed > 0 {
        println!(
            "{verb} {} Slurm job files of nodes no longer in the pipeline",
            r.job_files_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(p: &Planned, repair: bool) -> Result<ExitCode> {
    if !p.store_root.exists() {
        println!("no store at {} yet: nothing to verify", p.store_root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open_marked(&p.store_root)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let r = verify::verify(&store, repair, threads)?;
    for (o, why) in &r.corrupt_objects {
        println!("corrupt object: {} ({why})", o.display());
    }
    for (path, why) in &r.broken_actions {
        println!("broken record: {} ({why})", path.display());
    }
    println!(
        "checked {} objects ({:.1} MB): {}",
        r.objects_checked,
        r.bytes_checked as f64 / 1e6,
        if r.is_clean() {
            "all intact".to_string()
        } else if r.repaired {
            format!(
                "removed {} corrupt objects and {} records; `wormflow run` recomputes them",
                r.corrupt_objects.len(),
                r.broken_actions.len()
            )
        } else {
            "damage found; run `wormflow verify --repair`, then `wormflow run`".to_string()
        }
    );
    Ok(if r.is_clean() || r.repaired { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
