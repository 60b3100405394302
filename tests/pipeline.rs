//! The default pipeline (pipeline.toml, the README's main job) end to end on a reduced
//! budget: the report, caching, what an edit reruns, and science sanity on synthetic data.

mod common;

use common::Workspace;
use serde_json::Value;

use common::repo;

/// Real-data trainings shortened; the synthetic ones keep their budget (the sanity checks
/// need it).
const REDUCED: &[&str] = &[
    "--set",
    "stages.train_data.params.epochs=2",
    "--set",
    "stages.train_residual.params.epochs=2",
    "--set",
    "stages.train_size.params.epochs=2",
    "--set",
    "stages.train_linear.params.epochs=2",
    "--set",
    "stages.evaluate_data.params.horizon=5",
    "--set",
    "stages.evaluate_residual.params.horizon=5",
    "--set",
    "stages.evaluate_size.params.horizon=5",
    "--set",
    "stages.evaluate_linear.params.horizon=5",
];

/// A reduced run whose results results/ shows (`--results`: it has `--set` overrides).
fn run(ws: &Workspace, extra: &[&str]) -> common::Events {
    let mut args: Vec<&str> = REDUCED.to_vec();
    args.push("--results");
    args.extend_from_slice(extra);
    ws.run_events(&args)
}

/// An evaluation's one-row eval.parquet, as JSON for field-by-name checks.
fn eval(ws: &Workspace, node: &str) -> Value {
    let e: wormflow_stages::summaries::Evaluation = wormflow_stages::summaries::read(
        &ws.file(&format!("{}/eval.parquet", common::results_dir(node))),
    )
    .unwrap();
    serde_json::to_value(e).unwrap()
}

use common::python;

/// Render report.html from results/ in a real headless Chromium: a non-empty screenshot,
/// and a DOM that holds the figures as SVG (not the page's source as text) and their titles.
fn check_report_in_chromium(ws: &Workspace, titles: &[&str]) {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success())
    }) else {
        assert!(
            common::service_missing(
                "chromium",
                "tests/services/install.sh installs Debian's chromium"
            ),
            "no chromium"
        );
        return;
    };
    let page = format!("file://{}", ws.file("results/report/report.html").display());
    let profile = tempfile::tempdir().unwrap();
    let shot = ws.file("report.png");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let browse = |extra: &[String]| {
        let out = std::process::Command::new(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&page)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    browse(&[format!("--screenshot={}", shot.display()), "--window-size=1100,2400".into()]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 50_000 && png.starts_with(b"\x89PNG"), "screenshot of {} bytes", png.len());
    let dom = browse(&["--dump-dom".into()]);
    assert!(
        dom.contains("<svg") && !dom.contains("&lt;svg") && !dom.contains("&lt;!DOCTYPE"),
        "Chromium did not render the page as HTML"
    );
    for t in titles {
        assert!(dom.contains(t), "the rendered page lacks the figure title {t:?}");
    }
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
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the report must open offline"
    );
    for id in [
        "data-scaling",
        "dataset-slopes",
        "model-scaling",
        "synthetic",
        "kstep",
        "generation",
        "training",
    ] {
        let start = html
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("figure {id} missing"));
        let figure = &html[start..start + html[start..].find("</figure>").unwrap()];
        assert_eq!(figure.matches("<svg").count(), 1, "{id}: one SVG");
        assert_eq!(figure.matches("</svg>").count(), 1, "{id}: a closed SVG");
        assert!(figure.contains("<circle") || figure.contains("<path"), "{id}: no data drawn");
    }
    // Both regimes side by side, and the Findings say which is which.
    assert_eq!(eval(&ws, "evaluate_data[model=ctrnn,n_worms=13]")["residual"], false);
    assert_eq!(eval(&ws, "evaluate_residual[model=ctrnn,n_worms=13]")["residual"], true);
    assert_eq!(
        eval(&ws, "evaluate_linear")["n_params"],
        183_012,
        "Linear is the study's 302 → 302 → 302"
    );
    let summary = ws.read("results/report/summary.md");
    assert!(summary.contains("## Scaling fits") && summary.contains("## Findings"), "{summary}");
    for said in [
        "Data scaling (fit_data, the study's architecture",
        "Data scaling (fit_residual, the residual variant",
        "Model scaling (fit_size",
        "Against the paper's Fig. 4B",
        "Per source, with the most data",
    ] {
        assert!(summary.contains(said), "{said:?} missing from the Findings:\n{summary}");
    }
    assert!(html.contains("<h2>Findings</h2>"));
    assert!(html.contains("<h2>Which neurons are predictable</h2>"), "per-neuron answers");
    for id in ["data-scaling-ratio", "model-scaling-ratio", "kstep-synthetic"] {
        assert!(html.contains(&format!("<figure id=\"{id}\">")), "figure {id} missing");
    }
    check_report_in_chromium(
        &ws,
        &[
            "Data scaling (Fig. 4B)",
            "Model scaling (Fig. 5B)",
            "Per-dataset data-scaling slopes (Fig. 4C)",
            "Synthetic data (Fig. 6)",
            "Generation (Fig. 7)",
            "Training curves",
            "Error k steps ahead, recorded data",
        ],
    );

    // results/ as a user's tools read it: Hive folders scanned as one table (polars,
    // pyarrow), int64 indices, generation tables that concatenate, origin metadata.
    match python() {
        Some(py) => {
            let out = std::process::Command::new(py)
                .arg(repo("tests/results_readers.py"))
                .arg(ws.file("results"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                common::text(&out.stdout),
                common::text(&out.stderr)
            );
        }
        None => assert!(common::service_missing("the test venv", "make torch installs it")),
    }

    // The sweep as a table, on polars, sortable and filterable.
    let table = ws.ok(&[
        "compare",
        "evaluate_size",
        "--params",
        "lr,epochs",
        "--sort",
        "ratio",
        "--where",
        "model == \"lstm\"",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("evaluate_size (3 of 15 nodes)"), "{table}");
    for col in [
        "node",
        "hidden",
        "model",
        "params.lr",
        "params.epochs",
        "val_loss",
        "ratio",
        "epochs_run",
        "best_epoch",
        "n_params",
        "learning",
        "ratio[Kato2015]",
    ] {
        assert!(
            lines[1].split_whitespace().any(|c| c == col),
            "column {col} missing: {}",
            lines[1]
        );
    }
    let csv = ws.ok(&["compare", "evaluate_size", "--csv", "--sort=-val_loss"]);
    assert_eq!(csv.lines().count(), 16, "{csv}");
    let json: Value =
        serde_json::from_str(&ws.ok(&["compare", "evaluate_size", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 15);
    let diff = ws.ok(&[
        "diff",
        "evaluate_size[hidden=8,model=lstm]",
        "evaluate_size[hidden=64,model=lstm]",
    ]);
    assert!(
        diff.contains("hidden") && diff.contains("8 → 64") && diff.contains("n_params"),
        "{diff}"
    );
    let where_ = ws.ok(&["report"]);
    assert!(where_.contains("results/report/report.html"), "{where_}");
    // `report --open` succeeds only when a browser was started, and says so when none was.
    let opened = ws.cmd(&["report", "--open"]).env("BROWSER", "true").output().unwrap();
    assert!(opened.status.success(), "{}", common::text(&opened.stderr));
    let failed = ws.cmd(&["report", "--open"]).env("BROWSER", "false").output().unwrap();
    assert!(
        !failed.status.success() && common::text(&failed.stderr).contains("could not open"),
        "{}",
        common::text(&failed.stderr)
    );

    // A second run executes nothing.
    let second = run(&ws, &[]);
    assert!(second.ran().is_empty(), "reran {:?}", second.ran());

    // A teammate pulls it all from a real S3-compatible server: runs nothing, same bytes.
    if let Some(server) = common::S3Server::start("wormflow") {
        let remote = [
            "--set".to_string(),
            "remotes.team.url=\"s3://wormflow/lab\"".to_string(),
            "--set".to_string(),
            format!("remotes.team.endpoint=\"{}\"", server.endpoint),
        ];
        let with_remote = |ws: &Workspace, verb: &str| {
            let mut args: Vec<&str> = REDUCED.to_vec();
            args.extend(remote.iter().map(String::as_str));
            args.push(verb);
            let out = ws
                .cmd(&args)
                .env("AWS_ACCESS_KEY_ID", common::S3_KEY)
                .env("AWS_SECRET_ACCESS_KEY", common::S3_SECRET)
                .env("AWS_REGION", "us-east-1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{verb}: {}", common::text(&out.stderr));
        };
        with_remote(&ws, "push");
        let b = Workspace::new(&std::fs::read_to_string(repo("pipeline.toml")).unwrap());
        std::os::unix::fs::symlink(repo("data"), b.file("data")).unwrap();
        with_remote(&b, "pull");
        let ev = run(&b, &[]);
        assert!(ev.ran().is_empty(), "teammate B reran {:?}", ev.ran());
        assert!(
            common::tree_bytes(&ws.file("results")) == common::tree_bytes(&b.file("results")),
            "B's results differ from A's"
        );
    }

    // Science sanity on synthetic worms.
    for m in ["lstm", "ctrnn", "transformer"] {
        let r = eval(&ws, &format!("synth_evaluate[data=random_walk,model={m}]"))["ratio"]
            .as_f64()
            .unwrap();
        assert!(r >= 0.97, "Random Walk: {m} beats the Baseline by more than 3% (ratio {r})");
    }
    let r = eval(&ws, "synth_evaluate[data=sines,model=lstm]")["ratio"].as_f64().unwrap();
    assert!(r <= 1.0 / 3.0, "Sines: LSTM loss is {r} of the Baseline's; it should be 3× better");

    // Editing only the report reruns only the report.
    let ev = run(&ws, &["--set", "stages.report.params.title=Another title"]);
    assert_eq!(ev.ran(), ["report"]);
    assert!(ws.read("results/report/report.html").contains("Another title"));
    // Without --results a --set run stores its results but leaves results/ alone.
    let mut args: Vec<&str> = REDUCED.to_vec();
    args.extend(["--set", "stages.report.params.title=A third title"]);
    let ev = ws.run_events(&args);
    assert_eq!(ev.ran(), ["report"]);
    assert!(
        ws.read("results/report/report.html").contains("Another title"),
        "results/ shows the pipeline's own runs"
    );

    // Editing one hidden size of the model sweep reruns those models, their evaluations,
    // the model-scaling fit and the report — nothing else.
    let ev = run(
        &ws,
        &[
            // One edit: evaluate_size takes train_size's matrix (matrix_from).
            "--set",
            "stages.train_size.matrix.hidden=[8, 24, 48]",
        ],
    );
    let mut expected: Vec<String> = Vec::new();
    for m in ["attention", "ctrnn", "feedforward", "lstm", "transformer"] {
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
    let out = std::process::Command::new(common::wormflow_bin())
        .args(["-f", paper.to_str().unwrap(), "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let ids: Vec<String> = common::Events::parse(&common::text(&out.stdout))
        .0
        .iter()
        .map(|e| e["node"].as_str().unwrap().to_string())
        .collect();
    let count = |stage: &str| ids.iter().filter(|id| id.split('[').next() == Some(stage)).count();
    // Data scaling: 6 models × the study's 19 worm counts × 3 draws, and the full pool once
    // per initialisation seed — never three identical samples of all worms.
    assert_eq!((count("sample"), count("sample_all")), (19 * 3, 1));
    assert!(
        !ids.iter().any(|id| id.starts_with("sample[") && id.contains("n_worms=0")),
        "the full pool is drawn once"
    );
    assert_eq!((count("train_data"), count("train_data_all")), (6 * 19 * 3, 6 * 3));
    // Model scaling: 5 architectures × the study's 30 sizes × 2 repeats; Linear is a point.
    assert_eq!((count("train_size"), count("train_linear")), (5 * 30 * 2, 2));
    assert!(!ids.iter().any(|id| id.starts_with("train_size[") && id.contains("model=linear")));
    assert!(ids.contains(&"train_size[hidden=8192,model=lstm,seed=1]".to_string()), "{ids:?}");
    // Fig. 6: data scaling (9 worm counts) and model scaling (10 sizes) on both synthetic sets.
    assert_eq!((count("synth_train"), count("synth_train_size")), (2 * 9 * 3, 2 * 3 * 10));
    for data in ["sines", "random_walk"] {
        assert!(
            ids.contains(&format!("synth_fit_data[data={data}]"))
                && ids.contains(&format!("synth_fit_size[data={data}]")),
            "{data}"
        );
    }
    let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&paper).unwrap()).unwrap();
    let synth = &doc["stages"]["synth"]["params"];
    assert_eq!(
        (
            synth["n_worms"].as_integer(),
            synth["n_steps"].as_integer(),
            synth["n_observed"].as_integer()
        ),
        (Some(200), Some(1500), Some(50))
    );
    assert_eq!(
        doc["stages"]["evaluate_generation"]["params"]["generate_dataset"].as_str(),
        Some("Uzel2022"),
        "Fig. 7 generates from Uzel 2022"
    );
    let dag = std::process::Command::new(common::wormflow_bin())
        .args(["-f", paper.to_str().unwrap(), "dag"])
        .output()
        .unwrap();
    let dag = common::text(&dag.stdout);
    for source in [
        "kato2015",
        "nichols2017",
        "skora2018",
        "kaplan2020",
        "yemini2021",
        "uzel2022",
        "flavell2023",
        "leifer2023",
    ] {
        assert!(
            dag.contains(&format!("std_{source} (standardize) <- get_opensource")),
            "{source} missing:\n{dag}"
        );
    }
    // The alternative source: the study's Parquet pool, picked with one --set.
    assert!(dag.contains("std_pool (standardize) <- get_pool"), "{dag}");
    let pool = std::process::Command::new(common::wormflow_bin())
        .args([
            "-f",
            paper.to_str().unwrap(),
            "--set",
            r#"stages.preprocess.needs=["std_pool"]"#,
            "dag",
        ])
        .output()
        .unwrap();
    assert!(pool.status.success(), "{}", common::text(&pool.stderr));
    assert!(common::text(&pool.stdout).contains("preprocess (preprocess) <- std_pool"));
}

/// pipelines/wormid.toml (the WormID dandisets from DANDI) plans offline: every standardize
/// reads NWB from its dandiset's download, published versions need no pin of their own.
#[test]
fn the_wormid_pipeline_plans() {
    let wormid = repo("pipelines/wormid.toml");
    let out = std::process::Command::new(common::wormflow_bin())
        .args(["-f", wormid.to_str().unwrap(), "dag"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let dag = common::text(&out.stdout);
    for d in ["000541", "000472", "000565", "000692", "000714", "000715", "000776", "001623"] {
        assert!(dag.contains(&format!("std_{d} (standardize) <- get_{d}")), "{d}:\n{dag}");
    }
    let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&wormid).unwrap()).unwrap();
    assert_eq!(doc["stages"]["std_000541"]["params"]["rate"].as_float(), Some(4.0));
}

/// `run -n --cost` before anything ran: per-stage lines, a total, where each figure comes
/// from; the paper pipeline's train and evaluate stages are GPU-hours by the cost model,
/// the default pipeline's CPU; a stage without a model or history says "not estimated".
#[test]
fn the_cost_is_known_before_the_run() {
    let empty = tempfile::tempdir().unwrap();
    let store = format!("pipeline.store={}", empty.path().join("store").display());
    let cost = |file: &str| -> serde_json::Value {
        let file = repo(file);
        let args = ["-f", file.to_str().unwrap(), "--set", &store, "run", "-n", "--cost", "--json"];
        let out = std::process::Command::new(common::wormflow_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        let text = common::text(&out.stdout);
        let line = text.lines().find(|l| l.contains("\"event\":\"cost\"")).expect("a cost event");
        serde_json::from_str(line).unwrap()
    };
    let paper = cost("pipelines/paper.toml");
    let stage = |doc: &serde_json::Value, name: &str| -> serde_json::Value {
        doc["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap().clone()
    };
    let size = stage(&paper, "train_size");
    assert_eq!(size["nodes"], 300);
    assert_eq!(size["source"]["from"], "model");
    let gpu_hours = size["gpu_seconds"].as_f64().unwrap() / 3600.0;
    // Up to hidden = 8192 for up to 500 epochs: tens to thousands of GPU-hours, not seconds.
    assert!((10.0..100_000.0).contains(&gpu_hours), "{gpu_hours} GPU-hours");
    assert!(stage(&paper, "evaluate_size")["gpu_seconds"].as_f64().unwrap() > 0.0);
    let default = cost("pipeline.toml");
    let train = stage(&default, "train_data");
    assert!(train["cpu_seconds"].as_f64().unwrap() > 0.0 && train["gpu_seconds"] == 0.0);
    assert!(train["basis"].as_str().unwrap().contains("epochs"), "{train}");
    // Kinds without a model and no history in a fresh store.
    assert_eq!(stage(&default, "preprocess")["source"]["from"], "unknown");
    // The table a user reads.
    let paper = repo("pipelines/paper.toml");
    let args = ["-f", paper.to_str().unwrap(), "--set", &store, "run", "-n", "--cost"];
    let out = std::process::Command::new(common::wormflow_bin()).args(args).output().unwrap();
    let text = common::text(&out.stdout);
    assert!(text.contains("GPU-hours") && text.contains("train_size"), "{text}");
    assert!(text.contains("assumed:"), "the unknown worm pool is said: {text}");
}
