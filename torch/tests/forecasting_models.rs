//! NLinear, DLinear and TSMixer against the forecasting literature's classes (re-implemented
//! in PyTorch in forecasting_models.py from POCO's models/single_session_models.py,
//! Autoformer's `series_decomp` and POCO's tsmixer.py), applied window by window: the same
//! weights, the same batch, the same next-step predictions at every forecast position
//! (within 1e-5 of the output's scale, the reference in float64), and the same parameter
//! counts. Needs the torch venv's python, as study_models.rs.

mod common;

use serde_json::json;
use tch::{nn, Device, Kind, Tensor};
use wormflow_torch::models::{n_params, Counting, Options, FORECAST_MODELS};
use wormflow_torch::tensors::predict;
use wormflow_torch::train::seeded_build;

#[test]
fn forecasting_models_compute_what_the_literatures_classes_compute() {
    let dir = tempfile::tempdir().unwrap();
    // A lookback of 12 (DLinear's trend window 7); windows of 20 steps, so the first 11
    // positions see the padded start (TSMixer: its input) and the rest full windows.
    let lookback = 12;
    tch::manual_seed(11);
    let x = Tensor::randn([3, 20, 302], (Kind::Float, Device::Cpu));
    let mask = Tensor::rand([3, 1, 302], (Kind::Float, Device::Cpu)).gt(0.3).to_kind(Kind::Float);
    for (i, m) in FORECAST_MODELS.iter().enumerate() {
        let vs = nn::VarStore::new(Device::Cpu);
        let options = Options { hidden: 16, residual: false, dropout: 0.0, lookback };
        let model = seeded_build(m, options, &vs, i as u64).unwrap();
        // DLinear starts with equal maps, where the trend split changes nothing: move every
        // weight off its initial value so the check sees each term.
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.3));
            }
        });
        let out = tch::no_grad(|| predict(&*model, &x, &mask, false));
        common::write_case(&dir.path().join(format!("{m}.safetensors")), &vs, &x, &mask, out);
    }
    // (hidden, lookback, count): NLinear and DLinear ignore the hidden size.
    let mut counts = json!({"lookback": lookback, "hidden": 16, "table": {}});
    for m in FORECAST_MODELS {
        let rows: Vec<[i64; 3]> = [(16, 4), (16, 12), (64, 48)]
            .iter()
            .map(|&(h, l)| [h, l, n_params(m, h, l, Counting::Used).unwrap()])
            .collect();
        counts["table"][m] = json!(rows);
    }
    std::fs::write(dir.path().join("counts.json"), counts.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/forecasting_models.py");
    let stdout = common::run_check(script, dir.path());
    assert_eq!(stdout.matches("|wormflow - reference| / scale").count(), FORECAST_MODELS.len());
}
