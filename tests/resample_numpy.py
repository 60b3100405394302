"""An independent numpy implementation of wormflow's preprocess with the study's resampling
rule, checked against wormflow's output on real recordings.

    python resample_numpy.py OUT.parquet IN.parquet [IN.parquet ...]

IN: standardized recordings.parquet files; OUT: the preprocess node's recordings.parquet
(defaults: z-score, α = 0.5, Δt = 0.667, resample = "block_mean"). The rule, as the study's
code intends it: a recording whose median step is ≥ Δt is interpolated linearly onto
np.arange(t0, t_end, Δt); a finer one onto np.arange(t0, t_end, Δt/6), and each complete
block of 6 is averaged, block k labelled t0 + k·Δt. Prints one line per worm; exit 1 if any
value differs by more than 1e-5 or any grid differs.
"""

import sys

import numpy as np
import pyarrow.parquet as pq

DT, ALPHA, BLOCK, TOL = 0.667, 0.5, 6, 1e-5


def worms(path):
    table = pq.read_table(path)
    meta = {"dataset", "worm", "t"}
    neurons = [c for c in table.column_names if c not in meta]
    ds, wm = table.column("dataset").to_numpy(zero_copy_only=False), table.column("worm").to_numpy(zero_copy_only=False)
    t = table.column("t").to_numpy()
    cols = {n: table.column(n).to_numpy(zero_copy_only=False) for n in neurons}
    keys = list(dict.fromkeys(zip(ds, wm)))
    for key in keys:
        rows = (ds == key[0]) & (wm == key[1])
        traces = {n: np.asarray(v[rows], dtype=np.float64) for n, v in cols.items() if v[rows][0] is not None}
        yield key, t[rows], traces


def preprocess(t, x):
    z = (x - x.mean()) / x.std()
    s = np.empty_like(z)
    s[0] = z[0]
    for k in range(1, len(z)):
        s[k] = ALPHA * z[k] + (1 - ALPHA) * s[k - 1]
    if np.median(np.diff(t)) >= DT:
        grid = np.arange(t[0], t[-1], DT)
        return grid, np.interp(grid, t, s)
    fine = np.arange(t[0], t[-1], DT / BLOCK)
    n = len(fine) // BLOCK
    values = np.interp(fine[: n * BLOCK], t, s).reshape(n, BLOCK).mean(axis=1)
    return t[0] + DT * np.arange(n), values


def main(out_path, in_paths):
    ours = {key: (t, traces) for key, t, traces in worms(out_path)}
    worst, problems = 0.0, []
    for path in in_paths:
        for key, t, traces in worms(path):
            got_t, got = ours[key]
            rule = "upsampled" if np.median(np.diff(t)) >= DT else f"block mean of {BLOCK}"
            diff = 0.0
            for name, x in traces.items():
                if x.std() == 0 or name not in got:
                    continue
                grid, want = preprocess(t, x)
                if len(grid) != len(got_t) or np.abs(grid - got_t).max() > 1e-9:
                    problems.append(f"{key}: grid of {len(got_t)} steps, numpy's has {len(grid)}")
                    break
                diff = max(diff, float(np.abs(want - got[name]).max()))
            worst = max(worst, diff)
            print(f"{key[0]}/{key[1]}: recorded every {np.median(np.diff(t)):.3f} s, {rule}, {len(got_t)} steps, max |wormflow - numpy| = {diff:.2e}")
    if worst > TOL:
        problems.append(f"largest difference {worst:.3e} > {TOL}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
