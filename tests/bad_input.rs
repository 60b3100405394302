//! Bad input: each case exits non-zero with a message naming the place and what to do,
//! and leaves the store untouched.

mod common;

use common::{Events, Workspace};

const GOOD: &str = r#"[pipeline]
name = "bad-input"

[stages.train]
kind = "command"
matrix = { lr = [0.1, 0.01] }
params = { cmd = "echo ${matrix.lr} > $WORMFLOW_OUT/lr.txt" }

[stages.report]
kind = "command"
needs = ["train"]
params = { cmd = "cat $WORMFLOW_INPUT_TRAIN/*/lr.txt > $WORMFLOW_OUT/all.txt" }
"#;

/// Run the good pipeline, swap in `bad`, and check `wormflow run` fails with exit code 2
/// and a message containing every one of `expect`, without touching the store.
fn rejected(bad: &str, expect: &[&str]) -> String {
    let ws = Workspace::new(GOOD);
    ws.run_events(&[]);
    let before = ws.store_snapshot();
    ws.write("pipeline.toml", bad);
    let stderr = ws.bad(&["run"]);
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
    assert_eq!(before, ws.store_snapshot(), "the store changed");
    // A fresh workspace gets no store at all.
    let fresh = Workspace::new(bad);
    fresh.bad(&["run"]);
    assert!(!fresh.file("cache").exists(), "a store was created for a bad pipeline");
    stderr
}

#[test]
fn malformed_toml_is_located() {
    let bad = GOOD.replace("[stages.report]", "[stages.report");
    rejected(&bad, &["pipeline.toml:9:15", "malformed TOML", "unclosed table"]);
}

#[test]
fn unknown_key_is_located_and_named() {
    let bad = GOOD.replace("needs = [\"train\"]", "neds = [\"train\"]");
    rejected(&bad, &["pipeline.toml:11:1", "unknown field `neds`", "expected one of"]);
    let bad = GOOD.replace("name = \"bad-input\"", "name = \"bad-input\"\nstorage = \"x\"");
    rejected(&bad, &["pipeline.toml:3:1", "unknown field `storage`"]);
}

#[test]
fn unknown_kind_suggests_the_closest() {
    let bad = GOOD.replacen("kind = \"command\"", "kind = \"comand\"", 1);
    rejected(&bad, &["pipeline.toml:5:8", "unknown kind \"comand\"", "did you mean \"command\""]);
}

#[test]
fn needs_naming_a_missing_stage_suggests_the_closest() {
    let bad = GOOD.replace("needs = [\"train\"]", "needs = [\"trian\"]");
    rejected(
        &bad,
        &["pipeline.toml:11:10", "needs \"trian\", which is not a stage", "did you mean \"train\""],
    );
}

#[test]
fn a_cycle_is_printed() {
    let bad = format!(
        "{}\n[stages.a]\nkind = \"command\"\nneeds = [\"b\"]\nparams = {{ cmd = \"true\" }}\n\n[stages.b]\nkind = \"command\"\nneeds = [\"c\"]\nparams = {{ cmd = \"true\" }}\n\n[stages.c]\nkind = \"command\"\nneeds = [\"a\"]\nparams = {{ cmd = \"true\" }}\n",
        GOOD
    );
    rejected(&bad, &["a → b → c → a", "cycle"]);
    let self_loop = GOOD.replace("needs = [\"train\"]", "needs = [\"report\"]");
    rejected(&self_loop, &["needs itself", "report → report"]);
}

#[test]
fn matrix_placeholder_without_axis_is_located() {
    let bad = GOOD.replace("echo ${matrix.lr}", "echo ${matrix.rate}");
    rejected(
        &bad,
        &["pipeline.toml:7:", "stages.train.params.cmd", "no axis \"rate\"", "axes: lr"],
    );
    let bad = GOOD.replace("cat $WORMFLOW_INPUT_TRAIN", "echo ${matrix.lr} $WORMFLOW_INPUT_TRAIN");
    rejected(&bad, &["stages.report.params.cmd", "this stage has no matrix"]);
}

#[test]
fn empty_matrix_is_rejected() {
    rejected(
        &GOOD.replace("matrix = { lr = [0.1, 0.01] }", "matrix = { lr = [] }"),
        &["pipeline.toml:6:", "matrix.lr is an empty list"],
    );
    rejected(
        &GOOD.replace("matrix = { lr = [0.1, 0.01] }", "matrix = {}"),
        &["pipeline.toml:6:", "stages.train.matrix is empty"],
    );
}

#[test]
fn bad_set_override_is_explained() {
    let ws = Workspace::new(GOOD);
    let stderr = ws.bad(&["run", "--set", "stages.train.params"]);
    assert!(stderr.contains("expected PATH=VALUE"), "{stderr}");
}

/// A node that fails at run time stores nothing; the error says how it failed.
fn failing_node(cmd: &str, expect: &[&str]) {
    let ws = Workspace::new(&format!(
        "[pipeline]\nname = \"f\"\n[stages.ok]\nkind = \"command\"\nparams = {{ cmd = \"echo ok > $WORMFLOW_OUT/ok\" }}\n[stages.bad]\nkind = \"command\"\nneeds = [\"ok\"]\nparams = {{ cmd = \"{cmd}\" }}\n"
    ));
    ws.run_events(&["ok"]);
    let before = ws.store_snapshot();
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&common::text(&out.stdout));
    assert_eq!(ev.nodes("failed"), ["bad"]);
    let err = ev.0.iter().find(|e| e["event"] == "failed").unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in {err}");
    }
    assert_eq!(before, ws.store_snapshot(), "a failed node stored something");
    assert_eq!(common::count_files(&ws.file("cache/tmp")), 0, "work files left behind");
    // The human-readable form names the node too.
    let out = ws.wf(&["run"]);
    assert!(common::text(&out.stderr).contains("FAILED  bad"), "{}", common::text(&out.stderr));
}

#[test]
fn a_failing_command_is_reported_with_its_stderr() {
    failing_node(
        "echo boom >&2; exit 3",
        &["bad: command", "exited with status 3", "boom", "nothing was stored"],
    );
}

#[test]
fn a_killed_command_is_reported() {
    failing_node("echo partial > $WORMFLOW_OUT/x; kill -9 $$", &["killed by signal 9"]);
}

#[test]
fn an_empty_output_dir_is_an_error() {
    failing_node("true", &["wrote no output", "allow_empty"]);
}

#[test]
fn a_missing_required_output_is_an_error() {
    let ws = Workspace::new("[pipeline]\nname = \"f\"\n[stages.s]\nkind = \"command\"\nparams = { cmd = \"echo > $WORMFLOW_OUT/a\", outputs = [\"a\", \"model.json\"] }\n");
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::text(&out.stdout).contains("did not write \\\"model.json\\\""),
        "{}",
        common::text(&out.stdout)
    );
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn an_unwritable_store_is_reported() {
    let ws = Workspace::new(
        &GOOD.replace("name = \"bad-input\"", "name = \"bad-input\"\nstore = \"blocker/cache\""),
    );
    ws.write("blocker", "a file where the store's parent directory should be");
    // The machine's side, not the pipeline's: exit 3 (environment), not 2.
    let out = ws.wf(&["run"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains("blocker/cache"), "{stderr}");
    assert!(stderr.contains("set `store` in [pipeline] to a writable directory"), "{stderr}");
}

#[test]
fn a_corrupted_object_is_found_by_verify_and_recomputed_by_run() {
    let ws = Workspace::new(GOOD);
    ws.run_events(&[]);
    ws.ok(&["verify"]);
    // Flip one byte of train[lr=0.1]'s output object.
    let target = ws.object_of("results/train/lr=0.1/lr.txt");
    flip_first_byte(&target);
    let out = ws.wf(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = common::text(&out.stdout);
    assert!(stdout.contains("corrupt object"), "{stdout}");
    assert!(stdout.contains("train[lr=0.1]: output lr.txt is corrupt"), "{stdout}");
    // status notices without reading data, and run recomputes exactly that node.
    assert!(ws.ok(&["status"]).contains("stale   train[lr=0.1]"));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["train[lr=0.1]"]);
    assert_eq!(ev.cached(), ["report", "train[lr=0.01]"]);
    ws.ok(&["verify"]);
    assert_eq!(ws.read("results/train/lr=0.1/lr.txt"), "0.1\n");
}

#[test]
fn verify_repair_removes_damage_so_run_rebuilds_it() {
    let ws = Workspace::new(GOOD);
    ws.run_events(&[]);
    let target = ws.object_of("results/report/all.txt");
    flip_first_byte(&target);
    let out = ws.ok(&["verify", "--repair"]);
    assert!(out.contains("removed 1 corrupt objects and 1 records"), "{out}");
    ws.ok(&["verify"]);
    assert_eq!(ws.run_events(&[]).ran(), ["report"]);
}

fn flip_first_byte(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}
