#!/usr/bin/env python3
"""Median wall time of a command over N runs: median_time.py N DIR CMD... → prints seconds.

With MEDIAN_TIME_CLEAN="rm -rf a b" set, that shell command runs in DIR before each timed
run (untimed): for fresh-run timings.
"""
import os
import statistics
import subprocess
import sys
import time

n, cwd, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
clean = os.environ.get("MEDIAN_TIME_CLEAN")
times = []
for _ in range(n):
    if clean:
        subprocess.run(clean, shell=True, cwd=cwd, check=True)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.4f}")
