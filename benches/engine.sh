#!/usr/bin/env bash
# Planning/caching overhead: a fully cached 10,000-node pipeline (status, no-op run), and
# a no-op `status` against DVC on an equivalent 1,000-stage pipeline.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${CARGO_TARGET_DIR:?}/release/wormflow"
work="${BENCH_DIR:-$HOME/.cache/wormflow/bench}"
mkdir -p "$work"

echo "== engine: 10,000-node pipeline (10 deep x 1000 wide + 1 gather), fully cached"
python3 "$here/gen_pipeline.py" "$work/wf10k" 10 1000
(cd "$work/wf10k" && "$BIN" run -j "$(nproc)" >/dev/null 2>&1) # populate (first time: minutes)
st=$(python3 "$here/median_time.py" 5 "$work/wf10k" "$BIN" status)
noop=$(python3 "$here/median_time.py" 5 "$work/wf10k" "$BIN" run)
printf "  wormflow status       %8.3f s   (target < 1 s)\n" "$st"
printf "  wormflow run (no-op)  %8.3f s   (target < 1 s)\n" "$noop"

echo "== planning incrementality (salsa): one-value edit in a 10,000-node plan"
cargo bench --quiet --locked --bench plan 2>/dev/null | sed 's/^/  /'

echo "== vs DVC: no-op status of an equivalent 1,000-stage pipeline (10 deep x 100 wide + 1)"
venv="$HOME/.cache/wormflow/bench-venv"
if [ ! -x "$venv/bin/dvc" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet dvc
fi
python3 "$here/gen_pipeline.py" "$work/wf1k" 10 100
(cd "$work/wf1k" && "$BIN" run -j "$(nproc)" >/dev/null 2>&1)
if [ ! -f "$work/dvc1k/dvc.lock" ]; then
  rm -rf "$work/dvc1k"
  python3 "$here/gen_dvc.py" "$work/dvc1k" 10 100
  (cd "$work/dvc1k" && git init -q && "$venv/bin/dvc" init -q && "$venv/bin/dvc" repro -q >/dev/null 2>&1)
fi
wf=$(python3 "$here/median_time.py" 5 "$work/wf1k" "$BIN" status)
dvc=$(python3 "$here/median_time.py" 3 "$work/dvc1k" "$venv/bin/dvc" status)
printf "  wormflow status  %8.3f s\n  dvc status       %8.3f s\n  speed-up         %8.1fx\n" "$wf" "$dvc" "$(python3 -c "print($dvc/$wf)")"
