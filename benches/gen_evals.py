#!/usr/bin/env python3
"""A bench workspace with the paper pipeline's 510 evaluations as stored nodes:
gen_evals.py DIR PYTHON. Writes eval.parquet and by_dataset.parquet per evaluation (the
columns wormflow's evaluate writes, synthetic values) under DIR/src/, and a pipeline whose
`evaluate` stage (6 models x 85 = 510 nodes) copies them into the store."""
import os
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
models = ["linear", "feedforward", "ctrnn", "lstm", "transformer", "attention"]
runs = list(range(85))
rng = random.Random(0)
for m in models:
    for r in runs:
        d = os.path.join(out, "src", f"{m}-{r}")
        os.makedirs(d, exist_ok=True)
        loss = 0.04 + rng.random() * 0.01
        pq.write_table(pa.table({
            "model": [m], "hidden": pa.array([64], pa.int64()), "residual": [False],
            "n_params": pa.array([25000 + r], pa.int64()), "n_params_study": pa.array([25300 + r], pa.int64()),
            "learning": ["learned"], "learning_note": [""], "epochs_run": pa.array([30], pa.int64()),
            "best_epoch": pa.array([rng.randrange(30)], pa.int64()), "steps": pa.array([3000], pa.int64()),
            "train_steps": pa.array([1000 * (r + 1)], pa.int64()), "n_worms": pa.array([r + 1], pa.int64()),
            "val_loss": [loss], "baseline_loss": [0.043], "ratio": [loss / 0.043],
        }), os.path.join(d, "eval.parquet"))
        pq.write_table(pa.table({
            "dataset": [f"Source{k}" for k in range(8)], "n_windows": pa.array([32] * 8, pa.int64()),
            "val_loss": [loss * (1 + 0.1 * k) for k in range(8)], "baseline_loss": [0.043] * 8,
            "ratio": [loss * (1 + 0.1 * k) / 0.043 for k in range(8)],
        }), os.path.join(d, "by_dataset.parquet"))
with open(os.path.join(out, "pipeline.toml"), "w") as f:
    f.write(f'''[pipeline]
name = "compare-bench"

[stages.train]
kind = "command"
matrix = {{ model = {models!r}, run = {runs!r} }}
params = {{ cmd = "echo ${{matrix.model}} > $WORMFLOW_OUT/model.txt", lr = 0.001, epochs = 30 }}

[stages.evaluate]
kind = "command"
needs = ["train"]
matrix = {{ model = {models!r}, run = {runs!r} }}
params = {{ cmd = "cp src/${{matrix.model}}-${{matrix.run}}/*.parquet $WORMFLOW_OUT/", deps = ["src/${{matrix.model}}-${{matrix.run}}/eval.parquet"] }}
'''.replace("'", '"'))
