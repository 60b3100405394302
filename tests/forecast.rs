//! Multi-step forecasting on a held-out test part (evaluate's `forecast_part`), checked
//! against what the data allow: on Sines a trained sequence model beats copying the last
//! context step at every horizon; on a Random Walk — whose best forecast *is* the last
//! step — nothing beats it beyond noise; the Baseline (copy-last itself) scores exactly 0.
//! The forecasting literature's switches: a lookback model (NLinear) and a k-step rollout
//! loss (`horizon_train`) train, forecast and say so in their cards.

mod common;

use common::Workspace;
use wormflow_stages::parquet_io::read_rows;
use wormflow_stages::summaries::{ForecastSkill, ModelCard};

fn pipeline(synth: &str, residual: bool) -> String {
    pipeline_training(
        synth,
        r#"matrix = { model = ["baseline", "linear", "lstm"] }"#,
        &format!("hidden = 32, residual = {residual}"),
    )
}

/// The synthetic front, a train stage over `matrix` with `params` (beside the shared
/// ones), and an evaluate stage forecasting 8 steps from 24 on the test part.
fn pipeline_training(synth: &str, matrix: &str, params: &str) -> String {
    let front = common::synthetic_front_split(
        "forecast",
        2,
        &format!("{synth}, n_worms = 6, n_steps = 600, n_observed = 10"),
        "parts = [0.6, 0.2, 0.2], segment = 300",
        r#"n_windows = 24, window = 24, mode = "random""#,
    );
    format!(
        r#"{front}[stages.train]
kind = "train"
needs = ["pre", "sample"]
{matrix}
params = {{ model = "${{matrix.model}}", {params}, epochs = 40, early_stopping = 40, batch_size = 16, lr = 3e-3, threads = 1, device = "cpu" }}
[stages.evaluate]
kind = "evaluate"
needs = ["train", "pre", "sample", "split"]
matrix_from = "train"
params = {{ horizon = 8, context = 24, generate_worms = 0, forecast_part = "test", forecast_context = 24, forecast_horizon = 8, device = "cpu" }}
"#
    )
}

/// Skill against copy-last for steps 1…8, all worms pooled; `node` is the evaluate node's
/// results folder below results/evaluate (its matrix values).
fn skill(ws: &Workspace, node: &str) -> Vec<f64> {
    let model = node;
    let rows: Vec<ForecastSkill> =
        read_rows(&ws.file(&format!("results/evaluate/{node}/forecast_skill.parquet"))).unwrap();
    assert!(rows.iter().all(|r| r.part == "test"), "{rows:?}");
    let s: Vec<f64> = rows.iter().filter(|r| r.dataset == "all").map(|r| r.skill_vs_copy).collect();
    eprintln!("{model}: skill against copy-last by step {s:.3?}");
    s
}

#[test]
fn sines_are_forecast_better_than_copy_last_and_a_random_walk_is_not() {
    let sines = Workspace::new(&pipeline(r#"model = "sines", noise = 0.0"#, true));
    sines.ok(&["run", "-q"]);
    assert_eq!(skill(&sines, "model=baseline"), vec![0.0; 8], "copy-last against itself");
    let lstm = skill(&sines, "model=lstm");
    assert!(lstm.iter().all(|&s| s > 0.0), "LSTM on Sines, skill by step: {lstm:?}");

    // The study's architecture (not residual, which starts at copy-last and, on a random
    // walk, stays there): trained models, none better than copy-last beyond noise.
    let walk = Workspace::new(&pipeline(r#"model = "random_walk""#, false));
    walk.ok(&["run", "-q"]);
    for model in ["linear", "lstm"] {
        let s = skill(&walk, &format!("model={model}"));
        assert!(s.iter().all(|&s| s < 0.05), "{model} on a Random Walk, skill by step: {s:?}");
    }
}

#[test]
fn a_lookback_model_and_a_rollout_loss_train_forecast_and_say_so() {
    let matrix = r#"matrix = { model = ["nlinear"], horizon_train = [1, 4] }"#;
    let params = "lookback = 12, horizon_train = \"${matrix.horizon_train}\", residual = false";
    let text = pipeline_training(r#"model = "sines", noise = 0.0"#, matrix, params);
    let ws = Workspace::new(&text);
    ws.ok(&["run", "-q"]);
    for k in [1, 4] {
        let node = format!("horizon_train={k}/model=nlinear");
        let cards: Vec<ModelCard> =
            read_rows(&ws.file(&format!("results/train/{node}/model.parquet"))).unwrap();
        let card = &cards[0];
        assert_eq!(
            (card.architecture.as_str(), card.horizon_train, card.lookback),
            ("nlinear", k, 12)
        );
        // A linear map over 12 steps can continue a sine exactly.
        let s = skill(&ws, &node);
        assert!(s.iter().all(|&s| s > 0.0), "{node} on Sines, skill by step: {s:?}");
    }
    // A rollout longer than the window leaves no context: the node fails and says the fix.
    ws.write("pipeline.toml", &text.replace("horizon_train = [1, 4]", "horizon_train = [30]"));
    let out = ws.run_fails();
    assert!(
        out.contains("params.horizon_train = 30 in windows of 25 steps")
            && out.contains("nlinear needs 12 (its lookback = 12)")
            && out.contains("raise the sample's window to at least 41"),
        "{out}"
    );
}

/// The forecasting switches are checked when the pipeline is planned, by name, before
/// anything runs: a misspelt part, a lookback for a model that sees all of the past, a
/// residual NLinear, a rollout of no steps.
#[test]
fn forecasting_params_are_refused_at_plan_time_by_name() {
    let good = pipeline(r#"model = "sines", noise = 0.0"#, true);
    let ws = Workspace::new(&good);
    for (from, to, says) in [
        (r#"forecast_part = "test""#, r#"forecast_part = "tset""#, "params.forecast_part must be"),
        ("hidden = 32,", "hidden = 32, lookback = 12,", "params.lookback = 12 applies to"),
        (
            r#"matrix = { model = ["baseline", "linear", "lstm"] }"#,
            r#"matrix = { model = ["nlinear"] }"#,
            "params.residual = true does not apply to nlinear",
        ),
        ("hidden = 32,", "hidden = 32, horizon_train = 0,", "params.horizon_train must be ≥ 1"),
    ] {
        assert!(good.contains(from), "{from}");
        ws.write("pipeline.toml", &good.replace(from, to));
        let err = ws.bad(&["run", "-n"]);
        assert!(err.contains(says), "{to}: {err}");
        assert_eq!(ws.object_count(), 0, "nothing ran for {to}");
    }
}
