#!/usr/bin/env python3
"""The reference: a straightforward numpy implementation of wormflow's preprocess
(z-score per neuron, causal exponential smoothing, linear resampling).

usage: preprocess_numpy.py INPUT.bin OUTPUT.bin ALPHA DT  → prints the compute seconds.
Binary layout (little-endian), per worm: u32 T, u32 N, f64[T] t, f32[T*N] traces (row-major).
"""
import struct
import sys
import time

import numpy as np


def read(path):
    worms = []
    with open(path, "rb") as f:
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            T, N = struct.unpack("<II", f.read(8))
            t = np.frombuffer(f.read(8 * T), dtype="<f8")
            x = np.frombuffer(f.read(4 * T * N), dtype="<f4").reshape(T, N)
            worms.append((t, x))
    return worms


def preprocess(t, x, alpha, dt):
    x = x.astype(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)            # population std (ddof = 0)
    s = np.empty_like(z)
    s[0] = z[0]
    for k in range(1, len(z)):                           # causal exponential smoothing
        s[k] = alpha * z[k] + (1 - alpha) * s[k - 1]
    grid = t[0] + dt * np.arange(int(np.ceil((t[-1] - t[0]) / dt)))
    grid = grid[grid < t[-1]]
    out = np.empty((len(grid), x.shape[1]), dtype=np.float32)
    for n in range(x.shape[1]):                          # linear resampling
        out[:, n] = np.interp(grid, t, s[:, n])
    return grid, out


def main():
    src, dst, alpha, dt = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    worms = read(src)
    start = time.perf_counter()
    results = [preprocess(t, x, alpha, dt) for t, x in worms]
    seconds = time.perf_counter() - start
    with open(dst, "wb") as f:
        f.write(struct.pack("<I", len(results)))
        for grid, out in results:
            f.write(struct.pack("<II", *out.shape))
            f.write(out.astype("<f4").tobytes())
    print(f"{seconds:.4f}")


main()
