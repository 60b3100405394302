//! Multi-step forecasting on a held-out test part (evaluate's `forecast_part`), checked
//! against what the data allow: on Sines a trained sequence model beats copying the last
//! context step at every horizon; on a Random Walk — whose best forecast *is* the last
//! step — nothing beats it beyond noise; the Baseline (copy-last itself) scores exactly 0.

mod common;

use common::Workspace;
use wormflow_stages::parquet_io::read_rows;
use wormflow_stages::summaries::ForecastSkill;

fn pipeline(synth: &str, residual: bool) -> String {
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
matrix = {{ model = ["baseline", "linear", "lstm"] }}
params = {{ model = "${{matrix.model}}", hidden = 32, epochs = 40, early_stopping = 40, batch_size = 16, lr = 3e-3, residual = {residual}, threads = 1, device = "cpu" }}
[stages.evaluate]
kind = "evaluate"
needs = ["train", "pre", "sample", "split"]
matrix_from = "train"
params = {{ horizon = 8, context = 24, generate_worms = 0, forecast_part = "test", forecast_context = 24, forecast_horizon = 8, device = "cpu" }}
"#
    )
}

/// Skill against copy-last for steps 1…8, all worms pooled.
fn skill(ws: &Workspace, model: &str) -> Vec<f64> {
    let rows: Vec<ForecastSkill> =
        read_rows(&ws.file(&format!("results/evaluate/model={model}/forecast_skill.parquet")))
            .unwrap();
    assert!(rows.iter().all(|r| r.part == "test"), "{rows:?}");
    let s: Vec<f64> = rows.iter().filter(|r| r.dataset == "all").map(|r| r.skill_vs_copy).collect();
    eprintln!("{model}: skill against copy-last by step {s:.3?}");
    s
}

#[test]
fn sines_are_forecast_better_than_copy_last_and_a_random_walk_is_not() {
    let sines = Workspace::new(&pipeline(r#"model = "sines", noise = 0.0"#, true));
    sines.ok(&["run", "-q"]);
    assert_eq!(skill(&sines, "baseline"), vec![0.0; 8], "copy-last against itself");
    let lstm = skill(&sines, "lstm");
    assert!(lstm.iter().all(|&s| s > 0.0), "LSTM on Sines, skill by step: {lstm:?}");

    // The study's architecture (not residual, which starts at copy-last and, on a random
    // walk, stays there): trained models, none better than copy-last beyond noise.
    let walk = Workspace::new(&pipeline(r#"model = "random_walk""#, false));
    walk.ok(&["run", "-q"]);
    for model in ["linear", "lstm"] {
        let s = skill(&walk, model);
        assert!(s.iter().all(|&s| s < 0.05), "{model} on a Random Walk, skill by step: {s:?}");
    }
}
