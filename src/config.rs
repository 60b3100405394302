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
}

impl SourceMap<'_> {
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    pub fn error(&self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> ConfigError {
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
}

/// Apply `--set path=value` overrides to the TOML text, editing values in place.
///
/// The value is read as TOML (`5`, `1e-3`, `"lstm"`, `[1, 2]`); anything that does not parse
/// as TOML is taken as a bare string, so `--set stages.train.params.model=lstm` works.
pub fn apply_overrides(file: &Path, text: &str, overrides: &[String]) -> Result<String, ConfigError> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let map = SourceMap { file, text };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        map.error(e.span(), format!("malformed TOML: {}", e.message()))
    })?;
    for ov in overrides {
        let (path, value) = ov.split_once('=').ok_or_else(|| ConfigError {
            file: file.to_path_buf(),
            line_col: None,
            message: format!("--set {ov:?}: expected PATH=VALUE, e.g. stages.train.params.epochs=5"),
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

fn parse_override_value(raw: &str) -> toml_edit::Value {
    raw.parse::<toml_edit::Value>()
        .unwrap_or_else(|_| toml_edit::Value::from(raw.to_string()))
}

/// Read the raw document; syntax errors and unknown keys come back located.
pub fn parse_raw(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let map = SourceMap { file, text };
    if let Err(e) = toml::from_str::<toml::Table>(text) {
        return Err(map.error(e.span(), format!("malformed TOML: {} (see https://toml.io for the syntax)", e.message().trim())));
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
        let m = SourceMap { file: Path::new("p.toml"), text };
        assert_eq!(m.line_col(0), (1, 1));
        assert_eq!(m.line_col(6), (2, 1));
        assert_eq!(m.line_col(9), (2, 4));
    }

    #[test]
    fn overrides_edit_in_place() {
        let text = "[pipeline]\nname = \"x\"\n\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"true\", n = 1 }\n";
        let out = apply_overrides(Path::new("p"), text, &["stages.a.params.n=5".into(), "stages.a.params.m=lstm".into()]).unwrap();
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
