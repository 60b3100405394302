//! Why a node must run, as data (like cargo's `DirtyReason`): `status`, `explain` and
//! `run --dry-run` print them with `Display` and, with `--json`, as tagged objects
//! (`{"reason": "param_changed", "param": "params.epochs", "from": "30", "to": "40"}`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// One difference between a node's recipe now and its last stored result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    /// No result of this node was ever stored.
    NeverBuilt,
    /// `run --force` names it.
    Forced,
    /// The result for the current key is recorded but an output is gone or damaged.
    OutputDamaged,
    KindChanged {
        from: String,
        to: String,
    },
    /// The stage kind's code version changed; `changes` names the files and crates.
    CodeChanged {
        kind: String,
        from: String,
        to: String,
        changes: Vec<CodeChange>,
    },
    ParamChanged {
        param: String,
        from: String,
        to: String,
    },
    ParamAdded {
        param: String,
        value: String,
    },
    ParamRemoved {
        param: String,
        was: String,
    },
    InputsReordered,
    InputsChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// An input node's outputs differ from those the last result was computed from.
    InputChanged {
        node: String,
    },
    FileChanged {
        path: String,
    },
    FileAdded {
        path: String,
    },
    /// A file the last result depended on (e.g. under a directory source) is gone.
    FileRemoved {
        path: String,
    },
    /// Some inputs are stale themselves: the key is known once they ran.
    InputsRunFirst,
    /// The key differs for nothing the last record lists (e.g. an older wormflow wrote it).
    Unrecorded,
}

/// One entry of a kind's code manifest that differs: a source file (`src/neurons.rs`) or a
/// crate (`crate arrow`); `None` where it was absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeChange {
    pub item: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl CodeChange {
    /// The entries that differ between two manifests (file → hash, crate → version).
    pub fn between(
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Vec<CodeChange> {
        let items: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        items
            .into_iter()
            .filter(|item| before.get(*item) != after.get(*item))
            .map(|item| CodeChange {
                item: item.clone(),
                from: before.get(item).cloned(),
                to: after.get(item).cloned(),
            })
            .collect()
    }
}

impl fmt::Display for CodeChange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let is_crate = self.item.starts_with("crate ");
        match (&self.from, &self.to) {
            (None, _) => write!(f, "{} added", self.item),
            (_, None) => write!(f, "{} no longer used", self.item),
            (Some(a), Some(b)) if is_crate => write!(f, "{} {a} → {b}", self.item),
            _ => write!(f, "{} edited", self.item),
        }
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        use StaleReason::*;
        match self {
            NeverBuilt => write!(f, "never built"),
            Forced => write!(f, "forced"),
            OutputDamaged => {
                write!(f, "the stored output is missing or damaged (run `wormflow verify`)")
            }
            KindChanged { from, to } => write!(f, "kind changed: {from} → {to}"),
            CodeChanged { kind, from, to, changes } => {
                write!(f, "stage code `{kind}` changed (version {from} → {to})")?;
                if !changes.is_empty() {
                    let listed: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                    write!(f, ": {}", listed.join(", "))?;
                }
                Ok(())
            }
            ParamChanged { param, from, to } => write!(f, "{param} {from} → {to}"),
            ParamAdded { param, value } => write!(f, "{param} added ({value})"),
            ParamRemoved { param, was } => write!(f, "{param} removed (was {was})"),
            InputsReordered => write!(f, "inputs reordered"),
            InputsChanged { added, removed } => write!(
                f,
                "inputs changed (added: [{}], removed: [{}])",
                added.join(", "),
                removed.join(", ")
            ),
            InputChanged { node } => write!(f, "input {node} changed"),
            FileChanged { path } => write!(f, "file {path} changed"),
            FileAdded { path } => write!(f, "file {path} added to deps"),
            FileRemoved { path } => write!(f, "file {path} no longer among the deps"),
            InputsRunFirst => write!(f, "inputs will be rebuilt first"),
            Unrecorded => write!(
                f,
                "the key changed for a reason not recorded (e.g. an older wormflow wrote the result)"
            ),
        }
    }
}

/// `reasons` joined for one line of text.
pub fn in_words(reasons: &[StaleReason]) -> String {
    reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_serialise_as_tagged_objects_and_read_as_words() {
        let r = StaleReason::ParamChanged {
            param: "params.epochs".into(),
            from: "30".into(),
            to: "40".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"reason": "param_changed", "param": "params.epochs", "from": "30", "to": "40"})
        );
        assert_eq!(r.to_string(), "params.epochs 30 → 40");
        let before = BTreeMap::from([
            ("src/neurons.rs".to_string(), "aaa".to_string()),
            ("crate arrow".to_string(), "57.0.0".to_string()),
        ]);
        let after = BTreeMap::from([
            ("src/neurons.rs".to_string(), "bbb".to_string()),
            ("crate arrow".to_string(), "57.1.0".to_string()),
        ]);
        let changes = CodeChange::between(&before, &after);
        let words: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(words, ["crate arrow 57.0.0 → 57.1.0", "src/neurons.rs edited"]);
    }
}
