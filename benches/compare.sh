#!/usr/bin/env bash
# `wormflow compare` over the paper pipeline's 510 evaluations (synthetic outputs in a bench
# store), next to polars scanning the same one-row tables from results/ in Python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${CARGO_TARGET_DIR:?}/release/wormflow"
work="${BENCH_DIR:-$HOME/.cache/wormflow/bench}/compare"
py="${VIRTUAL_ENV:-$HOME/.cache/wormflow/venv}/bin/python"
echo "== compare: 510 evaluations (6 models x 85), axes + params + metrics per row"
if [ ! -f "$work/pipeline.toml" ]; then
  "$py" "$here/gen_evals.py" "$work"
fi
(cd "$work" && "$BIN" run -j "$(nproc)" >/dev/null 2>&1) # populate (first time: a minute)
rows=$(cd "$work" && "$BIN" compare evaluate --params lr,epochs --csv | tail -n +2 | wc -l)
wf=$(python3 "$here/median_time.py" 5 "$work" "$BIN" compare evaluate --params lr,epochs --sort ratio)
ref=$(python3 "$here/median_time.py" 5 "$work" "$py" -c 'import polars as pl; print(pl.scan_parquet("results/evaluate/**/eval.parquet", hive_partitioning=True).sort("ratio").collect())')
printf "  rows                         %8d\n" "$rows"
printf "  wormflow compare evaluate    %8.3f s   (target < 0.3 s)\n" "$wf"
printf "  python polars scan (ref.)    %8.3f s\n" "$ref"
