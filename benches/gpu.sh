#!/usr/bin/env bash
# On a CUDA machine whose python has torch 2.11 (e.g. 2.11.0+cu130): build against that
# torch, check that libtorch sees the GPU, and time the training step on it (samples/s),
# next to PyTorch on the same GPU.   usage: benches/gpu.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA in this python'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wormflow/target-gpu}"
make build TORCH_PYTHON="$(command -v "$python")"
TORCH_PYTHON="$(command -v "$python")" bash benches/train.sh cuda
