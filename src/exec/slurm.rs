//! `--executor slurm`: each ready node becomes a Slurm job running `wormflow exec KEY`
//! against the same store (which must be on a path every compute node sees); the nodes of
//! one group (`StageKind::group_key`) become one job, `wormflow exec KEY1 KEY2 …`, named and
//! logged by its first key.
//!
//! The driver writes `<store>/slurm/KEY.json` (the node and the keys of its inputs'
//! results) and `KEY.sh` (the batch script, with the kind's resources), submits it with
//! `sbatch`, and polls `squeue`. A job that leaves the queue is done if its action record
//! is in the store, and failed otherwise (its output, `KEY.out`, is quoted) — a killed job
//! stores nothing, because the record is written last. On Ctrl-C the driver `scancel`s
//! its jobs. With `[slurm] requeue = true` a job is requeueable: one that goes back to the
//! queue (preempted, or requeued by its own script before its time limit) is waited for
//! again, and its train nodes resume from their checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::report::Reporter;
use super::{Job, Outcome};
use crate::config::Settings;
use crate::graph::Graph;
use crate::hash::Hash;
use crate::store::{atomic_write, Store};

/// What `wormflow exec KEY` needs besides the pipeline: which node, and which stored
/// results are its inputs.
#[derive(Serialize, Deserialize)]
pub struct JobSpec {
    pub node: String,
    /// Action keys of the node's inputs, in the order of the graph's edges.
    pub inputs: Vec<Hash>,
    pub force: bool,
}

/// One node of a submitted job.
struct Member {
    index: usize,
    node: String,
    key: Hash,
}

struct Submitted {
    /// The job's nodes (one, or a group's); the first key names its files.
    members: Vec<Member>,
    since: Instant,
    running: bool,
    /// How far the job's output has been read (for its progress events).
    read: u64,
    /// Times it went back to the queue after running (`[slurm] requeue`).
    requeues: u32,
}

pub struct Slurm {
    settings: Settings,
    pipeline: PathBuf,
    overrides: Vec<String>,
    exe: PathBuf,
    jobs: Mutex<BTreeMap<String, Submitted>>,
}

/// A file of the job submitted under `key`: `json` (its description), `sh` (its script) or
/// `out` (its output).
pub fn job_file(store: &Store, key: &Hash, ext: &str) -> PathBuf {
    store.root.join("slurm").join(format!("{}.{ext}", key.hex()))
}

impl Slurm {
    /// Check that Slurm's commands are here before anything is submitted.
    pub fn new(settings: Settings, pipeline: &Path, overrides: &[String]) -> Result<Slurm> {
        for tool in ["sbatch", "squeue", "scancel"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Err(crate::error::environment(anyhow::anyhow!("{tool} not found on PATH: --executor slurm needs Slurm's client commands (run on a login node of the cluster, or use the default local executor)")));
            }
        }
        let pipeline = std::fs::canonicalize(pipeline)
            .with_context(|| format!("cannot resolve {}", pipeline.display()))?;
        let exe = std::env::current_exe()
            .context("cannot find the wormflow executable to run in jobs")?;
        Ok(Slurm {
            settings,
            pipeline,
            overrides: overrides.to_vec(),
            exe,
            jobs: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn max_jobs(&self) -> usize {
        self.settings.slurm.max_jobs.max(1)
    }

    pub fn runs_locally(&self, kind: &str) -> bool {
        self.settings.slurm_resources(kind).local
    }

    fn script(&self, store: &Store, node: &str, kind: &str, keys: &[Hash]) -> String {
        let key = &keys[0];
        let r = self.settings.slurm_resources(kind);
        let mut s = String::from("#!/bin/sh\n");
        let name: String = node
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "=,._-[]".contains(c) { c } else { '_' })
            .collect();
        s += &format!(
            "#SBATCH --job-name=wf:{name}\n#SBATCH --output={}\n",
            job_file(store, key, "out").display()
        );
        if let Some(p) = &r.partition {
            s += &format!("#SBATCH --partition={p}\n");
        }
        if let Some(c) = r.cpus {
            s += &format!("#SBATCH --cpus-per-task={c}\n");
        }
        if let Some(g) = r.gpus.filter(|g| *g > 0) {
            s += &format!("#SBATCH --gres=gpu:{g}\n");
        }
        if let Some(m) = &r.mem {
            s += &format!("#SBATCH --mem={m}\n");
        }
        if let Some(t) = &r.time {
            s += &format!("#SBATCH --time={t}\n");
        }
        let mut cmd = vec![
            quote(&self.exe.to_string_lossy()),
            "-f".into(),
            quote(&self.pipeline.to_string_lossy()),
        ];
        for o in &self.overrides {
            cmd.push("--set".into());
            cmd.push(quote(o));
        }
        cmd.push("exec".into());
        cmd.extend(keys.iter().map(Hash::hex));
        if !self.settings.slurm.requeue {
            s += &format!("exec {}\n", cmd.join(" "));
            return s;
        }
        // Requeueable: output appended across attempts; near the time limit Slurm sends
        // USR1 to this script, which stops wormflow (SIGTERM: finished nodes are stored,
        // running ones keep their checkpoints) and puts the job back in the queue.
        s += &format!(
            "#SBATCH --requeue\n#SBATCH --open-mode=append\n#SBATCH --signal=B:USR1@{}\n",
            self.settings.slurm.requeue_before_s
        );
        s += "trap 'kill -TERM \"$pid\" 2>/dev/null; wait \"$pid\"; scontrol requeue \"$SLURM_JOB_ID\"; exit 0' USR1\n";
        s += &format!("{} &\npid=$!\nwait \"$pid\"\n", cmd.join(" "));
        s
    }

    /// Write the batch's files (a description per node, one script) and hand it to sbatch
    /// as one job.
    pub fn submit(
        &self,
        graph: &Graph,
        store: &Store,
        batch: Vec<Job>,
        reporter: &Reporter,
    ) -> Result<()> {
        let first = &graph.nodes[batch[0].index];
        let keys: Vec<Hash> = batch.iter().map(|job| job.parts.key).collect();
        for job in &batch {
            let spec_file = job_file(store, &job.parts.key, "json");
            let dir = spec_file.parent().expect("job files are in slurm/");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let spec = JobSpec {
                node: graph.nodes[job.index].id.clone(),
                inputs: job.inputs.iter().map(|(_, a)| a.key).collect(),
                force: job.force,
            };
            atomic_write(&spec_file, &serde_json::to_vec_pretty(&spec)?)?;
        }
        let name = match batch.len() {
            1 => first.id.clone(),
            n => format!("{} (+{} of its group)", first.id, n - 1),
        };
        let script = job_file(store, &keys[0], "sh");
        atomic_write(&script, self.script(store, &first.id, &first.kind, &keys).as_bytes())?;
        let out = Command::new("sbatch")
            .arg("--parsable")
            .args(&self.settings.slurm.sbatch_args)
            .arg(&script)
            .output()
            .context("cannot run sbatch")?;
        if !out.status.success() {
            bail!(
                "sbatch refused the job for {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if id.is_empty() {
            bail!("sbatch printed no job id for {name}");
        }
        let members: Vec<Member> = batch
            .iter()
            .map(|job| Member {
                index: job.index,
                node: graph.nodes[job.index].id.clone(),
                key: job.parts.key,
            })
            .collect();
        for m in &members {
            reporter.submitted(&m.node, &id);
        }
        self.jobs.lock().expect("jobs lock").insert(
            id,
            Submitted { members, since: Instant::now(), running: false, read: 0, requeues: 0 },
        );
        Ok(())
    }

    /// Cancel every job this driver submitted that is still queued or running.
    pub fn cancel_all(&self) {
        let ids: Vec<String> = self.jobs.lock().expect("jobs lock").keys().cloned().collect();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
    }

    /// Poll the queue until told to stop and no job is left; report each job's end.
    pub fn monitor(
        &self,
        store: &Store,
        reporter: &Reporter,
        done: &Sender<(usize, Result<Outcome>)>,
        stop: &AtomicBool,
    ) {
        let poll = Duration::from_secs_f64(self.settings.slurm.poll_s.clamp(0.1, 60.0));
        let mut last = Instant::now() - poll;
        let mut queue_error_shown = false;
        loop {
            if self.jobs.lock().expect("jobs lock").is_empty() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let wait = poll.saturating_sub(last.elapsed());
            std::thread::sleep(wait.min(Duration::from_millis(200)));
            if last.elapsed() < poll {
                continue;
            }
            last = Instant::now();
            let queue = match squeue() {
                Ok(q) => q,
                Err(e) => {
                    if !queue_error_shown {
                        reporter.warn(&format!("{e:#}; retrying"));
                        queue_error_shown = true;
                    }
                    continue;
                }
            };
            let timeout = Duration::from_secs(self.settings.slurm.start_timeout_s);
            let mut ended = Vec::new();
            {
                let mut jobs = self.jobs.lock().expect("jobs lock");
                for (id, job) in jobs.iter_mut() {
                    match queue.get(id) {
                        Some((state, _)) if job.running && REQUEUED.contains(&state.as_str()) => {
                            // Preempted, or it requeued itself before its time limit.
                            job.running = false;
                            job.since = Instant::now();
                            job.requeues += 1;
                            for m in &job.members {
                                reporter.progress(
                                    &m.node,
                                    &wormflow_api::Progress::notice(0.0, format!("slurm job {id} was requeued ({state}); it resumes from its checkpoints when it runs again")),
                                );
                            }
                        }
                        Some((state, _)) if state == "RUNNING" && !job.running => {
                            job.running = true;
                            for m in job.members.iter().filter(|_| job.requeues == 0) {
                                reporter.start(&m.node, &m.key);
                            }
                        }
                        Some((state, reason))
                            if state == "PENDING" && job.since.elapsed() > timeout =>
                        {
                            let _ = Command::new("scancel").arg(id).status();
                            ended.push((id.clone(), Some(format!(
                                "slurm job {id} did not start within {} s (still pending: {reason}); it was cancelled — check the partition and resources in [slurm], or raise slurm.start_timeout_s",
                                timeout.as_secs()
                            ))));
                        }
                        Some(_) => {}
                        None => ended.push((id.clone(), None)),
                    }
                    if job.running {
                        let out = job_file(store, &job.members[0].key, "out");
                        forward_progress(&out, job, reporter);
                    }
                }
            }
            for (id, why) in ended {
                let Some(job) = self.jobs.lock().expect("jobs lock").remove(&id) else { continue };
                let out = job_file(store, &job.members[0].key, "out");
                for m in &job.members {
                    // Each node of the job is done iff its record is in the store.
                    let outcome = match (&why, store.cached_action(&m.key)) {
                        (None, Some(action)) => {
                            Ok(Outcome::Ran(action, job.since.elapsed().as_secs_f64()))
                        }
                        (Some(why), _) => Err(anyhow!("{why}")),
                        (None, None) => Err(anyhow!(
                            "slurm job {id} ended ({}) without storing a result for {}{}",
                            job_state(&id),
                            m.node,
                            output_tail(&out)
                        )),
                    };
                    if done.send((m.index, outcome)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Pass on the progress events the job has written since the last poll (`wormflow exec`
/// prints its events as JSON lines into the job's output).
fn forward_progress(out: &Path, job: &mut Submitted, reporter: &Reporter) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(out) else { return };
    let mut text = String::new();
    if file.seek(SeekFrom::Start(job.read)).is_err() || file.read_to_string(&mut text).is_err() {
        return;
    }
    let Some(end) = text.rfind('\n') else { return };
    job.read += end as u64 + 1;
    // The last progress of each node of the job.
    let mut last: BTreeMap<String, wormflow_api::Progress> = BTreeMap::new();
    for event in
        text[..end].lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if event["event"] != "progress" {
            continue;
        }
        let node = event["node"].as_str().unwrap_or_default().to_string();
        if let Ok(update) = serde_json::from_value::<wormflow_api::Progress>(event) {
            last.insert(node, update);
        }
    }
    for m in &job.members {
        if let Some(update) = last.get(&m.node) {
            reporter.progress(&m.node, update);
        }
    }
}

/// Queue states of a job that ran and is waiting to run again.
const REQUEUED: [&str; 4] = ["PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"];

/// Job id → (state, reason) of this user's jobs.
fn squeue() -> Result<BTreeMap<String, (String, String)>> {
    let out = Command::new("squeue")
        .args(["--me", "-h", "-o", "%i|%T|%r"])
        .output()
        .context("cannot run squeue")?;
    if !out.status.success() {
        bail!("squeue failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            Some((
                f.next()?.trim().to_string(),
                (f.next()?.trim().to_string(), f.next().unwrap_or("").trim().to_string()),
            ))
        })
        .collect())
}

/// "FAILED, exit 1:0" from scontrol, while Slurm still remembers the job.
fn job_state(id: &str) -> String {
    let Ok(out) = Command::new("scontrol").args(["show", "job", id, "-o"]).output() else {
        return "state unknown".into();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let field =
        |name: &str| text.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
    match (field("JobState="), field("ExitCode=")) {
        (Some(s), Some(e)) => format!("{s}, exit {e}"),
        (Some(s), None) => s,
        _ => "state unknown: Slurm no longer lists it".into(),
    }
}

fn output_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n          ");
            format!("; last lines of {}:\n          {tail}", path.display())
        }
        Err(_) => format!("; it wrote no output at {} (did the job start?)", path.display()),
    }
}

/// Quote for /bin/sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
