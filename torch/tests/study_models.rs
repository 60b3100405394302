//! wormflow's models against the study's own classes (re-implemented in PyTorch in
//! study_models.py): the same weights, the same batch, the same outputs in eval mode (within
//! 1e-5 of the output's scale, the reference in float64), and the study's parameter counts
//! at every size of the paper's Table II.
//! Needs the torch venv's python (`$VIRTUAL_ENV/bin/python`, as `make test` sets it up).

mod common;

use serde_json::json;
use tch::{nn, Device, Kind, Tensor};
use wormflow_torch::models::{n_params, Counting, Options, STUDY_MODELS as MODELS};
use wormflow_torch::tensors::predict;
use wormflow_torch::train::seeded_build;

#[test]
fn models_compute_what_the_studys_classes_compute() {
    let dir = tempfile::tempdir().unwrap();
    // H = 10: five heads for the Transformer and Attention; Linear has the study's 302.
    let hidden = |m: &str| match m {
        "baseline" => 0,
        "linear" => 302,
        _ => 10,
    };
    tch::manual_seed(7);
    let x = Tensor::randn([3, 9, 302], (Kind::Float, Device::Cpu));
    let mask = Tensor::rand([3, 1, 302], (Kind::Float, Device::Cpu)).gt(0.3).to_kind(Kind::Float);
    for (i, m) in MODELS.iter().enumerate() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = seeded_build(
            m,
            Options { hidden: hidden(m), residual: false, dropout: 0.1, lookback: 0 },
            &vs,
            i as u64,
        )
        .unwrap();
        let out = tch::no_grad(|| predict(&*model, &x, &mask, false));
        common::write_case(&dir.path().join(format!("{m}.safetensors")), &vs, &x, &mask, out);
    }
    // The paper's Table II sizes (and the study's fixed widths of Linear and the Baseline).
    let table = [
        ("baseline", 0),
        ("linear", 302),
        ("feedforward", 516),
        ("ctrnn", 408),
        ("lstm", 234),
        ("transformer", 196),
        ("attention", 312),
    ];
    let mut counts = json!({"hidden": {}, "table": {}});
    for m in MODELS {
        counts["hidden"][m] = json!(hidden(m));
    }
    for (m, h) in table {
        counts["table"][m] = json!([[h, n_params(m, h, 0, Counting::Study).unwrap()]]);
    }
    std::fs::write(dir.path().join("counts.json"), counts.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/study_models.py");
    let stdout = common::run_check(script, dir.path());
    assert_eq!(stdout.matches("|wormflow - study| / scale").count(), MODELS.len(), "{stdout}");
}
