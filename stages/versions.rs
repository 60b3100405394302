// Which source files make up each stage kind's code version (see build.rs). Shared with
// tests/versions.rs, which checks that every source file is listed.

/// (kind, files or directories it depends on)
const KINDS: &[(&str, &[&str])] = &[
    ("download", &["src/download.rs"]),
    ("synthesize", &["src/synthesize.rs", "src/table.rs", "src/parquet_io.rs", "src/neurons.rs", "src/rng.rs", "../data/neurons.csv"]),
    ("standardize", &["src/standardize", "src/table.rs", "src/parquet_io.rs", "src/neurons.rs", "src/h5.rs", "../data/neurons.csv"]),
    ("preprocess", &["src/preprocess.rs", "src/table.rs", "src/parquet_io.rs", "src/neurons.rs"]),
    ("split", &["src/split.rs", "src/windows.rs", "src/table.rs", "src/parquet_io.rs"]),
    ("sample", &["src/sample.rs", "src/windows.rs", "src/parquet_io.rs", "src/rng.rs", "src/summaries.rs", "src/metrics.rs", "src/model_size.rs"]),
    ("evaluate", &["../torch/src/evaluate.rs", "src/torch_stages.rs", "src/model_size.rs", "../torch/src/models", "../torch/src/tensors.rs", "src/table.rs", "src/windows.rs", "../torch/src/train.rs", "src/parquet_io.rs", "src/summaries.rs", "src/metrics.rs", "src/neurons.rs", "../torch/src/weights.rs"]),
    ("fit", &["src/fit.rs", "src/rng.rs", "src/parquet_io.rs", "src/metrics.rs", "src/summaries.rs", "src/model_size.rs"]),
    ("report", &["src/report", "templates", "src/metrics.rs", "src/parquet_io.rs", "src/torch_stages.rs", "src/model_size.rs", "src/fit.rs", "src/summaries.rs", "src/sweep.rs", "src/neurons.rs"]),
    ("train", &["../torch/src/train.rs", "src/torch_stages.rs", "src/model_size.rs", "../torch/src/models", "../torch/src/tensors.rs", "src/metrics.rs", "src/table.rs", "src/windows.rs", "src/parquet_io.rs", "src/rng.rs", "src/summaries.rs", "../torch/src/weights.rs"]),
];

/// Files that cannot change any stage's outputs (plumbing); read by tests/versions.rs.
#[allow(dead_code)]
const NEUTRAL: &[&str] = &["src/lib.rs", "src/stage.rs", "../torch/src/lib.rs", "../torch/src/main.rs"];

