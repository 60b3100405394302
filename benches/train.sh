#!/usr/bin/env bash
# Training step time: wormflow (tch) vs PyTorch, same models and batch, side by side.
set -euo pipefail
python="${TORCH_PYTHON:-$HOME/.cache/wormflow/venv/bin/python}"
echo "== training step vs PyTorch"
cargo bench --quiet --locked --workspace --bench train_step -- "$python" "${1:-cpu}" | sed 's/^/  /'
echo "== many models at once: M stacked vs M one after another"
cargo bench --quiet --locked --workspace --bench stacked -- "${1:-cpu}" | sed 's/^/  /'
