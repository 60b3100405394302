#!/usr/bin/env python3
"""Write a wide-and-deep pipeline of `command` nodes for the planning benchmark.

usage: gen_pipeline.py OUT_DIR DEPTH WIDTH
DEPTH stages in a chain, each matrixed over WIDTH values and paired with the previous
stage on that axis, plus one stage gathering the last: DEPTH*WIDTH + 1 nodes.
"""
import os
import sys

out, depth, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
values = ", ".join(str(i) for i in range(width))
lines = ['[pipeline]', 'name = "bench"', '']
for d in range(depth):
    lines += [f'[stages.s{d}]', 'kind = "command"', f'matrix = {{ i = [{values}] }}']
    if d > 0:
        lines.append(f'needs = ["s{d-1}"]')
        lines.append(f'params = {{ cmd = "cat $WORMFLOW_INPUT_S{d-1}/x > $WORMFLOW_OUT/x; echo {d} >> $WORMFLOW_OUT/x" }}')
    else:
        lines.append('params = { cmd = "echo ${matrix.i} > $WORMFLOW_OUT/x" }')
    lines.append('')
lines += ['[stages.gather]', 'kind = "command"', f'needs = ["s{depth-1}"]',
          f'params = {{ cmd = "cat $WORMFLOW_INPUT_S{depth-1}/*/x | wc -l > $WORMFLOW_OUT/n" }}', '']
open(os.path.join(out, "pipeline.toml"), "w").write("\n".join(lines))
