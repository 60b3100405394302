//! Hostile input on the newer surfaces, as an adversarial user would try it: special files
//! in source folders, signals during long built-in stages, SQL in `compare --where`, odd
//! matrix values and names, a full disk, litter from a kill. Each test asserts the exit
//! code, the message, that nothing wrong was stored and that no process was left.
//! (DANDI listings: tests/download.rs; NWB and pool files: tests/community.rs.)

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{text, Workspace};

/// Wait for `child` at most `limit`; a child still running then is killed and the test
/// fails (a hang is the bug these tests look for).
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    ws.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// Processes running in `dir` (wormflow and whatever it starts work in the workspace).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

const FOLDER_SOURCE: &str = "[pipeline]\nname = \"f\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"mydata/\" }] }\n";

#[test]
fn a_fifo_in_a_source_folder_is_refused_without_opening_it() {
    let ws = Workspace::new(FOLDER_SOURCE);
    ws.write("mydata/a.txt", "a");
    mkfifo(&ws.file("mydata/pipe"));
    for args in [&["status"][..], &["run"][..]] {
        let out = wait_bounded(spawn(&ws, args), Duration::from_secs(30), &format!("{args:?}"));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        // `status` reports the node's error (and exits 0, as a report); `run` fails.
        assert_eq!(out.status.success(), args == ["status"], "{args:?}: {all}");
        assert!(all.contains("pipe is a FIFO") && all.contains("not a regular file"), "{all}");
    }
    assert_eq!(ws.action_count(), 0);
    assert!(!ws.file("results/get").exists());
}

#[test]
fn a_file_name_that_is_not_utf8_is_refused_by_name() {
    let ws = Workspace::new(FOLDER_SOURCE);
    ws.write("mydata/a.txt", "a");
    std::fs::write(ws.file("mydata").join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")), "x")
        .unwrap();
    let out = ws.wf(&["run"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success());
    assert!(
        all.contains("caf") && all.contains("not valid UTF-8") && all.contains("rename"),
        "{all}"
    );
    assert!(!all.contains("does not exist") && !all.contains("no such file"), "{all}");
    assert_eq!(ws.action_count(), 0);
}

/// A connectome simulation that takes minutes: SIGTERM (what Slurm sends 30 s before
/// SIGKILL) ends the run within 3 s with 143, storing nothing of the interrupted node.
#[test]
fn sigterm_during_a_long_synthesize_exits_within_seconds_and_stores_nothing() {
    let ws = Workspace::new(&format!(
        "[pipeline]\nname = \"long\"\n[stages.gen]\nkind = \"synthesize\"\nparams = {{ model = \"connectome\", n_worms = 400, n_steps = 3000, connectome = \"{}\" }}\n",
        common::repo("data/connectome/white_1986_whole.json").display()
    ));
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let child = spawn(&ws, &["run", "--json"]);
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(1500)); // inside the simulation by now
        assert!(
            processes_in(ws.path()).iter().any(|p| p.starts_with(&format!("{pid}:"))),
            "the run is seen while it runs"
        );
        let sent = Instant::now();
        unsafe { libc::kill(pid, signal) };
        let out = wait_bounded(child, Duration::from_secs(25), "interrupted run");
        let took = sent.elapsed();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(took < Duration::from_secs(3), "exited {took:?} after the signal");
        assert!(text(&out.stderr).contains("interrupted"), "{}", text(&out.stderr));
        assert_eq!(ws.action_count(), 0, "nothing of the interrupted node is stored");
        assert!(!ws.file("results/gen").exists());
        let left = processes_in(ws.path());
        assert!(left.is_empty(), "processes left: {left:?}");
    }
}

/// Worms are simulated in parallel; each draws from its own stream, so the bytes are the
/// same whatever the number of threads.
#[test]
fn synthesize_gives_the_same_bytes_on_any_number_of_threads() {
    let pipeline = format!(
        "[pipeline]\nname = \"t\"\n[stages.gen]\nkind = \"synthesize\"\nparams = {{ model = \"connectome\", n_worms = 6, n_steps = 100, noise = 0.1, connectome = \"{}\" }}\n",
        common::repo("data/connectome/white_1986_whole.json").display()
    );
    let bytes: Vec<Vec<u8>> = ["1", "2", "5"]
        .iter()
        .map(|threads| {
            let ws = Workspace::new(&pipeline);
            let out = ws.cmd(&["run"]).env("RAYON_NUM_THREADS", threads).output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            std::fs::read(ws.file("results/gen/recordings.parquet")).unwrap()
        })
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] == w[1]));
}

const SWEEP: &str = "[pipeline]\nname = \"s\"\n[stages.gen]\nkind = \"synthesize\"\nmatrix = { n = [2, 3] }\nparams = { model = \"sines\", n_worms = \"${matrix.n}\", n_steps = 20, n_observed = 3 }\n";

/// `--where` is a filter over the sweep table: no table functions, no subqueries, no file
/// access (the files here are FIFOs: opening one would hang), errors in one line, exit 2.
#[test]
fn compare_where_reads_no_files_and_never_panics() {
    let ws = Workspace::new(SWEEP);
    ws.ok(&["run"]);
    mkfifo(&ws.file("secret.csv"));
    mkfifo(&ws.file("secret.parquet"));
    for filter in [
        "node IN (SELECT nosuch FROM read_csv('secret.csv'))",
        "node IN (SELECT x FROM read_parquet('secret.parquet'))",
        "EXISTS (SELECT 1 FROM read_csv('secret.csv'))",
        "read_csv('secret.csv') IS NULL",
    ] {
        let out = wait_bounded(
            spawn(&ws, &["compare", "gen", "--where", filter]),
            Duration::from_secs(30),
            filter,
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{filter}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("--where") && !err.contains("panicked"), "{err}");
    }
    let err = ws.bad(&["compare", "gen", "--where", "nosuch > 1"]);
    assert!(err.contains("no column \"nosuch\"") && err.contains("its columns: node"), "{err}");
    // A good filter still works.
    let out = ws.ok(&["compare", "gen", "--where", "n = 3", "--csv"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn compare_on_a_stage_with_nothing_built_says_so_even_when_sorting() {
    let ws = Workspace::new(SWEEP);
    let out = ws.wf(&["compare", "gen", "--sort", "n"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no results yet") && err.contains("wormflow run gen"), "{err}");
    assert!(!err.contains("unable to find column"), "{err}");
}

/// Hive folder values round-trip: what polars reads from `results/<stage>/<axis>=<value>`
/// is the value written — `=`, brackets, tabs and newlines included — and a 60-character
/// axis with a 250-character value still fits in one folder name.
#[test]
fn hive_values_read_back_as_written_and_long_names_fit() {
    let Some(python) = common::python() else {
        panic!("the test venv's python (make torch) is needed to read results/ with polars");
    };
    let axis = "a".repeat(60);
    let long = "v".repeat(250);
    let ws = Workspace::new(&format!(
        "[pipeline]\nname = \"h\"\n[stages.gen]\nkind = \"synthesize\"\nmatrix = {{ ds = [\"k=v\", \"[x]\", \"tab\\tand\\nnewline\", \"plain\"] }}\nparams = {{ model = \"sines\", dataset = \"${{matrix.ds}}\", n_worms = 1, n_steps = 20, n_observed = 3 }}\n[stages.wide]\nkind = \"synthesize\"\nmatrix = {{ {axis} = [\"{long}\"] }}\nparams = {{ model = \"sines\", n_worms = 1, n_steps = 20, n_observed = 3 }}\n"
    ));
    let out = ws.wf(&["run"]);
    let err = text(&out.stderr);
    assert!(out.status.success() && !err.contains("warning"), "{err}");
    let script = "import polars as pl, sys, json\ndf = pl.scan_parquet(sys.argv[1] + '/results/gen/**/recordings.parquet', hive_partitioning=True).select('ds', 'dataset').unique().collect()\nprint(json.dumps(sorted(map(list, df.rows()))))";
    let read = std::process::Command::new(&python)
        .args(["-c", script, &ws.path().display().to_string()])
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read.stderr));
    let rows: Vec<Vec<String>> = serde_json::from_slice(&read.stdout).unwrap();
    for row in &rows {
        assert_eq!(row[0], row[1], "the folder's value is the value the node used");
    }
    let values: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(values, ["[x]", "k=v", "plain", "tab\tand\nnewline"]);
    // The long one: written, fresh, and no warning on the next run either.
    let wide = std::fs::read_dir(ws.file("results/wide")).unwrap().flatten().next().unwrap();
    assert!(wide.file_name().len() <= 255);
    assert!(wide.path().join("recordings.parquet").is_file());
    let again = ws.wf(&["run"]);
    assert!(!text(&again.stderr).contains("warning"), "{}", text(&again.stderr));
    let status = ws.ok(&["status"]);
    assert!(!status.contains("stale") && !status.contains("results/"), "{status}");
}

/// A command that fills the store's disk: its own words ("No space left on device")
/// reach the message although its stderr could not be written to that disk, and the run
/// exits 3 (the machine, not the input).
#[test]
fn a_full_disk_names_its_cause_and_exits_3() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        // Mounting needs root (CI and the developers' machines are root).
        eprintln!("SKIPPED: cannot mount a 2 MB tmpfs here: {mounted:?}");
        assert!(std::env::var_os("WORMFLOW_REQUIRE_SERVICES").is_none(), "mount failed in CI");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let ws = Workspace::new(&format!(
        "[pipeline]\nname = \"full\"\nstore = \"{}/store\"\n[stages.big]\nkind = \"command\"\nparams = {{ cmd = \"head -c 3000000 /dev/zero > $WORMFLOW_OUT/big\" }}\n",
        mnt.path().display()
    ));
    let out = ws.wf(&["run"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("No space left on device"), "{all}");
    assert!(all.contains("file system") && all.contains("full"), "{all}");
    assert!(!all.contains("(empty)"), "{all}");
    assert_eq!(common::count_files(&mnt.path().join("store/actions")), 0);
}

/// A kill -9 in the middle of swapping a results/ folder leaves `.new-*`/`.old-*` folders
/// of a dead process: the next run removes them (a Hive glob would read them); those of a
/// live process (another run swapping now) stay.
#[test]
fn litter_of_a_killed_swap_is_removed_by_the_next_run() {
    let ws = Workspace::new(SWEEP);
    ws.ok(&["run"]);
    // A process that made its folders and died, as a kill -9 leaves them.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("mkdir -p results/gen/.new-$$-0-1/n=2 results/gen/n=3/.old-$$-0-2 && echo x > results/gen/.new-$$-0-1/n=2/recordings.parquet")
        .current_dir(ws.path())
        .status()
        .unwrap();
    assert!(status.success());
    let live = ws.file(&format!("results/gen/.new-{}-0-3", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    ws.ok(&["run"]);
    let left: Vec<String> = std::fs::read_dir(ws.file("results/gen"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(left.iter().all(|n| !n.starts_with(".new-") || live.ends_with(n)), "{left:?}");
    assert!(live.exists(), "a live process's folder stays");
    assert!(!std::fs::read_dir(ws.file("results/gen/n=3"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".old-")));
}
