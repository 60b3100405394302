//! The train stage through the real binary: learning, masking, the synthetic benchmarks,
//! determinism, crash/resume and bad input. Sized for CI's 2 cores (small H, few epochs).

mod common;

use common::{Events, Workspace};
use serde_json::Value;
use wormflow_stages::metrics::read_epochs;

/// synthesize → preprocess → split → sample → train[model], for a synthetic model.
fn pipeline(
    synth: &str,
    n_worms: u32,
    steps: u32,
    window: u32,
    n_windows: u32,
    train: &str,
) -> String {
    pipeline_observing(synth, n_worms, steps, 20, window, n_windows, train)
}

fn pipeline_observing(
    synth: &str,
    n_worms: u32,
    steps: u32,
    observed: u32,
    window: u32,
    n_windows: u32,
    train: &str,
) -> String {
    let front = common::synthetic_front(
        "train-test",
        3,
        &format!(
            r#"model = "{synth}", n_worms = {n_worms}, n_steps = {steps}, n_observed = {observed}, noise = 0.0"#
        ),
        &format!("n_windows = {n_windows}, window = {window}"),
    );
    format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
matrix = {{ model = ["baseline", "lstm", "ctrnn", "linear", "feedforward", "transformer", "attention"] }}
params = {{ model = "${{matrix.model}}", threads = 1, {train} }}
"#
    )
}

/// train's model card (model.parquet) as JSON, for field-by-name checks.
fn card_of(ws: &Workspace, model: &str) -> Value {
    let card: wormflow_stages::summaries::ModelCard = wormflow_stages::summaries::read(
        &ws.file(&format!("results/train/model={model}/model.parquet")),
    )
    .unwrap();
    serde_json::to_value(card).unwrap()
}

fn best_val(ws: &Workspace, model: &str) -> f64 {
    let card: Value = card_of(ws, model);
    card["best_val_loss"].as_f64().unwrap()
}

#[test]
fn sines_are_learned_and_random_walks_are_not_beaten() {
    // Smaller than the paper's Sines (200 worms × 1500 steps, 50 neurons) to fit CI.
    let ws = Workspace::new(&pipeline_observing(
        "sines",
        96,
        400,
        10,
        40,
        16,
        "hidden = 64, epochs = 80, batch_size = 32, lr = 0.01, early_stopping = 80",
    ));
    ws.run_events(&["-j", "2", "train[model=baseline]", "train[model=lstm]", "train[model=ctrnn]"]);
    let base = best_val(&ws, "baseline");
    for m in ["lstm", "ctrnn"] {
        let v = best_val(&ws, m);
        assert!(v <= 0.3 * base, "{m} on Sines: val {v:.4} vs baseline {base:.4}");
    }
    let ws = Workspace::new(&pipeline_observing(
        "random_walk",
        48,
        400,
        10,
        40,
        8,
        "hidden = 32, epochs = 15, batch_size = 32, lr = 0.003",
    ));
    ws.run_events(&[]);
    let base = best_val(&ws, "baseline");
    for m in ["lstm", "ctrnn", "linear", "feedforward", "transformer", "attention"] {
        let v = best_val(&ws, m);
        assert!(
            v >= 0.97 * base,
            "{m} on Random Walk: val {v:.4} beats baseline {base:.4} by more than 3%"
        );
    }
}

#[test]
fn a_model_overfits_four_windows() {
    let ws = Workspace::new(&pipeline("sines", 2, 120, 30, 2, "hidden = 48, epochs = 250, batch_size = 4, lr = 0.01, early_stopping = 1000, plateau_patience = 1000"));
    let events = ws.run_events(&["train[model=lstm]"]);
    // --json progress carries the numbers, not only words.
    let progress: Vec<&Value> = events
        .0
        .iter()
        .filter(|e| e["event"] == "progress" && e["node"] == "train[model=lstm]")
        .collect();
    let epoch =
        progress.iter().find(|e| e["epoch"].is_u64()).expect("a progress event with an epoch");
    assert_eq!(epoch["epochs"], 250, "{epoch}");
    assert!(epoch["train_loss"].is_f64() && epoch["val_loss"].is_f64(), "{epoch}");
    assert!(epoch["message"].as_str().unwrap().contains("/250: train"), "{epoch}");
    let card: Value = card_of(&ws, "lstm");
    assert_eq!(card["train_windows"], 4);
    let metrics = read_epochs(&ws.file("results/train/model=lstm/metrics.parquet")).unwrap();
    let last = metrics.last().unwrap();
    assert!(last.train_loss < 0.02, "train loss after {} epochs: {}", last.epoch, last.train_loss);
}

#[test]
fn a_warm_up_ramps_the_learning_rate() {
    // 4 windows, batch 4: one optimizer step per epoch.
    let ws = Workspace::new(&pipeline(
        "sines",
        2,
        120,
        30,
        2,
        "hidden = 8, epochs = 3, batch_size = 4, lr = 0.01, warmup_steps = 2, early_stopping = 100",
    ));
    ws.run_events(&["train[model=lstm]"]);
    let metrics = read_epochs(&ws.file("results/train/model=lstm/metrics.parquet")).unwrap();
    let lrs: Vec<f64> = metrics.iter().map(|e| e.lr).collect();
    assert_eq!(lrs, [0.01, 0.005, 0.01, 0.01], "epoch 0 (untrained), then steps 1/2, 2/2, full");
}

#[test]
fn training_is_deterministic_on_cpu_and_outputs_are_documented() {
    // The Transformer and Feedforward train with the study's dropout (0.1): their masks come
    // from the node's seed, so the same seed gives the same bytes and another seed others.
    let p = pipeline("sines", 3, 200, 40, 4, "hidden = 12, epochs = 4, batch_size = 4");
    let other_seed = Workspace::new(&p.replace("threads = 1,", "threads = 1, seed = 1,"));
    let (a, b) = (Workspace::new(&p), Workspace::new(&p));
    let models = ["lstm", "transformer", "feedforward"];
    for ws in [&a, &b, &other_seed] {
        ws.run_events(&models.map(|m| format!("train[model={m}]")).each_ref().map(String::as_str));
    }
    let weights = |ws: &Workspace, m: &str| {
        std::fs::read(ws.file(&format!("results/train/model={m}/weights.safetensors"))).unwrap()
    };
    for m in models {
        assert!(weights(&a, m) == weights(&b, m), "{m}: same seed, same weights");
        assert!(weights(&a, m) != weights(&other_seed, m), "{m}: another seed, other weights");
    }
    let card: Value = card_of(&a, "lstm");
    assert_eq!(card["architecture"], "lstm");
    assert_eq!(card["hidden"], 12);
    assert_eq!(card["n_params"], 8 * 144 + 615 * 12 + 302);
    assert_eq!(card["n_params_study"], card["n_params"], "the study's LSTM uses all it registers");
    assert_eq!(card["learning"], "learned");
    assert_eq!(card["device"], "cpu");
    assert!(card["torch"].as_str().unwrap().starts_with("2.11"), "{card}");
    let card: Value = card_of(&a, "transformer");
    assert_eq!(
        (card["n_params"].as_i64(), card["n_params_study"].as_i64()),
        (Some(6 * 144 + 615 * 12 + 302), Some(12 * 144 + 627 * 12 + 302))
    );
    assert_eq!(card["dropout"], 0.1);
    // Where the time went: measured per phase, recorded in the provenance and the log.
    let doc: Value = serde_json::from_str(&a.ok(&["show", "train[model=lstm]", "--json"])).unwrap();
    let phases = &doc["provenance"]["phases"];
    for phase in ["start", "load", "train", "validation", "write"] {
        assert!(phases[phase].as_f64().is_some_and(|s| s >= 0.0), "{phase}: {phases}");
    }
    assert!(phases["train"].as_f64().unwrap() > 0.0, "{phases}");
    let log = std::fs::read_dir(a.file("cache/logs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("train[model=transformer]"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(log.contains("phases (s): helper start"), "{log}");
    let metrics = read_epochs(&a.file("results/train/model=lstm/metrics.parquet")).unwrap();
    assert_eq!(metrics.len(), 5, "epoch 0 (untrained) and 4 epochs");
    assert!(metrics.iter().all(|m| m.val_loss.is_finite() && m.lr > 0.0));
    // The weights file is plain safetensors: header length, JSON header with our names.
    let bytes = weights(&a, "lstm");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for name in [
        "embedding.weight",
        "embedding.bias",
        "embedding_norm.weight",
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "readout.weight",
    ] {
        assert!(header.get(name).is_some(), "{name} missing from {header}");
    }
    // …and says where it comes from.
    let meta = &header["__metadata__"];
    assert_eq!(meta["wormflow.node"], "train[model=lstm]", "{meta}");
    assert_eq!(meta["wormflow.stage"], "train");
    assert_eq!(meta["wormflow.key"].as_str().unwrap().len(), 64);
    let params: Value = serde_json::from_str(meta["wormflow.params"].as_str().unwrap()).unwrap();
    assert_eq!(params["hidden"], 12);
}

#[test]
fn a_diverging_model_is_flagged_and_left_out_of_the_fit() {
    let front = common::synthetic_front(
        "diverge",
        3,
        r#"model = "sines", n_worms = 4, n_steps = 200, n_observed = 20, noise = 0.0"#,
        "n_windows = 4, window = 40",
    );
    let ws = Workspace::new(&format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
matrix = {{ lr = [0.003, 10.0] }}
params = {{ model = "linear", hidden = 8, epochs = 3, batch_size = 4, threads = 1, lr = "${{matrix.lr}}" }}

[stages.evaluate]
kind = "evaluate"
needs = ["train", "pre", "sample"]
matrix = {{ lr = [0.003, 10.0] }}
params = {{ horizon = 5, context = 20, generate_worms = 0 }}

[stages.fit]
kind = "fit"
needs = ["evaluate"]
"#
    ));
    let ev = ws.run_events(&[]);
    let diverged = ev
        .ran()
        .into_iter()
        .find(|n| n.starts_with("train[") && n.contains("lr=10"))
        .expect("the lr = 10 node ran");
    let card: wormflow_stages::summaries::ModelCard = wormflow_stages::summaries::read(
        &ws.file(&format!("{}/model.parquet", common::results_dir(&diverged))),
    )
    .unwrap();
    let card = serde_json::to_value(card).unwrap();
    assert_eq!(card["learning"], "diverged", "{card}");
    assert!(card["learning_note"].as_str().unwrap().contains("× the untrained model's"), "{card}");
    // The run's summary names it; so does the fit, which left it out.
    let summary = ev.0.iter().find(|e| e["event"] == "summary").unwrap();
    let warned: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["node"].as_str().unwrap())
        .collect();
    assert!(warned.contains(&diverged.as_str()) && warned.contains(&"fit"), "{summary}");
    let fits: Value = serde_json::from_str(&ws.read("results/fit/fits.json")).unwrap();
    let left_out = fits["left_out"].as_array().unwrap();
    assert_eq!(left_out.len(), 1, "{fits}");
    assert!(
        left_out[0]["node"].as_str().unwrap().contains("lr=10")
            && left_out[0]["learning"] == "diverged",
        "{fits}"
    );
    assert!(fits["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| !p["node"].as_str().unwrap().contains("lr=10")));
    // A rerun with everything cached still says so, in words, on the terminal.
    let out = ws.wf(&["run"]);
    let text = common::text(&out.stderr);
    assert!(text.contains("warnings") && text.contains(&format!("{diverged}: diverged")), "{text}");
}

#[test]
fn a_killed_training_run_resumes_with_finished_nodes_cached() {
    let ws = Workspace::new(&pipeline(
        "sines",
        3,
        200,
        40,
        4,
        "hidden = 24, epochs = 40, batch_size = 4",
    ));
    ws.run_events(&["sample"]);
    let mut child =
        ws.cmd(&["run", "--json", "-j", "1"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until at least one train node finished, then kill -9.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ws.file("results/train/model=baseline").exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let _ = child.wait();
    let ev = ws.run_events(&[]);
    assert!(ev.cached().contains(&"train[model=baseline]".to_string()), "{:?}", ev.cached());
    assert_eq!(ev.ran().len() + ev.cached().len(), 11);
    ws.ok(&["verify"]);
}

#[test]
fn bad_training_input_is_explained() {
    let base = pipeline("sines", 2, 200, 40, 2, "hidden = 8, epochs = 1");
    let ws = Workspace::new(&base.replace("model = \"${matrix.model}\"", "model = \"lstmm\""));
    let err = ws.bad(&["run"]);
    assert!(err.contains("params.model must be one of baseline, linear"), "{err}");
    let ws = Workspace::new(&base.replace("hidden = 8", "hidden = -4"));
    let err = ws.bad(&["run"]);
    assert!(err.contains("params.hidden must be ≥ 1"), "{err}");

    // CUDA requested on a machine without it (skipped where a GPU exists).
    let ws = Workspace::new(&base.replace("threads = 1", "threads = 1, device = \"cuda\""));
    let out = ws.wf(&["run", "--json", "train[model=lstm]"]);
    let ev = Events::parse(&common::text(&out.stdout));
    if !ev.nodes("failed").is_empty() {
        let err = ev.0.iter().find(|e| e["event"] == "failed").unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(err.contains("no CUDA device is available"), "{err}");
    }

    // An empty window table.
    let ws = Workspace::new("");
    wormflow_stages::windows::write_windows(&ws.file("windows.parquet"), &[], &[]).unwrap();
    ws.write(
        "pipeline.toml",
        &base.replace(
            "[stages.train]\nkind = \"train\"\nneeds = [\"pre\", \"sample\"]",
            "[stages.empty]\nkind = \"download\"\nparams = { files = [{ url = \"windows.parquet\" }] }\n[stages.train]\nkind = \"train\"\nneeds = [\"pre\", \"empty\"]",
        ),
    );
    let out = ws.wf(&["run", "--json", "train[model=lstm]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::text(&out.stdout).contains("has no \\\"train\\\" windows"),
        "{}",
        common::text(&out.stdout)
    );
}

#[test]
fn an_all_masked_worm_is_refused() {
    // Every labelled neuron of the worm is constant, so preprocess masks them all.
    let ws = Workspace::new("");
    let mut b = hdf5_pure::FileBuilder::new();
    let t: Vec<f64> = (0..100).map(|k| k as f64 * 0.5).collect();
    b.create_dataset("traces").with_f64_data(&vec![1.0; 200]).with_shape(&[100, 2]);
    b.create_dataset("time").with_f64_data(&t);
    b.create_dataset("neuron_names").with_vlen_strings(&["AVAL", "AVAR"]);
    b.write(ws.file("flat.h5")).unwrap();
    ws.write(
        "pipeline.toml",
        r#"[pipeline]
name = "masked"
[stages.get]
kind = "download"
params = { files = [{ url = "flat.h5" }] }
[stages.std]
kind = "standardize"
needs = ["get"]
params = { format = "generic-h5" }
[stages.pre]
kind = "preprocess"
needs = ["std"]
params = { smooth_alpha = 1.0, resample_dt = 0 }
[stages.split]
kind = "split"
needs = ["pre"]
[stages.sample]
kind = "sample"
needs = ["split"]
params = { n_windows = 2, window = 20 }
[stages.train]
kind = "train"
needs = ["pre", "sample"]
params = { model = "lstm", hidden = 4, epochs = 1 }
"#,
    );
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = common::text(&out.stdout);
    assert!(stdout.contains("has no recorded neuron (all masked)"), "{stdout}");
}

/// The helper that ran a node, from its record's provenance: (pid, nodes it had served).
fn helper_of(ws: &Workspace, node: &str) -> (i64, i64) {
    let doc: Value = serde_json::from_str(&ws.ok(&["show", node, "--json"])).unwrap();
    let h = &doc["provenance"]["helper"];
    (h["pid"].as_i64().unwrap(), h["nodes_served"].as_i64().unwrap())
}

/// With -j 1 one `wormflow-torch` process serves every train node of the run, one after
/// another: libtorch starts once, not once per node. A node that fails inside the helper
/// does not change the next node's result (same bytes as that node trained alone), and
/// the helper is gone when the run ends.
#[test]
fn one_helper_serves_node_after_node_and_a_failure_does_not_leak() {
    let p = pipeline("sines", 3, 200, 40, 4, "hidden = 8, epochs = 2, batch_size = 4");
    // The cuda:7 nodes come first (axes by name, the last varying fastest) and fail in the
    // helper (no CUDA here); the cpu ones after them must come out as if trained alone.
    let failing = p.replace(
        "params = { model = \"${matrix.model}\"",
        "params = { device = \"${matrix.device}\", model = \"${matrix.model}\"",
    );
    let failing = failing.replace(
        "matrix = { model = [\"baseline\", \"lstm\", \"ctrnn\", \"linear\", \"feedforward\", \"transformer\", \"attention\"] }",
        "matrix = { model = [\"lstm\", \"ctrnn\"], device = [\"cuda:7\", \"cpu\"] }",
    );
    let ws = Workspace::new(&failing);
    let out = ws.wf(&["run", "-j", "1", "-k"]);
    let all = format!("{}{}", common::text(&out.stdout), common::text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("no CUDA device is available"), "{all}");
    let served: Vec<(i64, i64)> = ["lstm", "ctrnn"]
        .iter()
        .map(|m| helper_of(&ws, &format!("train[device=cpu,model={m}]")))
        .collect();
    assert_eq!(served[0].0, served[1].0, "one helper process for both: {served:?}");
    assert!(served[1].1 >= 2, "the second node was not its first: {served:?}");
    let alone = Workspace::new(&p);
    alone.run_events(&["train[model=ctrnn]"]);
    // The tensors' bytes (the header's metadata names the node, which differs).
    let weights = |ws: &Workspace, dir: &str| {
        let bytes = std::fs::read(ws.file(&format!("{dir}/weights.safetensors"))).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + n..].to_vec()
    };
    assert!(
        weights(&ws, "results/train/device=cpu/model=ctrnn")
            == weights(&alone, "results/train/model=ctrnn"),
        "a node served after others (one of them failing) equals the node trained alone"
    );
    let pid = served[0].0 as i32;
    assert!(!common::alive(pid), "the helper {pid} is gone after the run");
}

/// SIGTERM while the persistent helper trains the third node: the run exits 143 within
/// seconds, stores nothing of that node (the two before it are stored), and leaves no
/// process behind. The three are one group (one helper job; on a CPU each LSTM is its own
/// stack): a member is stored as soon as it finishes, not when the group does.
#[test]
fn sigterm_during_the_third_node_stops_the_helper() {
    let front = common::synthetic_front(
        "third",
        3,
        r#"model = "sines", n_worms = 3, n_steps = 200, n_observed = 20"#,
        "n_windows = 4, window = 40",
    );
    // Three nodes in this order: 1 epoch, 2 epochs, then one that would take minutes.
    let ws = Workspace::new(&format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
matrix = {{ epochs = [1, 2, 5000] }}
params = {{ model = "lstm", hidden = 64, epochs = "${{matrix.epochs}}", early_stopping = 5000, batch_size = 2, threads = 1 }}
"#
    ));
    ws.run_events(&["sample"]);
    let common::JsonRun { mut child, pid, mut events } = common::spawn_json_run(&ws);
    // The first two stored, then the third training.
    let mut done = Vec::new();
    for event in events.by_ref() {
        let node = event["node"].as_str().unwrap_or("").to_string();
        if event["event"] == "done" && node.starts_with("train") {
            done.push(node);
        } else if event["event"] == "progress" && node == "train[epochs=5000]" && done.len() == 2 {
            break;
        }
    }
    assert_eq!(done, ["train[epochs=1]", "train[epochs=2]"]);
    let helpers = common::helpers_of(pid);
    assert_eq!(helpers.len(), 1, "one helper serves the run: {helpers:?}");
    let sent = std::time::Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in events.by_ref() {}
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < std::time::Duration::from_secs(20), "running 20 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(sent.elapsed() < std::time::Duration::from_secs(5), "{:?}", sent.elapsed());
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(!ws.wf(&["show", "train[epochs=5000]"]).status.success(), "the third was stored");
    ws.ok(&["show", "train[epochs=1]"]);
    ws.ok(&["show", "train[epochs=2]"]);
    let left: Vec<i32> =
        helpers.into_iter().filter(|p| unsafe { libc::kill(*p, 0) } == 0).collect();
    assert!(left.is_empty(), "helper processes left: {left:?}");
}

/// Train nodes that share architecture and size train as one stack of models (`--group-max`).
/// A pipeline whose train nodes differ in seed, learning rate and data draw (two samples).
fn grouping_pipeline(train: &str) -> String {
    format!(
        r#"[pipeline]
name = "grouping"
seed = 3
[stages.synth]
kind = "synthesize"
params = {{ model = "sines", n_worms = 6, n_steps = 200, n_observed = 12, noise = 0.0 }}
[stages.pre]
kind = "preprocess"
needs = ["synth"]
params = {{ smooth_alpha = 1.0, resample_dt = 0 }}
[stages.split]
kind = "split"
needs = ["pre"]
[stages.sample]
kind = "sample"
needs = ["split"]
matrix = {{ draw = [1, 2] }}
params = {{ n_worms = 3, n_windows = 6, window = 20, seed = "${{matrix.draw}}" }}
[stages.train]
kind = "train"
needs = ["pre", "sample"]
{train}
"#
    )
}

/// Every train node's per-epoch (train, val) losses, by node id.
fn losses_by_node(ws: &Workspace) -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = std::collections::BTreeMap::new();
    for line in ws.ok(&["status", "--json"]).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let id = row["node"].as_str().unwrap();
        if !id.starts_with("train[") {
            continue;
        }
        let dir = ws.file(&common::results_dir(id));
        let epochs = read_epochs(&dir.join("metrics.parquet")).unwrap();
        out.insert(id.to_string(), epochs.iter().map(|e| (e.train_loss, e.val_loss)).collect());
    }
    out
}

/// The relative difference of two losses.
fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-30)
}

#[test]
fn grouped_training_matches_training_alone_for_every_architecture() {
    let p = grouping_pipeline(
        r#"matrix = { model = ["linear", "feedforward", "ctrnn", "lstm", "transformer", "attention"], draw = [1, 2], seed = [1, 2], lr = [0.001, 0.003] }
params = { model = "${matrix.model}", hidden = 8, seed = "${matrix.seed}", lr = "${matrix.lr}", epochs = 5, early_stopping = 100, batch_size = 4, threads = 1, device = "cpu" }"#,
    );
    let (alone, grouped, again) = (Workspace::new(&p), Workspace::new(&p), Workspace::new(&p));
    alone.ok(&["run", "-j", "2", "--group-max", "1"]);
    grouped.ok(&["run", "-j", "1"]);
    // Two workers: each takes half of a group of 8 (4 + 4), none idles.
    again.ok(&["run", "-j", "2"]);
    let (a, g) = (losses_by_node(&alone), losses_by_node(&grouped));
    assert_eq!(a.len(), 48);
    // Tolerance: rounding only (a batched matmul of 8 may sum in another order than one of
    // 1); measured worst case over these 48 nodes × 6 epochs is printed.
    let mut worst = 0f64;
    for (node, losses) in &a {
        for (e, (x, y)) in losses.iter().zip(&g[node]).enumerate() {
            let d = relative(x.0, y.0).max(relative(x.1, y.1));
            assert!(d < 1e-5, "{node} epoch {e}: alone {x:?}, grouped {y:?} (relative {d:.2e})");
            worst = worst.max(d);
        }
    }
    println!("grouped vs alone: worst relative difference of a per-epoch loss {worst:.2e}");
    // Members really differ: no two nodes of an architecture have the same losses.
    for model in ["linear", "feedforward", "ctrnn", "lstm", "transformer", "attention"] {
        let of: Vec<&Vec<(f64, f64)>> = g
            .iter()
            .filter(|(n, _)| n.contains(&format!("model={model}")))
            .map(|(_, l)| l)
            .collect();
        assert_eq!(of.len(), 8);
        for i in 0..of.len() {
            for j in i + 1..of.len() {
                assert_ne!(of[i][1..], of[j][1..], "{model}: two members trained alike");
            }
        }
    }
    // Provenance says who trained together.
    let show = |ws: &Workspace, node: &str| -> Value {
        serde_json::from_str(&ws.ok(&["show", node, "--json"])).unwrap()
    };
    // group.job: the nodes of the helper's job; group.size: those in this node's stack.
    let group = |ws: &Workspace, node: &str| -> (usize, i64) {
        let g = &show(ws, node)["provenance"]["group"];
        (g["job"].as_array().unwrap().len(), g["size"].as_i64().unwrap())
    };
    let node = "train[model=feedforward,draw=1,seed=1,lr=0.001]";
    assert_eq!(group(&grouped, node), (8, 8));
    assert_eq!(group(&alone, node), (1, 1));
    assert_eq!(group(&again, node), (4, 4));
    // A CPU LSTM trains in a stack of one (the fused kernel beats a stack there; see
    // `cpu_stack_limit`), still in the job of 8 that loaded libtorch and the data once.
    assert_eq!(group(&grouped, "train[model=lstm,draw=1,seed=1,lr=0.001]"), (8, 1));
    // Same pipeline, same grouping, same seeds ⇒ same bytes; another grouping: same
    // losses within the tolerance (checked above for group-max 1 vs 16).
    let twice = Workspace::new(&p);
    twice.ok(&["run", "-j", "1"]);
    for id in a.keys() {
        let file = format!("{}/weights.safetensors", common::results_dir(id));
        assert!(
            std::fs::read(grouped.file(&file)).unwrap()
                == std::fs::read(twice.file(&file)).unwrap(),
            "{id}: the same grouped run twice gave other weights"
        );
    }
    for (node, losses) in losses_by_node(&again) {
        for (x, y) in losses.iter().zip(&a[&node]) {
            assert!(relative(x.1, y.1) < 1e-5, "{node}: group of 4 vs alone");
        }
    }
}

#[test]
fn a_diverging_member_of_a_group_is_flagged_alone() {
    let p = grouping_pipeline(
        r#"matrix = { lr = [0.001, 1000.0, 0.002] }
params = { model = "lstm", hidden = 8, lr = "${matrix.lr}", epochs = 6, batch_size = 4, threads = 1, device = "cpu" }"#,
    )
    .replace("matrix = { draw = [1, 2] }\n", "")
    .replace("\"${matrix.draw}\"", "1");
    let ws = Workspace::new(&p);
    let alone = Workspace::new(&p);
    ws.ok(&["run"]);
    alone.ok(&["run", "--group-max", "1"]);
    let learning = |ws: &Workspace, lr: &str| -> String {
        let card = ws.file(&format!("results/train/lr={lr}/model.parquet"));
        let card: wormflow_stages::summaries::ModelCard =
            wormflow_stages::summaries::read(&card).unwrap();
        card.learning.as_str().to_string()
    };
    assert_eq!(learning(&ws, "1000"), "diverged");
    for lr in ["0.001", "0.002"] {
        assert_eq!(learning(&ws, lr), "learned", "lr {lr}");
        let file = format!("results/train/lr={lr}/metrics.parquet");
        let (x, y) =
            (read_epochs(&ws.file(&file)).unwrap(), read_epochs(&alone.file(&file)).unwrap());
        assert_eq!(x.len(), y.len(), "lr {lr}: as many epochs as alone");
        for (a, b) in x.iter().zip(&y) {
            assert!(relative(a.val_loss, b.val_loss) < 1e-5, "lr {lr}: {a:?} vs {b:?}");
        }
    }
}

/// One Transformer node (dropout draws every step) long enough to interrupt, saving a
/// checkpoint after every epoch.
fn resumable(epochs: u64, train: &str) -> String {
    let front = common::synthetic_front(
        "resume",
        5,
        r#"model = "sines", n_worms = 3, n_steps = 300, n_observed = 12"#,
        "n_windows = 24, window = 40",
    );
    format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
params = {{ model = "transformer", hidden = 16, epochs = {epochs}, early_stopping = 1000, batch_size = 2, threads = 1, device = "cpu", checkpoint_every = 1{train} }}
"#
    )
}

/// Start `run --json`, wait for train's `epoch` ≥ `after`, send `signal`; the run's exit
/// status and train's key.
fn interrupt_training(
    ws: &Workspace,
    after: u64,
    signal: i32,
) -> (std::process::ExitStatus, String) {
    ws.run_events(&["sample"]);
    let common::JsonRun { mut child, pid, events } = common::spawn_json_run(ws);
    let mut key = String::new();
    for event in events {
        if event["node"] != "train" {
            continue;
        }
        match event["event"].as_str() {
            Some("start") => key = event["key"].as_str().unwrap().to_string(),
            Some("progress") if event["epoch"].as_u64().is_some_and(|e| e >= after) => break,
            Some("done") => panic!("train finished before it could be interrupted"),
            _ => {}
        }
    }
    let helpers = common::helpers_of(pid);
    unsafe { libc::kill(pid, signal) };
    let status = child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while helpers.iter().any(|&h| common::alive(h)) {
        assert!(std::time::Instant::now() < deadline, "helper {helpers:?} outlived the run");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (status, key)
}

/// The rerun's notices about train (`resumed from epoch N`, discarded checkpoints).
fn notices(events: &str) -> Vec<String> {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "progress" && e["notice"] == true && e["node"] == "train")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// Per epoch: epoch, and the bits of train loss, validation loss and learning rate.
type EpochBits = Vec<(i64, u64, u64, u64)>;

/// Weights, per-epoch losses and learning rates (not the seconds), and the model card.
fn training_result(ws: &Workspace) -> (Vec<u8>, EpochBits, Value) {
    let dir = ws.file("results/train");
    let epochs = read_epochs(&dir.join("metrics.parquet")).unwrap();
    let card: wormflow_stages::summaries::ModelCard =
        wormflow_stages::summaries::read(&dir.join("model.parquet")).unwrap();
    (
        std::fs::read(dir.join("weights.safetensors")).unwrap(),
        epochs
            .iter()
            .map(|e| (e.epoch, e.train_loss.to_bits(), e.val_loss.to_bits(), e.lr.to_bits()))
            .collect(),
        serde_json::to_value(card).unwrap(),
    )
}

/// kill -9 and SIGTERM mid-training: the rerun resumes from the last checkpoint, says so,
/// and ends with the same bytes as a run never stopped; the checkpoint is gone once the
/// node is stored. A damaged checkpoint is discarded with a warning: the node starts from
/// epoch 0 and still ends with the same bytes.
#[test]
fn an_interrupted_node_resumes_from_its_checkpoint_to_the_same_bytes() {
    let p = resumable(30, "");
    let reference = Workspace::new(&p);
    reference.ok(&["run"]);
    let (weights, losses, card) = training_result(&reference);
    assert_eq!(card["resumed_from_epoch"], 0);
    for (signal, exit) in [(libc::SIGKILL, None), (libc::SIGTERM, Some(143))] {
        let ws = Workspace::new(&p);
        let (status, key) = interrupt_training(&ws, 4, signal);
        assert_eq!(status.code(), exit, "{status}");
        let saved = ws.file(&format!("cache/checkpoints/{key}"));
        assert!(saved.is_dir(), "no checkpoint at {}", saved.display());
        let out = ws.ok(&["run", "--json"]);
        let said = notices(&out);
        let resumed: u64 = said
            .iter()
            .find_map(|m| m.strip_prefix("resumed from epoch ")?.parse().ok())
            .unwrap_or_else(|| panic!("no resume notice: {said:?}"));
        assert!(resumed >= 3, "resumed from epoch {resumed}, the run was past epoch 4");
        let (w, l, c) = training_result(&ws);
        assert_eq!(c["resumed_from_epoch"], resumed);
        assert!(w == weights, "signal {signal}: weights differ from the uninterrupted run");
        assert_eq!(l, losses, "signal {signal}: per-epoch losses differ");
        assert!(!saved.exists(), "the checkpoint outlived the stored node");
        ws.ok(&["verify"]);
    }
    // A flipped byte in the checkpoint: discarded, never trusted.
    let ws = Workspace::new(&p);
    let (_, key) = interrupt_training(&ws, 4, libc::SIGTERM);
    let generation = std::fs::read_dir(ws.file(&format!("cache/checkpoints/{key}")))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .expect("a checkpoint generation");
    let state = generation.join("state.safetensors");
    let mut bytes = std::fs::read(&state).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x40;
    std::fs::write(&state, bytes).unwrap();
    let verify = ws.wf(&["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(common::text(&verify.stdout).contains("damaged checkpoint"), "{verify:?}");
    let said = notices(&ws.ok(&["run", "--json"]));
    assert!(
        said.iter()
            .any(|m| m.starts_with("warning: checkpoint") && m.contains("starting from epoch 0")),
        "{said:?}"
    );
    let (w, l, c) = training_result(&ws);
    assert_eq!(c["resumed_from_epoch"], 0);
    assert!(w == weights && l == losses, "a fresh start after a damaged checkpoint differs");
}

/// Precision is in the key and the model card; TF32 on a CPU is refused before anything runs.
#[test]
fn precision_is_a_switch_in_the_key_and_tf32_needs_cuda() {
    let ws = Workspace::new(&resumable(3, ""));
    ws.ok(&["run"]);
    let (_, fp32, card) = training_result(&ws);
    assert_eq!(card["precision"], "fp32");
    ws.write("pipeline.toml", &resumable(3, ", precision = \"bf16\""));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["train"], "bf16 is another key");
    let (_, bf16, card) = training_result(&ws);
    assert_eq!(card["precision"], "bf16");
    // bf16 matmuls round to 8 bits of mantissa: other losses, close to fp32's.
    let val = |l: &[(i64, u64, u64, u64)]| f64::from_bits(l.last().unwrap().2);
    assert_ne!(val(&fp32), val(&bf16));
    assert!(relative(val(&fp32), val(&bf16)) < 0.05, "{} vs {}", val(&fp32), val(&bf16));
    ws.write("pipeline.toml", &resumable(3, ", precision = \"tf32\""));
    let text = ws.bad(&["run"]);
    assert!(text.contains("tf32") && text.contains("CUDA"), "{text}");
}

/// The training objective is a switch in the key and the model card: each is another node
/// that validates with its own loss — on the untrained model (epoch 0, the same weights
/// whatever the loss) the MAE is at most √MSE (Jensen) and Huber (δ = 1) at most MSE / 2;
/// a misspelt loss is refused before anything runs.
#[test]
fn the_loss_is_a_switch_in_the_key_and_the_model_card() {
    let ws = Workspace::new(&resumable(2, ""));
    ws.ok(&["run"]);
    let (_, mse, card) = training_result(&ws);
    assert_eq!(card["loss"], "mse");
    let first_val = |l: &[(i64, u64, u64, u64)]| f64::from_bits(l[0].2);
    type Bound = fn(f64, f64) -> bool;
    let bounds: [(&str, Bound); 2] = [
        ("mae", |v, m| v <= m.sqrt() * (1.0 + 1e-6) && v != m),
        ("huber", |v, m| v <= 0.5 * m * (1.0 + 1e-6) && v != m),
    ];
    for (loss, check) in bounds {
        ws.write("pipeline.toml", &resumable(2, &format!(", loss = \"{loss}\"")));
        let ev = ws.run_events(&[]);
        assert_eq!(ev.ran(), ["train"], "{loss} is another key");
        let (_, losses, card) = training_result(&ws);
        assert_eq!(card["loss"], loss);
        let (v, m) = (first_val(&losses), first_val(&mse));
        assert!(check(v, m), "{loss}: first validation loss {v} vs MSE {m}");
    }
    ws.write("pipeline.toml", &resumable(2, ", loss = \"l2\""));
    let text = ws.bad(&["run"]);
    assert!(text.contains("params.loss") && text.contains("huber"), "{text}");
}
