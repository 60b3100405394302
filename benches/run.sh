#!/usr/bin/env bash
# `make bench`: every benchmark, each printing its figures next to its reference.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/engine.sh"
bash "$here/engine_vs_snakemake.sh"
bash "$here/preprocess.sh"
bash "$here/train.sh"
bash "$here/remote.sh"
bash "$here/compare.sh"
