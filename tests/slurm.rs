//! `--executor slurm` against a real single-host Slurm (slurm-wlm + munge), started by
//! tests/services/slurm-up.sh. Where Slurm cannot be installed, the tests say so loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{text, tiny_science_pipeline, Events, Workspace};

/// Start Slurm if needed (once per test binary; the script also locks against other
/// processes); false (after saying so) when it is not available.
fn slurm_up() -> bool {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/slurm-up.sh");
        let out = Command::new("bash").arg(script).output().expect("run slurm-up.sh");
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out.stderr).trim().to_string())
        }
    });
    match started {
        Ok(()) => true,
        Err(why) => common::service_missing("a single-host Slurm", why),
    }
}

/// Read `run --json` events up to and including the first `event`; with the id of the
/// Slurm job the run submitted by then.
fn events_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    event: &str,
) -> (Vec<serde_json::Value>, String) {
    let mut events = Vec::new();
    let mut job = String::new();
    for line in lines {
        let e: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["event"] == "submitted" {
            job = e["job"].as_str().unwrap().to_string();
        }
        let reached = e["event"] == event;
        events.push(e);
        if reached {
            break;
        }
    }
    assert!(!job.is_empty(), "no job submitted before {event:?}: {events:?}");
    (events, job)
}

const SLURM: &str = "[slurm]\npoll_s = 0.3\ncpus = 1\nmem = \"500M\"\ntime = \"00:10:00\"\n";

#[test]
fn a_pipeline_runs_through_slurm() {
    if !slurm_up() {
        return;
    }
    // Commands and a tiny train/evaluate as jobs; synthesize runs in the driver (local = true).
    let extra = format!(
        "[stages.count]\nkind = \"command\"\nneeds = [\"evaluate\"]\nparams = {{ cmd = \"ls $WORMFLOW_INPUT_EVALUATE > $WORMFLOW_OUT/files.txt\" }}\n{SLURM}[slurm.kinds.synthesize]\nlocal = true\n[slurm.kinds.train]\ncpus = 2\n"
    );
    let ws = Workspace::new(&tiny_science_pipeline(&extra));
    let ev = ws.run_events(&["--executor", "slurm"]);
    let submitted = ev.nodes("submitted");
    assert_eq!(submitted, ["count", "evaluate", "pre", "sample", "split", "train"], "{:?}", ev.0);
    assert_eq!(ev.ran().len(), 7, "{:?}", ev.0);
    assert!(ws.read("results/count/files.txt").contains("eval.parquet"));
    // Each job ran `wormflow exec KEY` with its kind's resources.
    let train_key = ev.0.iter().find(|e| e["event"] == "done" && e["node"] == "train").unwrap()
        ["key"]
        .as_str()
        .unwrap()
        .to_string();
    let script = ws.read(&format!("cache/slurm/{train_key}.sh"));
    assert!(
        script.contains("--cpus-per-task=2") && script.contains(&format!("exec {train_key}")),
        "{script}"
    );
    // Same result as a local run, and nothing left to do.
    assert!(ws.run_events(&["--executor", "slurm"]).ran().is_empty());
    let local = Workspace::new(&tiny_science_pipeline(&extra));
    local.run_events(&[]);
    for file in ["weights.safetensors", "model.parquet"] {
        let hash = |w: &Workspace| {
            blake3::hash(&std::fs::read(w.file(&format!("results/train/{file}"))).unwrap())
                .to_hex()
                .to_string()
        };
        assert_eq!(hash(&local), hash(&ws), "{file} differs between a Slurm job and a local run");
    }
}

#[test]
fn a_cancelled_job_fails_its_node_and_a_rerun_completes() {
    if !slurm_up() {
        return;
    }
    let pipeline = format!(
        "[pipeline]\nname = \"cancel\"\n[stages.slow]\nkind = \"command\"\nparams = {{ cmd = \"sleep $WF_TEST_SLEEP; echo ok > $WORMFLOW_OUT/ok.txt\" }}\n{SLURM}"
    );
    let ws = Workspace::new(&pipeline);
    let mut run = ws
        .cmd(&["run", "--json", "--executor", "slurm"])
        .env("WF_TEST_SLEEP", "120")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    // Wait for the job to run, then kill it the way an admin would.
    let (mut events, job) = events_until(&mut lines, "start");
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    for line in lines {
        events.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let failed =
        events.iter().find(|e| e["event"] == "failed").unwrap_or_else(|| panic!("{events:?}"));
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("slurm job {job} ended"))
            && error.contains("without storing a result"),
        "{error}"
    );
    assert_eq!(ws.action_count(), 0, "a killed job stored something");
    // gc keeps the failed job's script, description and output: they are what one reads next.
    let job_files = || common::count_files(&ws.file("cache/slurm"));
    assert_eq!(job_files(), 3);
    let gc = ws.ok(&["gc"]);
    assert!(!gc.contains("Slurm job files"), "{gc}");
    assert_eq!(job_files(), 3);
    // The rerun (now quick) completes.
    let out = ws
        .cmd(&["run", "--json", "--executor", "slurm"])
        .env("WF_TEST_SLEEP", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(Events::parse(&text(&out.stdout)).ran(), ["slow"]);
    assert_eq!(ws.read("results/slow/ok.txt"), "ok\n");
    // Once the node's command changes, the old key's job files are history and gc removes them.
    ws.write("pipeline.toml", &pipeline.replace("echo ok", "echo fine"));
    let gc = ws.ok(&["gc"]);
    assert!(gc.contains("removed 3 Slurm job files"), "{gc}");
    assert_eq!(job_files(), 0);
}

#[test]
fn a_job_that_never_starts_is_reported() {
    if !slurm_up() {
        return;
    }
    // --begin an hour from now keeps it pending.
    let pipeline = format!(
        "[pipeline]\nname = \"pending\"\n[stages.wait]\nkind = \"command\"\nparams = {{ cmd = \"echo hi > $WORMFLOW_OUT/x\" }}\n{SLURM}start_timeout_s = 2\nsbatch_args = [\"--begin=now+3600\"]\n"
    );
    let ws = Workspace::new(&pipeline);
    let t0 = Instant::now();
    let out = ws.wf(&["run", "--json", "--executor", "slurm"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&text(&out.stdout));
    let failed = ev.0.iter().find(|e| e["event"] == "failed").unwrap();
    assert!(failed["error"].as_str().unwrap().contains("did not start within 2 s"), "{failed}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn without_sbatch_the_slurm_executor_says_so() {
    let ws = Workspace::new("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"echo > $WORMFLOW_OUT/x\" }\n");
    let out = ws.cmd(&["run", "--executor", "slurm"]).env("PATH", ws.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("sbatch not found on PATH"), "{}", text(&out.stderr));
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn ctrl_c_cancels_the_drivers_jobs() {
    if !slurm_up() {
        return;
    }
    let pipeline = format!(
        "[pipeline]\nname = \"interrupt\"\n[stages.slow]\nkind = \"command\"\nparams = {{ cmd = \"sleep 120; echo late > $WORMFLOW_OUT/x\" }}\n{SLURM}"
    );
    let ws = Workspace::new(&pipeline);
    let mut run =
        ws.cmd(&["run", "--json", "--executor", "slurm"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let (_, job) = events_until(&mut lines, "submitted");
    assert!(Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap().success());
    let rest: Vec<serde_json::Value> =
        lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert_eq!(run.wait().unwrap().code(), Some(130), "interrupted by SIGINT: 128 + 2");
    assert!(rest.iter().any(|e| e["event"] == "failed" && e["node"] == "slow"), "{rest:?}");
    let queue = Command::new("squeue").args(["-h", "-j", &job, "-o", "%i"]).output().unwrap();
    assert!(text(&queue.stdout).trim().is_empty(), "job {job} still queued after Ctrl-C");
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn a_group_of_train_nodes_is_one_slurm_job() {
    if !slurm_up() {
        return;
    }
    let extra = format!("{SLURM}[slurm.kinds.synthesize]\nlocal = true\n");
    let p = tiny_science_pipeline(&extra).replace(
        "params = { model = \"lstm\", hidden = 8,",
        "matrix = { seed = [1, 2, 3] }\nparams = { model = \"ctrnn\", seed = \"${matrix.seed}\", hidden = 8,",
    );
    assert!(p.contains("matrix = { seed"), "{p}");
    let p = p.replace(
        "needs = [\"train\", \"pre\", \"sample\", \"split\"]",
        "needs = [\"train\", \"pre\", \"sample\", \"split\"]\nmatrix_from = \"train\"",
    );
    let ws = Workspace::new(&p);
    let ev = ws.run_events(&["--executor", "slurm", "train"]);
    let jobs: std::collections::BTreeSet<String> = ev
        .0
        .iter()
        .filter(|e| e["event"] == "submitted" && e["node"].as_str().unwrap().starts_with("train["))
        .map(|e| e["job"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jobs.len(), 1, "three train nodes, one job: {:?}", ev.0);
    assert_eq!(ev.ran().iter().filter(|n| n.starts_with("train[")).count(), 3, "{:?}", ev.0);
    // One script runs the three keys; each node's record says it trained in a stack of 3.
    let keys: Vec<String> =
        ev.0.iter()
            .filter(|e| e["event"] == "done" && e["node"].as_str().unwrap().starts_with("train["))
            .map(|e| e["key"].as_str().unwrap().to_string())
            .collect();
    let scripts: Vec<String> = keys
        .iter()
        .filter_map(|k| std::fs::read_to_string(ws.file(&format!("cache/slurm/{k}.sh"))).ok())
        .collect();
    assert_eq!(scripts.len(), 1, "one script for the group");
    assert!(keys.iter().all(|k| scripts[0].contains(k.as_str())), "{}", scripts[0]);
    let doc: serde_json::Value =
        serde_json::from_str(&ws.ok(&["show", "train[seed=2]", "--json"])).unwrap();
    assert_eq!(doc["provenance"]["group"]["size"], 3, "{}", doc["provenance"]);
    // The same weights as a local run.
    let local = Workspace::new(&p);
    local.ok(&["run", "train"]);
    for seed in 1..=3 {
        let file = format!("results/train/seed={seed}/weights.safetensors");
        assert!(
            std::fs::read(ws.file(&file)).unwrap() == std::fs::read(local.file(&file)).unwrap(),
            "{file}"
        );
    }
}

/// `[slurm] requeue = true`: a job warned of its time limit (Slurm's USR1 to the batch
/// script; here sent with `scancel --signal=USR1 --batch`, as Slurm does before the limit)
/// stops wormflow and requeues itself; when it runs again its train node resumes from its
/// checkpoint, and the driver waits through it and stores the same bytes as a local run.
#[test]
fn a_requeued_job_resumes_its_node_from_the_checkpoint() {
    if !slurm_up() {
        return;
    }
    let front = common::synthetic_front(
        "requeue",
        5,
        r#"model = "sines", n_worms = 3, n_steps = 300, n_observed = 12"#,
        "n_windows = 24, window = 40",
    );
    let p = format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
params = {{ model = "transformer", hidden = 16, epochs = 30, early_stopping = 1000, batch_size = 2, threads = 1, device = "cpu", checkpoint_every = 1 }}
{SLURM}requeue = true
[slurm.kinds.synthesize]
local = true
"#
    );
    let ws = Workspace::new(&p);
    ws.run_events(&["--executor", "slurm", "sample"]);
    let mut run =
        ws.cmd(&["run", "--json", "--executor", "slurm"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let mut job = String::new();
    for line in lines.by_ref() {
        let e: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["event"] == "submitted" {
            job = e["job"].as_str().unwrap().to_string();
        }
        if e["event"] == "progress" && e["epoch"].as_u64().is_some_and(|n| n >= 4) {
            break;
        }
        assert_ne!(e["event"], "done", "train finished before the warning: {e}");
    }
    let script = common::files_under(&ws.file("cache/slurm"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "sh"))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|s| s.contains("--job-name=wf:train\n"))
        .expect("train's batch script");
    assert!(script.contains("--requeue") && script.contains("--signal=B:USR1@300"), "{script}");
    let warned = Command::new("scancel").args(["--signal=USR1", "--batch", &job]).status();
    assert!(warned.unwrap().success());
    // Slurm holds a requeued job for two minutes; release it at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &job, "-o", "%T %r"]).output().unwrap();
        let state = text(&q.stdout);
        if state.starts_with("PENDING") {
            // Slurm revokes the first run's credential when it requeues the job and refuses
            // any launch whose credential is not newer, to the second ("Job credential
            // revoked": the job fails). Slurm's own two-minute hold keeps clear of that; a
            // release in the same second would not.
            std::thread::sleep(Duration::from_secs(2));
            let now = ["update", &format!("JobId={job}"), "StartTime=now"];
            assert!(Command::new("scontrol").args(now).status().unwrap().success());
            break;
        }
        assert!(Instant::now() < deadline, "job {job} was not requeued: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rest: Vec<serde_json::Value> =
        lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert_eq!(run.wait().unwrap().code(), Some(0), "{rest:?}");
    let said: Vec<&str> = rest
        .iter()
        .filter(|e| e["event"] == "progress" && e["notice"] == true)
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(said.iter().any(|m| m.contains("was requeued")), "{said:?}");
    let card: wormflow_stages::summaries::ModelCard =
        wormflow_stages::summaries::read(&ws.file("results/train/model.parquet")).unwrap();
    assert!(card.resumed_from_epoch >= 3, "resumed from epoch {}", card.resumed_from_epoch);
    let local = Workspace::new(&p);
    local.ok(&["run"]);
    let file = "results/train/weights.safetensors";
    assert!(
        std::fs::read(ws.file(file)).unwrap() == std::fs::read(local.file(file)).unwrap(),
        "the requeued, resumed node differs from one trained without a stop"
    );
}
