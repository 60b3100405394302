//! How a run tells the user what happens: JSON events (one per line on stdout), progress
//! bars on a terminal, or plain lines on stderr when output is redirected.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;

use wormflow_api::Progress;

use crate::hash::Hash;
use crate::store::ActionRecord;

use super::RunSummary;

pub enum Mode {
    Json,
    Bars,
    Lines,
}

/// How much a terminal or log gets told (`-q` / default / `-v`); JSON is always complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// Failures, warnings and the summary.
    Quiet,
    #[default]
    /// Also each node that runs and how it ended, and progress every `PROGRESS_LINE_INTERVAL`.
    Normal,
    /// Also nodes found up to date, and every progress message.
    Verbose,
}

pub struct Reporter {
    mode: Mode,
    verbosity: Verbosity,
    bars: OnceLock<Bars>,
    out: Mutex<()>,
    /// When each node last emitted a JSON progress event (they are throttled).
    last_progress: Mutex<HashMap<String, Instant>>,
}

/// At most one JSON progress event per node in this interval.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Without a terminal (nohup, Slurm logs): one progress line per node in this interval.
const PROGRESS_LINE_INTERVAL: Duration = Duration::from_secs(10);

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    nodes: Mutex<HashMap<String, ProgressBar>>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter::with_verbosity(json, Verbosity::Normal)
    }

    pub fn with_verbosity(json: bool, verbosity: Verbosity) -> Reporter {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        // Quiet on a terminal: no bars either, just the lines that matter.
        let mode = match mode {
            Mode::Bars if verbosity == Verbosity::Quiet => Mode::Lines,
            other => other,
        };
        Reporter {
            mode,
            verbosity,
            bars: OnceLock::new(),
            out: Mutex::new(()),
            last_progress: Mutex::new(HashMap::new()),
        }
    }

    pub fn begin(&self, total: usize) {
        if let Mode::Bars = self.mode {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{prefix:>8.bold} [{bar:30.cyan/blue}] {pos}/{len} nodes {elapsed_precise} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            overall.set_prefix("wormflow");
            overall.enable_steady_tick(Duration::from_millis(200));
            let _ = self.bars.set(Bars { multi, overall, nodes: Mutex::new(HashMap::new()) });
        }
    }

    fn json(&self, value: serde_json::Value) {
        let _guard = self.out.lock().expect("output lock");
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
        let _ = stdout.flush();
    }

    /// A line for the terminal or log, if the verbosity asks for lines of this `level`.
    fn line_at(&self, level: Verbosity, text: String) {
        if self.verbosity >= level {
            self.line(text);
        }
    }

    fn line(&self, text: String) {
        match self.bars.get() {
            Some(b) => b.multi.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    pub fn start(&self, node: &str, key: &Hash) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "start", "node": node, "key": key})),
            Mode::Lines => self.line_at(Verbosity::Normal, format!("  run     {node}")),
            Mode::Bars => {
                if let Some(b) = self.bars.get() {
                    let bar = b.multi.insert_before(&b.overall, ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner:.green} {prefix:40} [{bar:20}] {elapsed:>4} {msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(node.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    b.nodes.lock().expect("bars lock").insert(node.to_string(), bar);
                }
            }
        }
    }

    /// Whether `node` may report progress now (at most once per `interval`).
    fn progress_due(&self, node: &str, interval: Duration) -> bool {
        let now = Instant::now();
        let mut last = self.last_progress.lock().expect("progress lock");
        if last.get(node).is_some_and(|t| now.duration_since(*t) < interval) {
            return false;
        }
        last.insert(node.to_string(), now);
        true
    }

    pub fn progress(&self, node: &str, update: &Progress) {
        let (fraction, message) = (update.fraction, update.message.as_str());
        if update.notice && !matches!(self.mode, Mode::Json) {
            // Shown at every verbosity, like a warning.
            self.line(format!("  note    {node}: {message}"));
            return;
        }
        match self.mode {
            Mode::Json => {
                if update.notice || self.progress_due(node, PROGRESS_INTERVAL) {
                    let mut event = json!({"event": "progress", "node": node});
                    if let (Some(fields), Ok(serde_json::Value::Object(more))) =
                        (event.as_object_mut(), serde_json::to_value(update))
                    {
                        fields.extend(more);
                    }
                    self.json(event);
                }
                return;
            }
            Mode::Lines => {
                let every = self.verbosity == Verbosity::Verbose;
                if self.verbosity >= Verbosity::Normal
                    && (every || self.progress_due(node, PROGRESS_LINE_INTERVAL))
                {
                    let percent = (fraction.clamp(0.0, 1.0) * 100.0).round();
                    self.line(format!("  ...     {node} {percent:>3}% {message}"));
                }
                return;
            }
            Mode::Bars => {}
        }
        if let Some(b) = self.bars.get() {
            if let Some(bar) = b.nodes.lock().expect("bars lock").get(node) {
                bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                bar.set_message(message.to_string());
            }
        }
    }

    fn end_bar(&self) {
        if let Some(b) = self.bars.get() {
            b.overall.inc(1);
        }
    }

    fn remove_bar(&self, node: &str) {
        if let Some(b) = self.bars.get() {
            if let Some(bar) = b.nodes.lock().expect("bars lock").remove(node) {
                bar.finish_and_clear();
                b.multi.remove(&bar);
            }
        }
    }

    pub fn cached(&self, node: &str, key: &Hash, action: &ActionRecord) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "cached", "node": node, "key": key, "outputs": outputs_json(action)})),
            Mode::Lines | Mode::Bars => {
                self.line_at(Verbosity::Verbose, format!("  fresh   {node} ({})", key.short()))
            }
        }
        self.end_bar();
    }

    pub fn pulled(&self, node: &str, action: &ActionRecord) {
        self.ended(
            node,
            json!({"event": "pulled", "node": node, "key": action.key, "outputs": outputs_json(action)}),
            (self.verbosity >= Verbosity::Normal)
                .then(|| format!("  pulled  {node} ({} files)", action.outputs.len())),
        );
    }

    /// A node handed to Slurm.
    pub fn submitted(&self, node: &str, job: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "submitted", "node": node, "job": job})),
            Mode::Lines | Mode::Bars => {
                self.line_at(Verbosity::Normal, format!("  queued  {node} (slurm job {job})"))
            }
        }
    }

    /// Something the user should know that fails nothing.
    pub fn warn(&self, message: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "warning", "message": message})),
            Mode::Lines | Mode::Bars => self.line(format!("  warning {message}")),
        }
    }

    pub fn done(&self, node: &str, action: &ActionRecord, seconds: f64) {
        let line = format!("  done    {node} ({seconds:.1}s, {} files)", action.outputs.len());
        self.ended(
            node,
            json!({"event": "done", "node": node, "key": action.key, "seconds": seconds, "outputs": outputs_json(action)}),
            (self.verbosity >= Verbosity::Normal).then_some(line),
        );
    }

    pub fn failed(&self, node: &str, key: Option<&Hash>, error: &str) {
        self.ended(
            node,
            json!({"event": "failed", "node": node, "key": key, "error": error}),
            Some(format!("  FAILED  {node}\n{}", indent(error))),
        );
    }

    /// A node that ran (or was pulled) has finished: its event in JSON mode; otherwise its
    /// bar goes and a line says how it ended. Either way the overall bar moves on.
    fn ended(&self, node: &str, event: serde_json::Value, line: Option<String>) {
        match self.mode {
            Mode::Json => self.json(event),
            Mode::Lines | Mode::Bars => {
                self.remove_bar(node);
                if let Some(line) = line {
                    self.line(line);
                }
            }
        }
        self.end_bar();
    }

    pub fn skipped(&self, node: &str, why: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "skipped", "node": node, "reason": why})),
            Mode::Lines | Mode::Bars => self.line(format!("  skipped {node}: {why}")),
        }
    }

    pub fn finish(&self, s: &RunSummary) {
        if let Some(b) = self.bars.get() {
            b.overall.finish_and_clear();
        }
        match self.mode {
            Mode::Json => self.json(json!({
                "event": "summary", "ran": s.ran, "cached": s.cached, "pulled": s.pulled, "failed": s.failed, "skipped": s.skipped,
                "warnings": s.warnings.iter().map(|(node, message)| json!({"node": node, "message": message})).collect::<Vec<_>>(),
            })),
            Mode::Lines | Mode::Bars => {
                if s.ran == 0 && s.failed == 0 && s.skipped == 0 && s.pulled == 0 {
                    eprintln!("Nothing to do: all {} nodes are up to date.", s.cached);
                } else {
                    eprintln!("ran {}, pulled {}, up to date {}, failed {}, skipped {}", s.ran, s.pulled, s.cached, s.failed, s.skipped);
                }
                if !s.warnings.is_empty() {
                    eprintln!("{} warnings (the results are stored; read them before trusting a fit):", s.warnings.len());
                    for (node, message) in &s.warnings {
                        eprintln!("  {node}: {message}");
                    }
                }
            }
        }
    }
}

fn outputs_json(action: &ActionRecord) -> serde_json::Value {
    serde_json::Value::Array(
        action
            .outputs
            .iter()
            .map(|o| json!({"path": o.path, "hash": o.hash, "size": o.size}))
            .collect(),
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("          {l}")).collect::<Vec<_>>().join("\n")
}
