#!/bin/bash
# Per-node fixed cost on a GPU machine (no Rust there; see ../shared/recipes/gpu-device.md):
# 8 train nodes (LSTM ≈ 580K parameters, 3 epochs, L = 180) one at a time, for two builds —
# old/ and new/ (each holding stripped `wormflow` and `wormflow-torch`), packed here as
#   tar cf - old new | xz -T2 --lzma2=preset=6,dict=256MiB > .gpu-carry/bins.tar.xz
# and run there with the device tool: `bash benches/gpu_helpers.sh` (carry .gpu-carry).
# Measured for #22 (one helper per node at 70ec8d5 vs the run's helper pool): see its note.
set -u
REPO=$(pwd)
. "$REPO/benches/gpu_pipeline.sh"
LOG=${OUT:-/tmp}/helper_bench.log
exec > >(tee -a $LOG) 2>&1
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
rm -rf /tmp/b; mkdir -p /tmp/b && cd /tmp/b && timeout 120 tar xJf $REPO/.gpu-carry/bins.tar.xz || exit 1
nvidia-smi -L
for v in old new; do
  mkdir -p /tmp/b/w_$v && cd /tmp/b/w_$v
  write_gpu_pipeline "helpers" lstm 8
  rm -rf cache results; timeout 120 ../$v/wormflow run -q sample
  S=$(date +%s%N)
  timeout 240 ../$v/wormflow run -q -j 1 train; RC=$?
  echo "$v: 8 train nodes one at a time: $(( ($(date +%s%N) - S) / 1000000 )) ms wall (rc $RC)"
  for s in 1 2 8; do ../$v/wormflow show "train[seed=$s]" --json | python3 -c "import json,sys; d=json.load(sys.stdin)['provenance']; print('$v seed=$s', d['seconds'], 's', d.get('device'), d.get('helper'))"; done
  cd /tmp/b
done
cd /tmp/b/w_new && rm -rf results && S=$(date +%s%N) && timeout 200 ../new/wormflow run -q -j 4 --force train train && echo "new -j 4 (4 helpers): $(( ($(date +%s%N) - S) / 1000000 )) ms wall"
