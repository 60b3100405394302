//! The `wormflow` command line: the arguments (clap) and one module per group of commands.

mod report;
mod run;
mod show;
mod status;
mod store;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::dag::DagFormat;
use crate::exec::report::Verbosity;
use crate::kinds::Registry;
use crate::store::Store;
use crate::workspace::plan;

pub use run::run_once;

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

/// `--group-max` by default (see the README's "Many models at once" for the measurements).
pub const DEFAULT_GROUP_MAX: usize = 16;

#[derive(Parser, Clone)]
pub struct RunArgs {
    /// Nodes or stages to bring up to date (with what they need); default: all.
    pub nodes: Vec<String>,
    /// Nodes run at once (default: the number of cores).
    #[arg(short = 'j', long, env = "WORMFLOW_JOBS")]
    pub jobs: Option<usize>,
    /// The most nodes of one group that run at once — train nodes of a stage that share
    /// architecture and size, trained as one stack of models; 1: each node alone.
    #[arg(long, env = "WORMFLOW_GROUP_MAX", default_value_t = DEFAULT_GROUP_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub group_max: usize,
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
        /// With -n: what would run costs, by stage and in total (estimated device-hours).
        #[arg(long, requires = "dry_run")]
        cost: bool,
    },
    /// Show every node's state (fresh / stale / waiting) and why.
    Status {
        #[arg(long)]
        json: bool,
        /// Also what bringing the pipeline up to date would cost (as `run -n --cost`).
        #[arg(long)]
        cost: bool,
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
        /// The node's stored record as JSON (outputs, params, inputs, code, provenance) with
        /// `current`: whether it is the result for the node's current key.
        #[arg(long)]
        json: bool,
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
    Exec {
        /// The node's key; several keys: the nodes of one group, run together.
        #[arg(required = true)]
        keys: Vec<String>,
    },
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
        Command::Run { args, dry_run, cost } => {
            let args = &RunArgs { verbosity: cli.verbosity(), ..args.clone() };
            let p = plan(registry, &cli.file, &cli.set)?;
            if *dry_run {
                return run::dry_run_report(&p, registry, args, *cost);
            }
            let store = Store::open(&p.store_root)?;
            // Ctrl-C / SIGTERM: stop starting nodes, cancel the running ones (and Slurm
            // jobs), store nothing half-done (see signals.rs). Only for `run`: `watch`
            // keeps the default, quitting at once, so a later run is not cancelled.
            crate::signals::install().context("cannot install signal handlers")?;
            let summary = run::run_once(&p, &store, registry, args)?;
            if let Some(sig) = crate::signals::received() {
                eprintln!(
                    "interrupted by {}: {} nodes finished and are stored; run again to continue",
                    crate::signals::name(sig),
                    summary.ran + summary.cached + summary.pulled
                );
                return Ok(ExitCode::from((128 + sig) as u8));
            }
            Ok(run::exit_for(&summary))
        }
        Command::Status { json, cost } => {
            let p = plan(registry, &cli.file, &cli.set)?;
            let code = status::status(&p, *json)?;
            if *cost {
                run::cost_report(&p, registry, *json)?;
            }
            Ok(code)
        }
        Command::Explain { node, json } => {
            status::explain(&plan(registry, &cli.file, &cli.set)?, node, *json)
        }
        Command::Dag { format, stages } => {
            let p = plan(registry, &cli.file, &cli.set)?;
            print!("{}", crate::dag::render(&p.graph, *format, *stages));
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { node, rows, json } => {
            show::show(&plan(registry, &cli.file, &cli.set)?, node, *rows, *json)
        }
        Command::Gc { dry_run, forget } => {
            store::gc_cmd(&plan(registry, &cli.file, &cli.set)?, *dry_run, forget)
        }
        Command::Verify { repair } => {
            store::verify_cmd(&plan(registry, &cli.file, &cli.set)?, *repair)
        }
        Command::Report { open } => {
            report::report_cmd(&plan(registry, &cli.file, &cli.set)?, *open)
        }
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
        Command::Exec { keys } => {
            run::exec_cmd(&plan(registry, &cli.file, &cli.set)?, registry, keys)
        }
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
            watch::watch(registry, &cli.file, &cli.set, args, *max_runs)
        }
    }
}
