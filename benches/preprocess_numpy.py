#!/usr/bin/env python3
"""The reference: wormflow's preprocess as an expert would write it in numpy/scipy —
z-score per neuron, causal exponential smoothing as one IIR filter over all neurons
(scipy.signal.lfilter), and the study's resampling (linear when upsampling; a fine grid of
Δt/6 averaged in blocks of 6 when downsampling) as one sparse matrix per worm, found once
and applied to all neurons in one product (scipy.sparse).

usage: preprocess_numpy.py INPUT.bin OUTPUT.bin ALPHA DT  → prints the compute seconds.
Binary layout (little-endian), per worm: u32 T, u32 N, f64[T] t, f32[T*N] traces (row-major).
"""
import struct
import sys
import time

import numpy as np
from scipy import sparse
from scipy.signal import lfilter

BLOCK = 6


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


def interpolation(t, at):
    """np.interp at `at` as a sparse (len(at) × len(t)) matrix: two weights per row."""
    j = np.clip(np.searchsorted(t, at, side="right") - 1, 0, len(t) - 2)
    f = np.clip((at - t[j]) / (t[j + 1] - t[j]), 0.0, 1.0)
    rows = np.repeat(np.arange(len(at)), 2)
    cols = np.stack([j, j + 1], axis=1).ravel()
    vals = np.stack([1.0 - f, f], axis=1).ravel()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(at), len(t)))


def preprocess(t, x, alpha, dt):
    x = x.astype(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)  # population std (ddof = 0)
    # s0 = z0, s_k = α z_k + (1 − α) s_{k−1}: the filter's state starts at (1 − α) z0.
    s, _ = lfilter([alpha], [1.0, alpha - 1.0], z, axis=0, zi=((1 - alpha) * z[0])[None, :])
    if np.median(np.diff(t)) >= dt:
        grid = np.arange(t[0], t[-1], dt)
        return grid, (interpolation(t, grid) @ s).astype(np.float32)
    fine = np.arange(t[0], t[-1], dt / BLOCK)
    n = len(fine) // BLOCK
    means = sparse.kron(sparse.eye(n), np.full((1, BLOCK), 1.0 / BLOCK), format="csr")
    return t[0] + dt * np.arange(n), ((means @ interpolation(t, fine[: n * BLOCK])) @ s).astype(np.float32)


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
