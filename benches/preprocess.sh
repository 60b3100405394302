#!/usr/bin/env bash
# Preprocess: wormflow vs a straightforward numpy implementation, same input, side by side.
set -euo pipefail
venv="$HOME/.cache/wormflow/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy, scipy" 2>/dev/null || "$venv/bin/pip" install --quiet numpy==2.4.6 scipy==1.17.1
echo "== preprocess vs numpy/scipy (lfilter, vectorised interpolation)"
cargo bench --quiet --locked --bench preprocess -- "${BENCH_DIR:-$HOME/.cache/wormflow/bench}/preprocess" "$venv/bin/python" | sed 's/^/  /'
