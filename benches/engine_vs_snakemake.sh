#!/usr/bin/env bash
# Per-node overhead side by side with Snakemake (same shell commands, same machine, -j 2):
# fresh runs and no-op status/run of 10 deep x 100 wide + 1 gather, and a 200-deep chain;
# then ingesting a node's 10,000 files and planning a 10,000-deep chain.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${CARGO_TARGET_DIR:?}/release/wormflow"
work="${BENCH_DIR:-$HOME/.cache/wormflow/bench}/vs-snakemake"
venv="$HOME/.cache/wormflow/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -x "$venv/bin/snakemake" ] || "$venv/bin/pip" install --quiet "snakemake==9.*"
mkdir -p "$work"
med() { python3 "$here/median_time.py" "$@"; }
ratio() { python3 -c "print(f'{$1/$2:.1f}')"; }

for shape in "10 100" "200 1"; do
  set -- $shape
  name="d$1w$2"
  wf="$work/wf-$name" sm="$work/sm-$name"
  python3 "$here/gen_pipeline.py" "$wf" "$1" "$2"
  python3 "$here/gen_snakefile.py" "$sm" "$1" "$2"
  echo "== $(( $1 * $2 + 1 )) trivial command nodes ($1 deep x $2 wide + 1 gather), -j 2"
  wf_fresh=$(MEDIAN_TIME_CLEAN="rm -rf cache results" med 3 "$wf" "$BIN" run -j 2)
  sm_fresh=$(MEDIAN_TIME_CLEAN="rm -rf .snakemake gather s[0-9]*" med 3 "$sm" "$venv/bin/snakemake" -j 2 -q)
  wf_status=$(med 5 "$wf" "$BIN" status)
  sm_status=$(med 3 "$sm" "$venv/bin/snakemake" -j 2 -n -q)
  wf_noop=$(med 5 "$wf" "$BIN" run -j 2)
  sm_noop=$(med 3 "$sm" "$venv/bin/snakemake" -j 2 -q)
  printf "  fresh run    wormflow %7.3f s   snakemake %7.3f s   %5sx  (target >= 8x)\n" "$wf_fresh" "$sm_fresh" "$(ratio "$sm_fresh" "$wf_fresh")"
  printf "  no-op status wormflow %7.3f s   snakemake %7.3f s   %5sx  (target >= 100x; snakemake -n)\n" "$wf_status" "$sm_status" "$(ratio "$sm_status" "$wf_status")"
  printf "  no-op run    wormflow %7.3f s   snakemake %7.3f s   %5sx  (target >= 100x)\n" "$wf_noop" "$sm_noop" "$(ratio "$sm_noop" "$wf_noop")"
done

echo "== one command node writing 10,000 small files (target: ingest <= 3 s)"
files="$work/files10k"
mkdir -p "$files"
cat > "$files/pipeline.toml" <<'TOML'
[pipeline]
name = "files"
[stages.many]
kind = "command"
params = { cmd = "cd $WORMFLOW_OUT && for i in $(seq 1 10000); do echo $i > f$i.txt; done" }
TOML
total=$(MEDIAN_TIME_CLEAN="rm -rf cache results" med 3 "$files" "$BIN" run)
shell=$(MEDIAN_TIME_CLEAN="rm -rf out && mkdir out" med 3 "$files" sh -c 'cd out && for i in $(seq 1 10000); do echo $i > f$i.txt; done')
printf "  wormflow run %7.3f s; the shell loop alone %7.3f s; ingest and results/ %7.3f s\n" "$total" "$shell" "$(python3 -c "print($total-$shell)")"

echo "== planning a 10,000-deep chain (target < 1 s), next to the wide 10,000-node case in engine.sh"
python3 "$here/gen_pipeline.py" "$work/chain10k" 10000 1
printf "  status %7.3f s   dag %7.3f s   run --dry-run %7.3f s\n" \
  "$(med 3 "$work/chain10k" "$BIN" status)" "$(med 3 "$work/chain10k" "$BIN" dag)" "$(med 3 "$work/chain10k" "$BIN" run --dry-run)"
