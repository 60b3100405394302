//! Parse and validate `pipeline.toml`.
//!
//! Every error carries the file, line and column of the offending text so a user can jump
//! straight to it. Overrides given with `--set a.b.c=value` are applied to the document
//! before it is read, in place, so the positions of untouched text stay correct.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// A problem in the pipeline description, located in its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub line_col: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Locates byte offsets of one source text as line/column pairs.
#[derive(Clone)]
pub struct SourceMap<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    /// Byte offset where each line starts: every declaration asks for its position, so a
    /// scan from the top per lookup made planning quadratic in the file's length.
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> SourceMap<'a> {
        let newlines = text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1);
        let line_starts = std::iter::once(0).chain(newlines).collect();
        SourceMap { file, text, line_starts }
    }

    /// 1-based line and column (in bytes) of `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        (line, offset - self.line_starts[line - 1] + 1)
    }

    pub fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line_col: span.map(|s| self.line_col(s.start)),
            message: message.into(),
        }
    }
}

/// `pipeline.toml` as written, with the source position of everything that can be wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub pipeline: Spanned<RawPipeline>,
    #[serde(default)]
    pub stages: BTreeMap<String, Spanned<RawStage>>,
    /// Other stores to push to and pull from (not part of any key).
    #[serde(default)]
    pub remotes: BTreeMap<String, Spanned<RemoteDecl>>,
    /// How `--executor slurm` submits jobs (not part of any key).
    #[serde(default)]
    pub slurm: Option<Spanned<SlurmDecl>>,
}

/// `[remotes.NAME]`: a directory (`url = "/shared/lab/wormflow"`) or an S3 bucket
/// (`url = "s3://bucket/prefix"`, optional `endpoint` and `region`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteDecl {
    pub url: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// The remote used when `--remote` is not given (needed only with several remotes).
    #[serde(default)]
    pub default: bool,
    /// Seconds to wait for a connection or a response before giving up (with retries).
    #[serde(default = "default_remote_timeout")]
    pub timeout_s: u64,
}

fn default_remote_timeout() -> u64 {
    30
}

/// Resources of a Slurm job (`[slurm]` defaults, `[slurm.kinds.KIND]` per stage kind).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    pub partition: Option<String>,
    pub cpus: Option<u32>,
    pub gpus: Option<u32>,
    /// e.g. "4G" (sbatch --mem).
    pub mem: Option<String>,
    /// e.g. "02:00:00" (sbatch --time).
    pub time: Option<String>,
    /// Run this kind's nodes in the driver process instead of submitting them.
    #[serde(default)]
    pub local: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmDecl {
    /// Defaults for every job (a kind's table overrides them).
    pub partition: Option<String>,
    pub cpus: Option<u32>,
    pub gpus: Option<u32>,
    pub mem: Option<String>,
    pub time: Option<String>,
    #[serde(default)]
    pub kinds: BTreeMap<String, SlurmResources>,
    /// More sbatch arguments for every job, e.g. ["--account=lab"].
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Seconds between squeue polls.
    #[serde(default = "default_poll")]
    pub poll_s: f64,
    /// A job still pending after this many seconds is cancelled and its node failed.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_s: u64,
    /// Jobs in the queue at once.
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// Submit jobs requeueable (`--requeue`): a preempted job goes back to the queue, and
    /// `requeue_before_s` seconds before its time limit a job stops its nodes and requeues
    /// itself; either way its train nodes resume from their checkpoints.
    #[serde(default)]
    pub requeue: bool,
    #[serde(default = "default_requeue_before")]
    pub requeue_before_s: u32,
}

fn default_requeue_before() -> u32 {
    // Slurm sends the warning signal up to a minute early or late (its event resolution).
    300
}

fn default_poll() -> f64 {
    2.0
}
fn default_start_timeout() -> u64 {
    3600
}
fn default_max_jobs() -> usize {
    200
}

impl Default for SlurmDecl {
    fn default() -> Self {
        SlurmDecl {
            partition: None,
            cpus: None,
            gpus: None,
            mem: None,
            time: None,
            kinds: BTreeMap::new(),
            sbatch_args: Vec::new(),
            poll_s: default_poll(),
            start_timeout_s: default_start_timeout(),
            max_jobs: default_max_jobs(),
            requeue: false,
            requeue_before_s: default_requeue_before(),
        }
    }
}

/// The parts of pipeline.toml that say where and how to run, not what: remotes and Slurm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub file: PathBuf,
    pub remotes: BTreeMap<String, RemoteDecl>,
    pub slurm: SlurmDecl,
}

impl Settings {
    /// Read them from the pipeline text (after `--set` overrides), checking each remote.
    pub fn read(file: &Path, text: &str, overrides: &[String]) -> Result<Settings, ConfigError> {
        let text = apply_overrides(file, text, overrides)?;
        let raw = parse_raw(file, &text)?;
        let map = SourceMap::new(file, &text);
        let mut remotes = BTreeMap::new();
        for (name, decl) in raw.remotes {
            let span = decl.span();
            let decl = decl.into_inner();
            if decl.url.is_empty() {
                return Err(map.error(
                    Some(span),
                    format!("remotes.{name}.url is empty; give a directory or s3://bucket/prefix"),
                ));
            }
            if decl.url.contains("://")
                && !decl.url.starts_with("s3://")
                && !decl.url.starts_with("file://")
            {
                return Err(map.error(Some(span), format!("remotes.{name}.url {:?}: only directories, file:// and s3:// URLs are supported", decl.url)));
            }
            if !decl.url.starts_with("s3://") && (decl.endpoint.is_some() || decl.region.is_some())
            {
                return Err(map.error(
                    Some(span),
                    format!("remotes.{name}: endpoint and region apply to s3:// remotes only"),
                ));
            }
            remotes.insert(name, decl);
        }
        if remotes.values().filter(|r| r.default).count() > 1 {
            return Err(
                map.error(None, "more than one remote has default = true; keep one".to_string())
            );
        }
        let slurm = raw.slurm.map(|s| s.into_inner()).unwrap_or_default();
        Ok(Settings { file: file.to_path_buf(), remotes, slurm })
    }

    /// The remote named, or the default one: the only remote, or the one with default = true.
    pub fn remote(&self, name: Option<&str>) -> anyhow::Result<(&str, &RemoteDecl)> {
        let names: Vec<&str> = self.remotes.keys().map(|k| k.as_str()).collect();
        match name {
            Some(n) => self.remotes.get_key_value(n).map(|(k, v)| (k.as_str(), v)).ok_or_else(|| {
                let known = if names.is_empty() { "none is declared".to_string() } else { format!("declared: {}", names.join(", ")) };
                anyhow::anyhow!("{}: unknown remote {n:?} ({known}); add [remotes.{n}] url = \"…\" to the pipeline", self.file.display())
            }),
            None => {
                if let Some((k, v)) = self.remotes.iter().find(|(_, r)| r.default) {
                    return Ok((k.as_str(), v));
                }
                match names.as_slice() {
                    [] => anyhow::bail!("{}: no remote declared; add e.g. [remotes.lab] url = \"/shared/lab/wormflow\" (or s3://bucket/prefix)", self.file.display()),
                    [_] => Ok(self.remotes.iter().next().map(|(k, v)| (k.as_str(), v)).expect("one remote")),
                    _ => anyhow::bail!("{}: several remotes ({}); choose one with --remote NAME or mark one default = true", self.file.display(), names.join(", ")),
                }
            }
        }
    }

    /// The resources of a job running a node of `kind`: its kind's values over the defaults.
    pub fn slurm_resources(&self, kind: &str) -> SlurmResources {
        let d = &self.slurm;
        let k = d.kinds.get(kind).cloned().unwrap_or_default();
        SlurmResources {
            partition: k.partition.or_else(|| d.partition.clone()),
            cpus: k.cpus.or(d.cpus),
            gpus: k.gpus.or(d.gpus),
            mem: k.mem.or_else(|| d.mem.clone()),
            time: k.time.or_else(|| d.time.clone()),
            local: k.local,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub name: String,
    #[serde(default = "default_store")]
    pub store: String,
    #[serde(default)]
    pub seed: u64,
}

fn default_store() -> String {
    "cache".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub kind: Spanned<String>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub matrix: Option<Spanned<BTreeMap<String, Spanned<Vec<toml::Value>>>>>,
    /// Take the matrix of this needed stage (a sweep declared once).
    #[serde(default)]
    pub matrix_from: Option<Spanned<String>>,
}

/// Apply `--set path=value` overrides to the TOML text, editing values in place.
///
/// The value is read as TOML (`5`, `1e-3`, `"lstm"`, `[1, 2]`); anything that does not parse
/// as TOML is taken as a bare string, so `--set stages.train.params.model=lstm` works.
pub fn apply_overrides(
    file: &Path,
    text: &str,
    overrides: &[String],
) -> Result<String, ConfigError> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let map = SourceMap::new(file, text);
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        map.error(e.span(), format!("malformed TOML: {}", e.message()))
    })?;
    for ov in overrides {
        let (path, value) = ov.split_once('=').ok_or_else(|| ConfigError {
            file: file.to_path_buf(),
            line_col: None,
            message: format!(
                "--set {ov:?}: expected PATH=VALUE, e.g. stages.train.params.epochs=5"
            ),
        })?;
        let value = parse_override_value(value.trim());
        let keys: Vec<&str> = path.trim().split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError {
                file: file.to_path_buf(),
                line_col: None,
                message: format!("--set {ov:?}: empty key in path {path:?}"),
            });
        }
        let mut item = doc.as_item_mut();
        for key in &keys[..keys.len() - 1] {
            let table = item.as_table_like_mut().ok_or_else(|| ConfigError {
                file: file.to_path_buf(),
                line_col: None,
                message: format!("--set {ov:?}: {key:?} is not inside a table"),
            })?;
            if table.get(key).is_none() {
                table.insert(key, toml_edit::Item::Table(toml_edit::Table::new()));
            }
            item = table.get_mut(key).expect("inserted above");
        }
        let last = keys[keys.len() - 1];
        let table = item.as_table_like_mut().ok_or_else(|| ConfigError {
            file: file.to_path_buf(),
            line_col: None,
            message: format!("--set {ov:?}: the parent of {last:?} is not a table"),
        })?;
        table.insert(last, toml_edit::Item::Value(value));
    }
    Ok(doc.to_string())
}

/// An error located in text that a `--set` wrote names that `--set` argument instead of a
/// line of the edited document (which the user never saw): inside the value it set, that
/// argument; on any other line the overrides changed, all of them.
pub fn attribute_to_overrides(
    err: ConfigError,
    original: &str,
    overrides: &[String],
) -> ConfigError {
    let Some((line, col)) = err.line_col else { return err };
    if overrides.is_empty() {
        return err;
    }
    let Ok(edited) = apply_overrides(&err.file, original, overrides) else { return err };
    let Ok(doc) = toml_edit::Document::parse(edited.as_str()) else { return err };
    let map = SourceMap::new(&err.file, &edited);
    for ov in overrides {
        let Some((path, _)) = ov.split_once('=') else { continue };
        let mut item = Some(doc.as_item());
        for key in path.trim().split('.') {
            item = item.and_then(|i| i.get(key));
        }
        let Some(span) = item.and_then(|i| i.span()) else { continue };
        let (start, end) = (map.line_col(span.start), map.line_col(span.end));
        if (line, col) >= start && (line, col) <= end {
            return ConfigError {
                file: err.file,
                line_col: None,
                message: format!("--set {ov:?}: {}", err.message),
            };
        }
    }
    if edited.lines().nth(line - 1) != original.lines().nth(line - 1) {
        let all: Vec<String> = overrides.iter().map(|o| format!("--set {o:?}")).collect();
        return ConfigError {
            file: err.file,
            line_col: None,
            message: format!("{} (in the pipeline as changed by {})", err.message, all.join(" ")),
        };
    }
    err
}

fn parse_override_value(raw: &str) -> toml_edit::Value {
    raw.parse::<toml_edit::Value>().unwrap_or_else(|_| toml_edit::Value::from(raw.to_string()))
}

/// Read the raw document; syntax errors and unknown keys come back located.
pub fn parse_raw(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let map = SourceMap::new(file, text);
    if let Err(e) = toml::from_str::<toml::Table>(text) {
        return Err(map.error(
            e.span(),
            format!("malformed TOML: {} (see https://toml.io for the syntax)", e.message().trim()),
        ));
    }
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let hint = if msg.starts_with("unknown field") {
            " (check the spelling; see the pipeline.toml reference in the README)"
        } else if msg.starts_with("missing field") {
            " (add it; see the pipeline.toml reference in the README)"
        } else {
            ""
        };
        map.error(e.span(), format!("{msg}{hint}"))
    })
}

/// Convert a TOML value to JSON with numbers normalised: an integral float becomes an
/// integer, so `epochs = 5` and `epochs = 5.0` mean (and hash) the same.
pub fn toml_to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => normalise_float(*f)?,
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t {
                m.insert(k.clone(), toml_to_json(v)?);
            }
            J::Object(m)
        }
    })
}

pub fn normalise_float(f: f64) -> Result<serde_json::Value, String> {
    if !f.is_finite() {
        return Err(format!("{f} is not a finite number"));
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(serde_json::Value::from(f as i64));
    }
    Ok(serde_json::Value::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based() {
        let text = "a = 1\nbb = 2\n";
        let m = SourceMap::new(Path::new("p.toml"), text);
        assert_eq!(m.line_col(0), (1, 1));
        assert_eq!(m.line_col(6), (2, 1));
        assert_eq!(m.line_col(9), (2, 4));
    }

    #[test]
    fn overrides_edit_in_place() {
        let text = "[pipeline]\nname = \"x\"\n\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"true\", n = 1 }\n";
        let out = apply_overrides(
            Path::new("p"),
            text,
            &["stages.a.params.n=5".into(), "stages.a.params.m=lstm".into()],
        )
        .unwrap();
        let raw = parse_raw(Path::new("p"), &out).unwrap();
        let a = &raw.stages["a"].get_ref().params;
        assert_eq!(a["n"].get_ref(), &toml::Value::Integer(5));
        assert_eq!(a["m"].get_ref(), &toml::Value::String("lstm".into()));
    }

    #[test]
    fn integral_floats_normalise_to_integers() {
        assert_eq!(normalise_float(5.0).unwrap(), serde_json::json!(5));
        assert_eq!(normalise_float(0.001).unwrap(), serde_json::json!(0.001));
        assert!(normalise_float(f64::NAN).is_err());
    }
}
