"""Write real worms shipped in data/ in the layout of the study's published pool
(Hugging Face qsimeon/celegans_neural_data, written by qsimeon/worm-data-preprocess's
extra/neural_to_parquet.py): one row per (worm, neuron) of a long-format table.

    python worm_data_parquet_write.py OUT.parquet --labels NeuroPAL_labels_dict.json SOURCE...

SOURCE: generic-h5 worms (/traces, /time, /neuron_names) or Flavell-lab recordings (labels
from --labels). Each source file becomes `worm<k>` of its dataset (numbered within the
dataset, as the successor does). As there: `original_calcium_data` is the trace as read,
`original_time_in_seconds` starts at 0; `calcium_data` / `time_in_seconds` are resampled
(linear, dt = 0.333 s) and standardised per neuron; an unidentified ROI is a row with
`is_labeled_neuron = False` whose `neuron` is its column number. Lists are float32, counts
int32, as neural_to_parquet.py writes them with pandas + pyarrow.
"""

import argparse
import json
import os

import h5py
import numpy as np
import pandas as pd

DT = 0.333


def read_source(path, labels_json):
    with h5py.File(path, "r") as f:
        if "traces" in f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["neuron_names"][:]]
            dataset = f.attrs.get("dataset", "Generic")
            return str(dataset), f["traces"][:], f["time"][:], names
        traces = f["gcamp/traces_array_F_F20"][:]
        time = f["timing/timestamp_confocal"][:]
    uid = os.path.basename(path).removesuffix("-data.h5")
    names = [""] * traces.shape[1]
    for col, entry in json.load(open(labels_json))[uid].items():
        names[int(col) - 1] = entry["label"]
    return "Dag2023", traces, time, names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--labels")
    a = ap.parse_args()
    rows = []
    counter = {}
    for src in a.sources:
        dataset, traces, time, names = read_source(src, a.labels)
        k = counter.get(dataset, 0)
        counter[dataset] = k + 1
        t = (time - time[0]).astype(np.float32)
        grid = np.arange(0.0, float(t[-1]), DT, dtype=np.float64)
        for col, name in enumerate(names):
            original = traces[:, col].astype(np.float32)
            resampled = np.interp(grid, t.astype(np.float64), traces[:, col])
            std = resampled.std() or 1.0
            processed = ((resampled - resampled.mean()) / std).astype(np.float32)
            rows.append({
                "source_dataset": dataset,
                "raw_data_file": os.path.basename(src),
                "worm": f"worm{k}",
                "neuron": name if name else str(col),
                "slot": np.intc(col),
                "is_labeled_neuron": bool(name),
                "smooth_method": "no smoothing",
                "interpolate_method": "linear",
                "normalization_method": "standard",
                "original_calcium_data": original,
                "calcium_data": processed,
                "original_time_in_seconds": t,
                "time_in_seconds": grid.astype(np.float32),
                "original_max_timesteps": np.intc(len(t)),
                "max_timesteps": np.intc(len(grid)),
            })
    pd.DataFrame(rows).to_parquet(a.out, index=False, engine="pyarrow")


if __name__ == "__main__":
    main()
