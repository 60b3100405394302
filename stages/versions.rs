// Where each stage kind's code starts (see code_closure.rs: its version covers every file and
// crate these reach). Shared by build.rs and tests/versions.rs.

/// (kind, modules followed, files hashed as they are without following them)
const KINDS: &[(&str, &[&str], &[&str])] = &[
    ("download", &["src/download.rs"], &[]),
    ("synthesize", &["src/synthesize.rs"], &[]),
    ("standardize", &["src/standardize/mod.rs"], &[]),
    ("preprocess", &["src/preprocess.rs"], &[]),
    ("split", &["src/split.rs"], &[]),
    ("sample", &["src/sample.rs"], &[]),
    // The torch kinds: the engine-side stage and the helper's module; the helper's main.rs
    // dispatches to both and is hashed, not followed (else train would depend on evaluate).
    ("train", &["src/torch_stages.rs", "../torch/src/train.rs"], &["../torch/src/main.rs"]),
    ("evaluate", &["src/torch_stages.rs", "../torch/src/evaluate.rs"], &["../torch/src/main.rs"]),
    ("fit", &["src/fit.rs"], &[]),
    ("report", &["src/report/mod.rs"], &[]),
];
