//! The default pipeline (pipeline.toml, the README's main job) end to end on a reduced
//! budget: the report, caching, what an edit reruns, and science sanity on synthetic data.

mod common;

use std::path::PathBuf;

use common::Workspace;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Real-data trainings shortened; the synthetic ones keep their budget (the sanity checks
/// need it).
const REDUCED: &[&str] = &[
    "--set", "stages.train_data.params.epochs=2",
    "--set", "stages.train_size.params.epochs=2",
    "--set", "stages.evaluate_data.params.horizon=5",
    "--set", "stages.evaluate_size.params.horizon=5",
];

fn run(ws: &Workspace, extra: &[&str]) -> common::Events {
    let mut args: Vec<&str> = REDUCED.to_vec();
    args.extend_from_slice(extra);
    ws.run_events(&args)
}

fn eval(ws: &Workspace, node: &str) -> Value {
    serde_json::from_str(&ws.read(&format!("results/{node}/eval.json"))).unwrap()
}

#[test]
fn the_default_pipeline_runs_end_to_end() {
    let ws = Workspace::new(&std::fs::read_to_string(repo("pipeline.toml")).unwrap());
    std::os::unix::fs::symlink(repo("data"), ws.file("data")).unwrap();
    let first = run(&ws, &[]);
    assert!(first.nodes("failed").is_empty());
    let n = first.ran().len();
    assert!(n > 90, "{n} nodes ran");

    // The report: self-contained, one SVG per figure, each with data points.
    let html = ws.read("results/report/report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(!html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"), "the report must open offline");
    for id in ["data-scaling", "dataset-slopes", "model-scaling", "synthetic", "kstep", "generation", "training"] {
        let start = html.find(&format!("<figure id=\"{id}\">")).unwrap_or_else(|| panic!("figure {id} missing"));
        let figure = &html[start..start + html[start..].find("</figure>").unwrap()];
        assert_eq!(figure.matches("<svg").count(), 1, "{id}: one SVG");
        assert_eq!(figure.matches("</svg>").count(), 1, "{id}: a closed SVG");
        assert!(figure.contains("<circle") || figure.contains("<path"), "{id}: no data drawn");
    }
    assert!(ws.read("results/report/summary.md").contains("## Scaling fits"));
    let where_ = ws.ok(&["report"]);
    assert!(where_.contains("results/report/report.html"), "{where_}");

    // A second run executes nothing.
    let second = run(&ws, &[]);
    assert!(second.ran().is_empty(), "reran {:?}", second.ran());

    // A teammate pulls it all from a real S3-compatible server: runs nothing, same bytes.
    if let Some(server) = common::S3Server::start("wormflow") {
        let remote = [
            "--set".to_string(), "remotes.team.url=\"s3://wormflow/lab\"".to_string(),
            "--set".to_string(), format!("remotes.team.endpoint=\"{}\"", server.endpoint),
        ];
        let with_remote = |ws: &Workspace, verb: &str| {
            let mut args: Vec<&str> = REDUCED.to_vec();
            args.extend(remote.iter().map(String::as_str));
            args.push(verb);
            let out = ws.cmd(&args).env("AWS_ACCESS_KEY_ID", common::S3_KEY).env("AWS_SECRET_ACCESS_KEY", common::S3_SECRET).env("AWS_REGION", "us-east-1").output().unwrap();
            assert!(out.status.success(), "{verb}: {}", common::text(&out.stderr));
        };
        with_remote(&ws, "push");
        let b = Workspace::new(&std::fs::read_to_string(repo("pipeline.toml")).unwrap());
        std::os::unix::fs::symlink(repo("data"), b.file("data")).unwrap();
        with_remote(&b, "pull");
        let ev = run(&b, &[]);
        assert!(ev.ran().is_empty(), "teammate B reran {:?}", ev.ran());
        assert!(common::tree_bytes(&ws.file("results")) == common::tree_bytes(&b.file("results")), "B's results differ from A's");
    }

    // Science sanity on synthetic worms.
    for m in ["lstm", "ctrnn", "transformer"] {
        let r = eval(&ws, &format!("synth_evaluate[data=random_walk,model={m}]"))["ratio"].as_f64().unwrap();
        assert!(r >= 0.97, "Random Walk: {m} beats the Baseline by more than 3% (ratio {r})");
    }
    let r = eval(&ws, "synth_evaluate[data=sines,model=lstm]")["ratio"].as_f64().unwrap();
    assert!(r <= 1.0 / 3.0, "Sines: LSTM loss is {r} of the Baseline's; it should be 3× better");

    // Editing only the report reruns only the report.
    let ev = run(&ws, &["--set", "stages.report.params.title=Another title"]);
    assert_eq!(ev.ran(), ["report"]);
    assert!(ws.read("results/report/report.html").contains("Another title"));

    // Editing one hidden size of the model sweep reruns those models, their evaluations,
    // the model-scaling fit and the report — nothing else.
    let ev = run(&ws, &["--set", "stages.train_size.matrix.hidden=[8, 24, 48]", "--set", "stages.evaluate_size.matrix.hidden=[8, 24, 48]"]);
    let mut expected: Vec<String> = Vec::new();
    for m in ["attention", "ctrnn", "feedforward", "linear", "lstm", "transformer"] {
        expected.push(format!("evaluate_size[hidden=48,model={m}]"));
        expected.push(format!("train_size[hidden=48,model={m}]"));
    }
    expected.push("fit_size".into());
    expected.push("report".into());
    expected.sort();
    assert_eq!(ev.ran(), expected);
}

/// pipelines/paper.toml cannot run here (no internet, no GPU) but must plan: every stage's
/// params valid, the sweep the size its header says, and a dag to show.
#[test]
fn the_paper_pipeline_plans() {
    let paper = repo("pipelines/paper.toml");
    let out = std::process::Command::new(common::wormflow_bin()).args(["-f", paper.to_str().unwrap(), "status"]).output().unwrap();
    let stdout = common::text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", common::text(&out.stderr));
    assert!(stdout.contains("563 nodes: 3 stale, 560 waiting"), "{stdout}");
    assert!(stdout.contains("train_size[hidden=4096,model=lstm]"), "{stdout}");
    let dag = std::process::Command::new(common::wormflow_bin()).args(["-f", paper.to_str().unwrap(), "dag"]).output().unwrap();
    let dag = common::text(&dag.stdout);
    for source in ["kato2015", "nichols2017", "skora2018", "kaplan2020", "yemini2021", "uzel2022", "flavell2023", "leifer2023"] {
        assert!(dag.contains(&format!("std_{source} (standardize) <- get_opensource")), "{source} missing:\n{dag}");
    }
}
