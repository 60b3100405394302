//! The engine, driven through the real binary on real pipelines of `command` nodes.

mod common;

use common::{Events, Workspace};
use serde_json::Value;

/// src[n] → double[n] → total (gathers double), plus an independent `side`: 8 nodes.
const PIPELINE: &str = r#"
[pipeline]
name = "engine-test"
seed = 7

[stages.src]
kind = "command"
matrix = { n = [1, 2, 3] }
params = { cmd = "echo ${matrix.n} > $WORMFLOW_OUT/n.txt", comment = "a" }

[stages.double]
kind = "command"
needs = ["src"]
matrix = { n = [1, 2, 3] }
params = { cmd = "python3 -c 'import json,os; p=json.loads(os.environ[\"WORMFLOW_PARAMS\"]); print(int(open(os.environ[\"WORMFLOW_INPUT_SRC\"]+\"/n.txt\").read())*p[\"factor\"])' > $WORMFLOW_OUT/d.txt", factor = 2 }

[stages.total]
kind = "command"
needs = ["double"]
params = { cmd = "cat $WORMFLOW_INPUT_DOUBLE/*/d.txt | awk '{s+=$1} END {print s}' > $WORMFLOW_OUT/total.txt" }

[stages.side]
kind = "command"
params = { cmd = "echo side > $WORMFLOW_OUT/side.txt" }
"#;

const ALL: [&str; 8] = [
    "double[n=1]",
    "double[n=2]",
    "double[n=3]",
    "side",
    "src[n=1]",
    "src[n=2]",
    "src[n=3]",
    "total",
];

#[test]
fn fresh_run_runs_everything_and_a_second_run_nothing() {
    let ws = Workspace::new(PIPELINE);
    let first = ws.run_events(&[]);
    assert_eq!(first.ran(), ALL);
    assert_eq!(ws.read("results/total/total.txt").trim(), "12");
    let second = ws.run_events(&[]);
    assert!(second.ran().is_empty());
    assert_eq!(second.cached(), ALL);
    // Without --json the user is told in words.
    let out = ws.wf(&["run"]);
    assert!(
        common::text(&out.stderr).contains("Nothing to do: all 8 nodes are up to date"),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn editing_one_param_reruns_exactly_its_downstream() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 3"));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["double[n=1]", "double[n=2]", "double[n=3]", "total"]);
    assert_eq!(ev.cached(), ["side", "src[n=1]", "src[n=2]", "src[n=3]"]);
    assert_eq!(ws.read("results/total/total.txt").trim(), "18");
}

#[test]
fn set_overrides_act_like_edits() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    let ev = ws.run_events(&["--set", "stages.double.params.factor=3"]);
    assert_eq!(ev.ran(), ["double[n=1]", "double[n=2]", "double[n=3]", "total"]);
    // The override is not persisted: without it, the original results are still stored.
    assert!(ws.run_events(&[]).ran().is_empty());
    // An override can extend a matrix too.
    let ev = ws.run_events(&[
        "--set",
        "stages.src.matrix.n=[1, 2, 3, 4]",
        "--set",
        "stages.double.matrix.n=[1, 2, 3, 4]",
    ]);
    assert_eq!(ev.ran(), ["double[n=4]", "src[n=4]", "total"]);
}

#[test]
fn reformatting_and_reordering_the_toml_reruns_nothing() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    // Same content: stages in another order, tables instead of inline tables, keys
    // reordered, a float written for an integer, comments and blank lines.
    let reformatted = r#"
# the same pipeline, written differently
[stages.total]
params.cmd = "cat $WORMFLOW_INPUT_DOUBLE/*/d.txt | awk '{s+=$1} END {print s}' > $WORMFLOW_OUT/total.txt"
needs = [ "double" ]
kind = "command"

[stages.double]
params = { factor = 2.0, cmd = "python3 -c 'import json,os; p=json.loads(os.environ[\"WORMFLOW_PARAMS\"]); print(int(open(os.environ[\"WORMFLOW_INPUT_SRC\"]+\"/n.txt\").read())*p[\"factor\"])' > $WORMFLOW_OUT/d.txt" }
matrix.n = [1, 2, 3]
needs = ["src"]
kind = "command"

[stages.src]
params = { comment = "a", cmd = "echo ${matrix.n} > $WORMFLOW_OUT/n.txt" }
kind    =    "command"
matrix = { n = [ 1, 2, 3 ] }

[pipeline]
seed = 7
name = "engine-test"

[stages.side.params]
cmd = "echo side > $WORMFLOW_OUT/side.txt"

[stages.side]
kind = "command"
"#;
    ws.write("pipeline.toml", reformatted);
    let ev = ws.run_events(&[]);
    assert!(ev.ran().is_empty(), "reran {:?}", ev.ran());
    assert_eq!(ev.cached(), ALL);
}

#[test]
fn early_cutoff_an_upstream_rerun_with_identical_output_stops_there() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    // `comment` changes src's key but not its output.
    ws.write("pipeline.toml", &PIPELINE.replace("comment = \"a\"", "comment = \"b\""));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["src[n=1]", "src[n=2]", "src[n=3]"]);
    assert_eq!(ev.cached(), ["double[n=1]", "double[n=2]", "double[n=3]", "side", "total"]);
}

#[test]
fn dry_run_status_and_explain_say_what_changed() {
    let ws = Workspace::new(PIPELINE);
    let dry = ws.ok(&["run", "--dry-run"]);
    assert!(dry.contains("would run src[n=1]: never built"), "{dry}");
    assert!(ws.action_count() == 0, "a dry run stores nothing");
    ws.run_events(&[]);
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 5"));
    let explain = ws.ok(&["explain", "double[n=2]"]);
    assert!(explain.contains("params.factor 2 → 5"), "{explain}");
    let explain_total = ws.ok(&["explain", "total"]);
    assert!(explain_total.contains("waits on stale inputs"), "{explain_total}");
    let status = ws.ok(&["status"]);
    assert!(status.contains("stale   double[n=1]"), "{status}");
    assert!(status.contains("8 nodes: 4 fresh, 3 stale, 1 waiting"), "{status}");
    let dry = ws.ok(&["run", "--dry-run"]);
    assert!(dry.contains("4 of 8 nodes would run"), "{dry}");
    // Stage code changes are named too: edit the file a command depends on.
    ws.write("step.sh", "echo one > $WORMFLOW_OUT/x\n");
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"x\"\n[stages.s]\nkind = \"command\"\nparams = { cmd = \"sh step.sh\", deps = [\"step.sh\"] }\n",
    );
    ws.run_events(&[]);
    ws.write("step.sh", "echo two > $WORMFLOW_OUT/x\n");
    assert!(ws.ok(&["explain", "s"]).contains("file step.sh changed"));
}

#[test]
fn file_deps_are_hashed_by_content() {
    let ws = Workspace::new("[pipeline]\nname = \"x\"\n[stages.s]\nkind = \"command\"\nparams = { cmd = \"sh step.sh\", deps = [\"step.sh\"] }\n");
    ws.write("step.sh", "echo one > $WORMFLOW_OUT/x\n");
    assert_eq!(ws.run_events(&[]).ran(), ["s"]);
    // Rewriting the same bytes (new mtime) is not a change.
    std::thread::sleep(std::time::Duration::from_millis(20));
    ws.write("step.sh", "echo one > $WORMFLOW_OUT/x\n");
    assert!(ws.run_events(&[]).ran().is_empty());
    ws.write("step.sh", "echo two > $WORMFLOW_OUT/x\n");
    assert_eq!(ws.run_events(&[]).ran(), ["s"]);
    // A missing dep is an error naming the node and the file.
    std::fs::remove_file(ws.file("step.sh")).unwrap();
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::text(&out.stdout).contains("depends on the file \\\"step.sh\\\""),
        "{}",
        common::text(&out.stdout)
    );
}

#[test]
fn force_reruns_a_cached_node_and_targets_limit_the_run() {
    let ws = Workspace::new(PIPELINE);
    let ev = ws.run_events(&["double[n=2]"]);
    assert_eq!(ev.ran(), ["double[n=2]", "src[n=2]"]);
    let ev = ws.run_events(&["--force", "src[n=1]", "src"]);
    assert_eq!(ev.ran(), ["src[n=1]", "src[n=3]"]);
    assert_eq!(ev.cached(), ["src[n=2]"]);
    let out = ws.wf(&["run", "sorc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::text(&out.stderr).contains("did you mean \"src"),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn a_failed_node_stores_nothing_and_its_dependents_are_skipped() {
    let failing = PIPELINE.replace(
        "echo ${matrix.n} > $WORMFLOW_OUT/n.txt",
        "test ${matrix.n} != 2 && echo ${matrix.n} > $WORMFLOW_OUT/n.txt",
    );
    let ws = Workspace::new(&failing);
    let out = ws.wf(&["run", "--json", "--keep-going", "-j", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&common::text(&out.stdout));
    assert_eq!(ev.nodes("failed"), ["src[n=2]"]);
    assert_eq!(ev.nodes("skipped"), ["double[n=2]", "total"]);
    assert_eq!(ev.ran(), ["double[n=1]", "double[n=3]", "side", "src[n=1]", "src[n=3]"]);
    let failure = ev.0.iter().find(|e| e["event"] == "failed").unwrap();
    assert!(failure["error"].as_str().unwrap().contains("exited with status 1"), "{failure}");
    assert_eq!(ws.action_count(), 5);
    assert!(!ws.file("results/src/n=2").exists());
    // Without --keep-going, nothing new starts after the failure.
    let ws = Workspace::new(&failing);
    let out = ws.wf(&["run", "--json", "-j", "1", "src"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&common::text(&out.stdout));
    assert_eq!(ev.nodes("failed"), ["src[n=2]"]);
    assert_eq!(ev.nodes("skipped"), ["src[n=3]"]);
}

#[test]
fn results_show_the_latest_outputs_and_gc_removes_the_rest() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    // A read-only copy of the store's object, not a link to it.
    let meta = std::fs::symlink_metadata(ws.file("results/total/total.txt")).unwrap();
    assert!(meta.is_file() && meta.permissions().readonly());
    ws.object_of("results/total/total.txt");
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 3"));
    ws.run_events(&[]);
    assert_eq!(ws.read("results/total/total.txt").trim(), "18");
    assert_eq!(ws.action_count(), 12);
    let gc = ws.ok(&["gc"]);
    // The factor = 2 results of double (3) and total (1) are no longer reachable; of their
    // objects only "4" and "12" are not shared with a current result.
    assert!(gc.contains("removed 4 action records and 2 objects"), "{gc}");
    assert_eq!(ws.action_count(), 8);
    // Drop a stage: gc forgets its results.
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 3").replace("[stages.side]\nkind = \"command\"\nparams = { cmd = \"echo side > $WORMFLOW_OUT/side.txt\" }\n", ""));
    let gc = ws.ok(&["gc"]);
    assert!(gc.contains("removed 1 action records and 1 objects"), "{gc}");
    assert!(ws.run_events(&[]).ran().is_empty());
    ws.ok(&["verify"]);
}

#[test]
fn dag_renders_text_dot_and_mermaid() {
    let ws = Workspace::new(PIPELINE);
    let text = ws.ok(&["dag"]);
    assert!(text.contains("total (command) <- double[n=1], double[n=2], double[n=3]"), "{text}");
    let dot = ws.ok(&["dag", "--format", "dot"]);
    assert!(
        dot.starts_with("digraph") && dot.contains("[label=\"double[n=1]\\ncommand\"];"),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count(), 6, "{dot}");
    let mermaid = ws.ok(&["dag", "--format", "mermaid"]);
    assert!(
        mermaid.starts_with("flowchart LR") && mermaid.matches("-->").count() == 6,
        "{mermaid}"
    );
    // Stage by stage: one box per stage, one edge per needs.
    let stages = ws.ok(&["dag", "--stages"]);
    assert!(stages.contains("double (3 nodes) (command) <- src (3 nodes)"), "{stages}");
    assert!(stages.contains("total (command) <- double (3 nodes)"), "{stages}");
    let mermaid = ws.ok(&["dag", "--stages", "--format", "mermaid"]);
    assert_eq!(mermaid.matches("-->").count(), 2, "{mermaid}");
}

#[test]
fn cli_defaults_from_the_environment_axes_in_any_order_and_quiet_runs() {
    let ws = Workspace::new(
        "[pipeline]\nname = \"x\"\n[stages.t]\nkind = \"command\"\nmatrix = { a = [1], b = [\"x\"] }\nparams = { cmd = \"echo > $WORMFLOW_OUT/x\" }\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(common::wormflow_bin());
        c.args(args)
            .current_dir(elsewhere.path())
            .env("WORMFLOW_FILE", ws.file("pipeline.toml"))
            .env("WORMFLOW_JOBS", "1");
        c.output().unwrap()
    };
    let out = run(&["-q", "run"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let said = common::text(&out.stderr);
    assert!(!said.contains("  run ") && said.contains("ran 1"), "{said}");
    let explain = run(&["explain", "t[b=x,a=1]"]);
    assert!(
        common::text(&explain.stdout).contains("is up to date"),
        "{}",
        common::text(&explain.stderr)
    );
    let completions = run(&["completions", "bash"]);
    assert!(common::text(&completions.stdout).contains("complete -F _wormflow"));
}

#[test]
fn show_prints_outputs_provenance_and_parquet_rows() {
    let ws = Workspace::new("[pipeline]\nname = \"x\"\n[stages.t]\nkind = \"command\"\nparams = { cmd = \"cp table.parquet $WORMFLOW_OUT/\", deps = [\"table.parquet\"] }\n");
    write_parquet(&ws.file("table.parquet"));
    ws.run_events(&[]);
    let out = ws.ok(&["show", "t"]);
    assert!(out.contains("table.parquet"), "{out}");
    assert!(out.contains("host"), "{out}");
    assert!(out.contains("| worm"), "{out}");
    assert!(out.contains("| w1"), "{out}");
    assert!(out.contains("3 rows × 2 columns"), "{out}");
}

fn write_parquet(path: &std::path::Path) {
    use arrow::array::{Float32Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter([
        ("worm", Arc::new(StringArray::from(vec!["w1", "w1", "w2"])) as arrow::array::ArrayRef),
        ("AVAL", Arc::new(Float32Array::from(vec![0.5, 0.25, -1.0])) as arrow::array::ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn watch_reruns_what_an_edit_made_stale() {
    let ws = Workspace::new(PIPELINE);
    let child = ws
        .cmd(&["watch", "--json", "--max-runs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first run to finish (its last node writes the total).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ws.file("results/total/total.txt").exists() {
        assert!(std::time::Instant::now() < deadline, "first watch run did not finish");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 4"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let ev = Events::parse(&common::text(&out.stdout));
    // 8 nodes in the first run, the 4 downstream of `double` in the second.
    assert_eq!(ev.ran().len(), 12, "{:?}", ev.0);
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains("re-expanded 1 stage(s) / 3 node(s)"), "{stderr}");
    assert_eq!(ws.read("results/total/total.txt").trim(), "24");
}

#[test]
fn a_set_run_leaves_results_status_and_explain_describing_the_file() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    let ev = ws.run_events(&["--set", "stages.double.params.factor=4"]);
    assert_eq!(ev.ran(), ["double[n=1]", "double[n=2]", "double[n=3]", "total"]);
    // Stored, but results/ still shows the file's pipeline, and status/explain agree.
    assert_eq!(ws.read("results/total/total.txt").trim(), "12");
    assert!(ws.ok(&["status"]).contains("8 fresh"), "{}", ws.ok(&["status"]));
    assert!(ws.ok(&["explain", "total"]).contains("up to date"));
    // An edit of the file is explained against what results/ shows (factor 2), not the
    // --set run's factor 4.
    ws.write("pipeline.toml", &PIPELINE.replace("factor = 2", "factor = 3"));
    let why = ws.ok(&["explain", "double[n=1]"]);
    assert!(why.contains("params.factor") && why.contains("2 → 3"), "{why}");
    // The same --set again finds its results stored; with --results it shows them.
    let ev = ws.run_events(&["--set", "stages.double.params.factor=4", "--results"]);
    assert!(ev.ran().is_empty(), "{:?}", ev.ran());
    assert_eq!(ws.read("results/total/total.txt").trim(), "24");
    // Matrix nodes live in Hive-style folders.
    assert_eq!(ws.read("results/double/n=2/d.txt").trim(), "8");
}

#[test]
fn explain_json_names_the_source_file_that_changed_a_builtin_kinds_version() {
    let ws = Workspace::new(
        "[pipeline]\nname = \"x\"\n[stages.synth]\nkind = \"synthesize\"\nparams = { model = \"sines\", n_worms = 1, n_steps = 20, n_observed = 3 }\n",
    );
    ws.run_events(&[]);
    // The stored result as an older build would have made it: another code version, in
    // which src/neurons.rs hashed differently and arrow was at another version.
    let records: Vec<std::path::PathBuf> = common::files_under(&ws.file("cache/actions"));
    assert_eq!(records.len(), 1);
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(&records[0]).unwrap()).unwrap();
    let code = record["code"].as_object_mut().expect("the record lists the kind's code");
    assert!(code.contains_key("src/synthesize.rs") && code.contains_key("crate arrow"), "{code:?}");
    code.insert("src/neurons.rs".into(), "000000000000".into());
    code.insert("crate arrow".into(), "1.0.0 (with dependencies 00000000)".into());
    record["stage_version"] = "synthesize-0000000000000000".into();
    std::fs::write(&records[0], serde_json::to_vec(&record).unwrap()).unwrap();
    let out = ws.ok(&["explain", "synth", "--json", "--set", "stages.synth.params.n_steps=21"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["state"], "stale", "{doc}");
    let reasons = doc["reasons"].as_array().unwrap();
    let code_changed =
        reasons.iter().find(|r| r["reason"] == "code_changed").expect("code_changed");
    let items: Vec<&str> = code_changed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap())
        .collect();
    assert_eq!(items, ["crate arrow", "src/neurons.rs"], "{code_changed}");
    assert!(reasons.iter().any(|r| r["reason"] == "param_changed"
        && r["param"] == "params.n_steps"
        && r["from"] == "20"
        && r["to"] == "21"));
    let words = ws.ok(&["explain", "synth", "--set", "stages.synth.params.n_steps=21"]);
    assert!(
        words.contains("src/neurons.rs edited") && words.contains("crate arrow 1.0.0"),
        "{words}"
    );
}

#[test]
fn exit_codes_say_whose_fix_an_error_needs() {
    // 2: bad input (the pipeline names an unknown kind).
    let ws = Workspace::new("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"comand\"\n");
    let out = ws.wf(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stderr).contains("did you mean \"command\""));
    // 1: a node failed.
    let ws = Workspace::new(
        "[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"exit 7\" }\n",
    );
    assert_eq!(ws.wf(&["run"]).status.code(), Some(1));
    // 3: the environment — a store that cannot be created, a remote directory not mounted.
    let ws = Workspace::new("[pipeline]\nname = \"x\"\nstore = \"/proc/wormflow-store\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"echo > $WORMFLOW_OUT/x\" }\n");
    let out = ws.wf(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out.stderr));
    assert!(
        common::text(&out.stderr).contains("cannot create store directory /proc/wormflow-store")
    );
    let ws = Workspace::new("[pipeline]\nname = \"x\"\n[remotes.team]\nurl = \"/nonexistent/wormflow-remote\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"echo > $WORMFLOW_OUT/x\" }\n");
    let out = ws.wf(&["pull"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stderr).contains("mount the shared drive"));
}

#[test]
fn a_sweep_declared_once_is_taken_by_the_stage_that_needs_it() {
    let pipeline = |values: &str| {
        format!(
            "[pipeline]\nname = \"x\"\n[stages.train]\nkind = \"command\"\nmatrix = {{ hidden = [{values}], model = [\"lstm\"] }}\nparams = {{ cmd = \"echo ${{matrix.hidden}} > $WORMFLOW_OUT/h\" }}\n[stages.evaluate]\nkind = \"command\"\nneeds = [\"train\"]\nmatrix_from = \"train\"\nparams = {{ cmd = \"cat $WORMFLOW_INPUT_TRAIN/h > $WORMFLOW_OUT/e\" }}\n"
        )
    };
    let ws = Workspace::new(&pipeline("8, 24"));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran().len(), 4, "{:?}", ev.ran());
    assert_eq!(ws.read("results/evaluate/hidden=24/model=lstm/e").trim(), "24");
    // One edit to the sweep reaches both stages.
    ws.write("pipeline.toml", &pipeline("8, 24, 64"));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["evaluate[hidden=64,model=lstm]", "train[hidden=64,model=lstm]"]);
    // matrix_from must name a needed stage, and replaces matrix.
    let bad = Workspace::new(&pipeline("8").replace("needs = [\"train\"]\n", ""));
    assert!(bad
        .bad(&["status"])
        .contains("matrix_from = \"train\" names a stage it does not need"));
    let both =
        Workspace::new(&pipeline("8").replace("matrix_from", "matrix = { a = [1] }\nmatrix_from"));
    assert!(both.bad(&["status"]).contains("has both matrix and matrix_from"));
}

#[test]
fn every_kind_leaves_a_log_in_the_store() {
    let ws = Workspace::new(
        "[pipeline]\nname = \"x\"\n[stages.synth]\nkind = \"synthesize\"\nparams = { model = \"sines\", n_worms = 1, n_steps = 20, n_observed = 3 }\n[stages.say]\nkind = \"command\"\nparams = { cmd = \"echo hello; echo oops >&2; echo > $WORMFLOW_OUT/x\" }\n",
    );
    ws.run_events(&[]);
    let synth = ws.read("cache/logs/synth.log");
    assert!(synth.starts_with("# synth (kind synthesize, key "), "{synth}");
    assert!(synth.trim_end().lines().last().unwrap().starts_with("# done in "), "{synth}");
    let say = ws.read("cache/logs/say.log");
    assert!(say.contains("hello") && say.contains("oops") && say.contains("# done in "), "{say}");
    // A failure ends the log with its error.
    ws.write("pipeline.toml", "[pipeline]\nname = \"x\"\n[stages.say]\nkind = \"command\"\nparams = { cmd = \"exit 4\" }\n");
    assert_eq!(ws.wf(&["run"]).status.code(), Some(1));
    let say = ws.read("cache/logs/say.log");
    assert!(say.contains("# FAILED after") && say.contains("exited with status 4"), "{say}");
}

#[test]
fn show_and_dag_speak_json() {
    let ws = Workspace::new(PIPELINE);
    ws.run_events(&[]);
    let show: Value = serde_json::from_str(&ws.ok(&["show", "double[n=2]", "--json"])).unwrap();
    assert_eq!(show["node"], "double[n=2]");
    assert_eq!(show["current"], true);
    assert_eq!(show["outputs"][0]["path"], "d.txt");
    let dag: Value = serde_json::from_str(&ws.ok(&["dag", "--format", "json"])).unwrap();
    let total = dag["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "total").unwrap();
    assert_eq!(total["inputs"], serde_json::json!(["double[n=1]", "double[n=2]", "double[n=3]"]));
    let stages: Value =
        serde_json::from_str(&ws.ok(&["dag", "--stages", "--format", "json"])).unwrap();
    let double = stages["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "double").unwrap();
    assert_eq!(double["inputs"], serde_json::json!(["src"]));
}
