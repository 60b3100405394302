//! Helpers for integration tests: a temporary workspace with a pipeline.toml, and the real
//! `wormflow` binary run inside it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// A file of the repository (data/, tests/ scripts).
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
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
        assert!(
            out.status.success(),
            "wormflow {args:?} failed:\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
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
        assert_eq!(
            out.status.code(),
            Some(2),
            "expected exit 2 from {args:?}; stdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    /// `wormflow run` must fail with a node failing (exit 1); returns stdout and stderr.
    pub fn run_fails(&self) -> String {
        let out = self.wf(&["run"]);
        let both = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "expected a node to fail: {both}");
        both
    }

    /// Number of action records in the default store.
    pub fn action_count(&self) -> usize {
        count_files(&self.file("cache/actions"))
    }

    pub fn object_count(&self) -> usize {
        count_files(&self.file("cache/objects"))
    }

    /// The store object holding the bytes of a file in results/ (results are copies).
    pub fn object_of(&self, results_file: &str) -> PathBuf {
        let hex =
            blake3::hash(&std::fs::read(self.file(results_file)).unwrap()).to_hex().to_string();
        let path = self.file("cache/objects").join(&hex[..2]).join(&hex[2..]);
        assert!(path.is_file(), "{results_file}: no object {}", path.display());
        path
    }
}

/// Where results/ shows a node: `train[lr=10.0,model=x]` → `results/train/lr=10.0/model=x`
/// (for ids whose values need no quoting).
pub fn results_dir(node: &str) -> String {
    match node.split_once('[') {
        Some((stage, rest)) => {
            format!("results/{stage}/{}", rest.trim_end_matches(']').replace(',', "/"))
        }
        None => format!("results/{node}"),
    }
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
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
        Events(
            stdout
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).expect("JSON event"))
                .collect(),
        )
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
            out.push((
                p.strip_prefix(base).unwrap().display().to_string(),
                blake3::hash(&bytes).to_hex().to_string(),
            ));
        }
    }
}

/// The venv's Python (torch, numpy, polars, pyarrow, pandas, safetensors, pynwb,
/// ndx-multichannel-volume, h5py: `make torch`).
pub fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wormflow/venv")
    });
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// A test service that may be missing on a developer's machine. `.ci/run` installs them and
/// sets WORMFLOW_REQUIRE_SERVICES=1, so there a missing service fails the test; elsewhere the
/// test says loudly that it was skipped.
pub fn service_missing(what: &str, why: &str) -> bool {
    if std::env::var("WORMFLOW_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{what} is required (WORMFLOW_REQUIRE_SERVICES=1) but unavailable: {why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} is not available here: {why}\n!!!!!!!! run tests/services/install.sh (or `make test`, which does) to test it\n");
    false
}

/// A real S3-compatible server (s3s-fs, installed by tests/services/install.sh) on a free
/// loopback port, serving a temporary directory. Killed on drop.
pub struct S3Server {
    child: std::process::Child,
    pub root: tempfile::TempDir,
    pub endpoint: String,
}

pub const S3_KEY: &str = "wormflow-test-key";
pub const S3_SECRET: &str = "wormflow-test-secret";

impl S3Server {
    /// None (after saying so) when s3s-fs is not installed.
    pub fn start(bucket: &str) -> Option<S3Server> {
        let bin = std::env::var("WORMFLOW_S3S_FS").map(PathBuf::from).unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/wormflow/tools/bin/s3s-fs")
        });
        if !bin.is_file() {
            service_missing(
                "the S3-compatible server s3s-fs",
                &format!("{} does not exist", bin.display()),
            );
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        // The port is probed free and then handed to s3s-fs, so another process may take it
        // in between: a server that exits at once is retried on a new port.
        for _attempt in 0..3 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    S3_KEY,
                    "--secret-key",
                    S3_SECRET,
                ])
                .arg(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            // Generous: a loaded 2-core CI machine may take a while to start it.
            for _ in 0..400 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(S3Server {
                        child,
                        root,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs ({}) did not start listening on 127.0.0.1 in three tries", bin.display());
    }

    /// The `[remotes.NAME]` table for this server.
    pub fn remote_toml(&self, name: &str, bucket: &str) -> String {
        format!("[remotes.{name}]\nurl = \"s3://{bucket}/team\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\ntimeout_s = 5\n", self.endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` (relative path → bytes), following the links in results/.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.strip_prefix(base).unwrap().to_string_lossy().to_string(), bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `run --json -j 1` started in the background, its stderr dropped and its events parsed
/// as they come (a line that is not JSON reads as null).
pub struct JsonRun {
    pub child: std::process::Child,
    pub pid: i32,
    pub events: Box<dyn Iterator<Item = Value>>,
}

pub fn spawn_json_run(ws: &Workspace) -> JsonRun {
    let mut child = ws
        .cmd(&["run", "--json", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let events = std::io::BufRead::lines(stdout)
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap_or_default());
    JsonRun { child, pid, events: Box::new(events) }
}

/// `[pipeline]` and synthetic worms → preprocess → split → sample (stages synth, pre,
/// split, sample); `synth` and `sample` are those stages' params.
pub fn synthetic_front(name: &str, seed: u64, synth: &str, sample: &str) -> String {
    synthetic_front_split(name, seed, synth, "", sample)
}

/// `synthetic_front` with the split's params (e.g. parts and segments).
pub fn synthetic_front_split(
    name: &str,
    seed: u64,
    synth: &str,
    split: &str,
    sample: &str,
) -> String {
    format!(
        r#"[pipeline]
name = "{name}"
seed = {seed}
[stages.synth]
kind = "synthesize"
params = {{ {synth} }}
[stages.pre]
kind = "preprocess"
needs = ["synth"]
params = {{ smooth_alpha = 1.0, resample_dt = 0 }}
[stages.split]
kind = "split"
needs = ["pre"]
params = {{ {split} }}
[stages.sample]
kind = "sample"
needs = ["split"]
params = {{ {sample} }}
"#
    )
}

/// A small real pipeline (synthetic worms → … → train an LSTM for 2 epochs → evaluate)
/// that runs in seconds; `extra` is appended (remotes, [slurm]).
pub fn tiny_science_pipeline(extra: &str) -> String {
    let front = synthetic_front(
        "tiny",
        1,
        r#"model = "sines", n_worms = 6, n_steps = 120, n_observed = 8"#,
        "n_windows = 4, window = 20",
    );
    format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
params = {{ model = "lstm", hidden = 8, epochs = 2, batch_size = 8, threads = 1, device = "cpu" }}
[stages.evaluate]
kind = "evaluate"
needs = ["train", "pre", "sample", "split"]
params = {{ horizon = 3, context = 10, generate_worms = 1, device = "cpu" }}
{extra}"#
    )
}

/// Pids of the `wormflow-torch` helper processes whose parent is `parent`.
pub fn helpers_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces, so split at its last ')'.
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (comm == "wormflow-torch" && ppid == parent).then_some(pid)
        })
        .collect()
}

/// Whether a process runs (a zombie waiting to be reaped does not count).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
