//! Helpers for integration tests: a temporary workspace with a pipeline.toml, and the real
//! `wormflow` binary run inside it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

pub fn wormflow_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wormflow")
}

impl Workspace {
    pub fn new(pipeline: &str) -> Workspace {
        let ws = Workspace { dir: tempfile::tempdir().expect("tempdir") };
        ws.write("pipeline.toml", pipeline);
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.file(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(wormflow_bin());
        c.args(args).current_dir(self.path());
        c
    }

    pub fn wf(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run wormflow")
    }

    /// Run and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.wf(args);
        assert!(out.status.success(), "wormflow {args:?} failed:\nstdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// `wormflow run --json ARGS` → its events (must succeed).
    pub fn run_events(&self, extra: &[&str]) -> Events {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        Events::parse(&self.ok(&args))
    }

    /// Expect failure with exit code 2 (bad input); returns stderr.
    pub fn bad(&self, args: &[&str]) -> String {
        let out = self.wf(args);
        assert_eq!(out.status.code(), Some(2), "expected exit 2 from {args:?}; stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
        text(&out.stderr)
    }

    /// Number of action records in the default store.
    pub fn action_count(&self) -> usize {
        count_files(&self.file("cache/actions"))
    }

    pub fn object_count(&self) -> usize {
        count_files(&self.file("cache/objects"))
    }
}

pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 })
        .sum()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// JSON events of a run.
pub struct Events(pub Vec<Value>);

impl Events {
    pub fn parse(stdout: &str) -> Events {
        Events(stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON event")).collect())
    }

    /// Node ids with the given event, sorted.
    pub fn nodes(&self, event: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["node"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    pub fn ran(&self) -> Vec<String> {
        self.nodes("done")
    }

    pub fn cached(&self) -> Vec<String> {
        self.nodes("cached")
    }
}

impl Workspace {
    /// Every file of the store's objects, actions and refs with its bytes' hash: equal
    /// snapshots mean the store was not touched.
    pub fn store_snapshot(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for sub in ["objects", "actions", "refs"] {
            snapshot_dir(&self.file("cache").join(sub), &self.file("cache"), &mut out);
        }
        out.sort();
        out
    }
}

fn snapshot_dir(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            snapshot_dir(&p, base, out);
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            out.push((p.strip_prefix(base).unwrap().display().to_string(), blake3::hash(&bytes).to_hex().to_string()));
        }
    }
}
