# Sourced by benches/gpu.sh and benches/gpu_helpers.sh: the synthetic pipeline both time on
# a GPU machine — 64 Sines worms × 800 steps, 16 windows of L = 180 each, and N train nodes
# (seeds 1…N) of a ≈580K-parameter MODEL for 3 epochs at batch 128.
# write_gpu_pipeline NAME MODEL N  → ./pipeline.toml
write_gpu_pipeline() {
  local seeds
  seeds=$(seq -s ', ' 1 "$3")
  cat > pipeline.toml <<T
[pipeline]
name = "$1"
seed = 1
[stages.synth]
kind = "synthesize"
params = { model = "sines", n_worms = 64, n_steps = 800, n_observed = 100 }
[stages.pre]
kind = "preprocess"
needs = ["synth"]
params = { smooth_alpha = 1.0, resample_dt = 0 }
[stages.split]
kind = "split"
needs = ["pre"]
[stages.sample]
kind = "sample"
needs = ["split"]
params = { n_windows = 16, window = 180 }
[stages.train]
kind = "train"
needs = ["pre", "sample"]
matrix = { seed = [$seeds] }
params = { model = "$2", params_target = 580000, epochs = 3, early_stopping = 100, batch_size = 128, seed = "\${matrix.seed}", device = "auto" }
T
}
