"""results/ as a scientist's tools read it (called by tests/pipeline.rs with the results dir).

- polars scans a whole sweep's evaluations as one table, its matrix axes as columns;
- pyarrow reads the same Hive folders as a dataset;
- pandas and polars see indices as signed int64 (start - 1 does not wrap);
- every node's generation table concatenates with every other (same types, nullability);
- every Parquet file and weights.safetensors carries the node's origin as metadata.
"""

import glob
import json
import os
import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from safetensors import safe_open

results = sys.argv[1]
os.chdir(results)

# A sweep as one table: 5 models x 3 hidden sizes, axes from the folder names.
sweep = pl.scan_parquet("evaluate_size/**/eval.parquet", hive_partitioning=True).collect()
assert sweep.height == 15, sweep
assert {"hidden", "model", "val_loss", "ratio", "learning"} <= set(sweep.columns), sweep.columns
assert sweep["hidden"].dtype == pl.Int64 and sorted(set(sweep["hidden"])) == [8, 24, 64], sweep["hidden"]
best = sweep.sort("ratio").row(0, named=True)
print(f"polars: {sweep.height} evaluations; best {best['model']} hidden={best['hidden']} ratio={best['ratio']:.4f}")

# pyarrow: the same files as a Hive-partitioned dataset (it infers path integers as int32,
# so the axes' types are given where a file also has the column).
files = sorted(glob.glob("evaluate_size/**/eval.parquet", recursive=True))
hive = ds.partitioning(pa.schema([("hidden", pa.int64()), ("model", pa.string())]), flavor="hive")
table = ds.dataset(files, format="parquet", partitioning=hive, partition_base_dir="evaluate_size").to_table()
assert table.num_rows == 15 and "val_loss" in table.column_names, table.schema

# Signed indices: windows.start - 1 stays a number.
windows = pd.read_parquet(glob.glob("sample*/**/windows.parquet", recursive=True)[0])
assert str(windows["start"].dtype) == "int64", windows.dtypes
assert (windows["start"] - 1).min() == -1, "the first window starts at 0"
metrics = pl.read_parquet(glob.glob("train_size/**/metrics.parquet", recursive=True)[0])
assert metrics["epoch"].dtype == pl.Int64 and metrics["epoch"][0] == 0, metrics

# Every generation table, of every evaluate stage, concatenates into one.
generation = [pl.read_parquet(f) for f in sorted(glob.glob("**/generation.parquet", recursive=True))]
together = pl.concat(generation)
assert {"dataset", "worm", "neuron", "step", "truth", "generated"} == set(together.columns), together.columns
assert together.height > 0
print(f"generation: {len(generation)} tables, {together.height} rows concatenated")

# Per-neuron answers: variance explained per worm x neuron.
neurons = pl.read_parquet(glob.glob("evaluate_data/**/neurons.parquet", recursive=True)[0])
assert {"dataset", "worm", "neuron", "class", "mse", "baseline_mse", "variance_explained"} <= set(neurons.columns)
assert neurons.height > 100, neurons

# Origin metadata in every Parquet file and in the weights.
parquets = glob.glob("**/*.parquet", recursive=True)
for f in parquets:
    meta = pq.read_metadata(f).metadata or {}
    assert b"wormflow.node" in meta and b"wormflow.key" in meta, (f, meta)
    json.loads(meta[b"wormflow.params"])
print(f"metadata: all {len(parquets)} Parquet files name their node")
weights = glob.glob("train_size/**/weights.safetensors", recursive=True)[0]
with safe_open(weights, framework="pt") as f:
    meta = f.metadata()
    assert meta["wormflow.stage"].startswith("train") and len(meta["wormflow.key"]) == 64, meta
    assert len(list(f.keys())) > 0
print("ok")
