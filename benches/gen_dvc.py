#!/usr/bin/env python3
"""Write the DVC equivalent of gen_pipeline.py (a chain DEPTH deep, WIDTH wide, one gather).

usage: gen_dvc.py OUT_DIR DEPTH WIDTH
"""
import os
import sys

out, depth, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
lines = ["stages:"]
for d in range(depth):
    for i in range(width):
        name = f"s{d}_{i}"
        lines.append(f"  {name}:")
        if d == 0:
            lines.append(f"    cmd: mkdir -p out/{name} && echo {i} > out/{name}/x")
        else:
            prev = f"s{d-1}_{i}"
            lines.append(f"    cmd: mkdir -p out/{name} && cat out/{prev}/x > out/{name}/x && echo {d} >> out/{name}/x")
            lines.append(f"    deps:\n      - out/{prev}/x")
        lines.append(f"    outs:\n      - out/{name}/x")
lines.append("  gather:")
lines.append(f"    cmd: cat out/s{depth-1}_*/x | wc -l > out/n")
lines.append("    deps:")
for i in range(width):
    lines.append(f"      - out/s{depth-1}_{i}/x")
lines.append("    outs:\n      - out/n")
open(os.path.join(out, "dvc.yaml"), "w").write("\n".join(lines) + "\n")
