#!/bin/bash
# Many models per GPU, on a CUDA machine without a Rust toolchain (the recipe:
# ../shared/recipes/gpu-device.md): build here, carry stripped binaries, run against that
# machine's torch. One prepared script, every step under `timeout`, about 6 minutes.
#
# Here:   make build && bash benches/gpu.sh --pack     (writes .gpu-carry/bins.tar.xz;
#         .gpu-carry must be listed in .git/info/exclude; data/ is not needed there)
# There:  bash benches/gpu.sh                          (device tool: carry .gpu-carry)
#
# It prints, for 580K LSTM and CTRNN at the paper's shape (batch 128, L = 180):
#  1. the training step of M = 1, 4, 16, 64 stacked models vs M one after another
#     (torch/benches/stacked.rs), samples/s;
#  2. 16 train nodes (3 epochs each) as the engine runs them: one at a time (-j 1
#     --group-max 1, the persistent helper), side by side (-j 8 --group-max 1), and
#     stacked (--group-max 16), wall seconds and samples/s.
set -u
REPO=$(pwd)
. "$REPO/benches/gpu_pipeline.sh"
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/wormflow/target}/release
if [ "${1:-}" = "--pack" ]; then
  set -e
  rm -rf /tmp/gpu-pack && mkdir -p /tmp/gpu-pack .gpu-carry
  cargo bench --locked --workspace --bench stacked --no-run
  bench=$(ls -t "$TARGET"/deps/stacked-* | grep -v '\.d$' | head -1)
  cp "$TARGET/wormflow" "$TARGET/wormflow-torch" /tmp/gpu-pack/
  cp "$bench" /tmp/gpu-pack/stacked
  strip /tmp/gpu-pack/*
  tar cf - -C /tmp/gpu-pack . | xz -T2 -6 > .gpu-carry/bins.tar.xz
  ls -la .gpu-carry/bins.tar.xz
  exit 0
fi
LOG=${OUT:-/tmp}/gpu_bench.log
exec > >(tee -a "$LOG") 2>&1
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
rm -rf /tmp/g && mkdir -p /tmp/g && cd /tmp/g && timeout 120 tar xJf "$REPO/.gpu-carry/bins.tar.xz" || exit 1
nvidia-smi -L
if nvidia-smi -q 2>/dev/null | grep -qi "MPS.*Enabled\|nvidia-cuda-mps"; then echo "CUDA MPS: running"; else echo "CUDA MPS: not running"; fi
echo "== 1. one stack of M models vs M one after another (batch 128, L = 180)"
timeout 200 ./stacked cuda 128 180 | grep -v "≈ 25K"
echo "== 2. 16 train nodes, 580K, 3 epochs, 64 worms × 16 windows (8 steps an epoch)"
for model in lstm ctrnn; do
  mkdir -p /tmp/g/$model && cd /tmp/g/$model
  write_gpu_pipeline "gpu-$model" $model 16
  timeout 120 ../wormflow run -q sample || exit 1
  samples=$((16 * 64 * 16 * 3))
  for how in "-j 1 --group-max 1" "-j 8 --group-max 1" "-j 1 --group-max 16"; do
    S=$(date +%s%N)
    timeout 150 ../wormflow run -q $how --force train train; RC=$?
    MS=$(( ($(date +%s%N) - S) / 1000000 ))
    echo "$model 580K, 16 nodes, $how: ${MS} ms wall, $(( samples * 1000 / (MS + 1) )) samples/s (rc $RC)"
  done
  ../wormflow show "train[seed=3]" --json | python3 -c "import json,sys; d=json.load(sys.stdin)['provenance']; print('$model seed=3:', d.get('device'), d.get('group',{}).get('size'), d.get('phases'))"
  cd /tmp/g
done
