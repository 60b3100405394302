#!/usr/bin/env python3
"""Write the Snakemake equivalent of gen_pipeline.py's pipeline (same shell commands).

usage: gen_snakefile.py OUT_DIR DEPTH WIDTH
"""
import os
import sys

out, depth, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
lines = [f"I = list(range({width}))", "", "rule all:", f'    input: "gather/n"', ""]
for d in range(depth):
    lines += [f"rule s{d}:", f'    output: "s{d}/{{i}}/x"']
    if d > 0:
        lines += [f'    input: "s{d-1}/{{i}}/x"',
                  f'    shell: "cat {{input}} > {{output}}; echo {d} >> {{output}}"']
    else:
        lines += ['    shell: "echo {wildcards.i} > {output}"']
    lines.append("")
lines += ["rule gather:", f'    input: expand("s{depth-1}/{{i}}/x", i=I)', '    output: "gather/n"',
          '    shell: "cat {input} | wc -l > {output}"', ""]
open(os.path.join(out, "Snakefile"), "w").write("\n".join(lines))
