# wormflow — `make run` builds and runs the default pipeline; `make test` runs the tests.
# Both are idempotent and install what they need. Build outputs live outside the clone
# (CARGO_TARGET_DIR) so a fresh clone reuses an earlier build when there is one.

SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/wormflow/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/wormflow
# Extra arguments for `make run`, e.g. make run ARGS="--set stages.train.params.epochs=5"
ARGS ?=

# libtorch comes from PyPI's torch wheel (pinned to what tch 0.24 expects), in a venv kept
# outside the clone. On a machine whose python already has torch 2.11 (e.g. a GPU box with
# torch 2.11.0+cu130), use it instead: make build TORCH_PYTHON=python3
TORCH_VERSION := 2.11.0
# What the tests' Python checks import beside torch (the study's models, numpy's resampler,
# results/ read by polars, pyarrow, pandas and safetensors) and the bench's references (scipy).
PY_TEST_PACKAGES := numpy==2.4.6 scipy==1.17.1 pyarrow==26.0.1 polars==2.1.0 pandas==3.1.1 safetensors==0.7.0
# The NWB files the tests write, as the WormID datasets are written: pynwb 4 with the
# ndx-multichannel-volume extension. That extension's metadata caps pynwb below 3 although
# its spec loads under pynwb 4 (tests/community.rs writes and reads files with both), so it
# is installed without its declared dependencies; scikit-image is what it imports.
PY_NWB_PACKAGES := pynwb==4.2.0 h5py==3.16.0 scikit-image==0.26.0
PY_NWB_EXTENSION := ndx-multichannel-volume==0.1.12
VENV ?= $(HOME)/.cache/wormflow/venv
TORCH_PYTHON ?= $(VENV)/bin/python
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(dir $(TORCH_PYTHON)):$(PATH)
export VIRTUAL_ENV := $(abspath $(dir $(TORCH_PYTHON))/..)

.PHONY: setup torch build run test services bench clean

## setup: check the toolchain, install torch (libtorch) and fetch crates (idempotent)
setup: torch
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	cargo fetch --locked

## torch: a venv with PyPI torch==$(TORCH_VERSION) (pip's cache stays in ~/.cache/pip)
torch:
	@command -v python3 >/dev/null || { echo "python3 not found: install Python 3.11"; exit 1; }
	@if ! "$(TORCH_PYTHON)" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
	  if [ "$(TORCH_PYTHON)" != "$(VENV)/bin/python" ]; then echo "$(TORCH_PYTHON) has no torch $(TORCH_VERSION)"; exit 1; fi; \
	  echo "installing torch==$(TORCH_VERSION) into $(VENV) (about 4.6 GB, a few minutes)"; \
	  python3 -m venv "$(VENV)" && "$(VENV)/bin/pip" install --quiet "torch==$(TORCH_VERSION)"; \
	fi
	@"$(TORCH_PYTHON)" -c "import numpy, scipy, pyarrow, polars, pandas, safetensors" 2>/dev/null || "$(TORCH_PYTHON)" -m pip install --quiet $(PY_TEST_PACKAGES)
	@"$(TORCH_PYTHON)" -c "import pynwb, h5py, skimage, ndx_multichannel_volume" 2>/dev/null || { "$(TORCH_PYTHON)" -m pip install --quiet $(PY_NWB_PACKAGES) && "$(TORCH_PYTHON)" -m pip install --quiet --no-deps $(PY_NWB_EXTENSION); }

## build: the release binary at $(BIN)
build: setup
	cargo build --release --locked --workspace

## run: build, then bring the default pipeline (pipeline.toml) up to date
run: build
	$(BIN) run $(ARGS)

## test: formatting, lints, then unit and integration tests (real binary, real pipelines)
test: build services
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	cargo test --release --locked --workspace

## services: the servers the tests start themselves (s3s-fs; Slurm + munge when root)
services:
	-bash tests/services/install.sh

## bench: performance benchmarks, printed side by side with their references
bench: build
	bash benches/run.sh

clean:
	rm -rf cache results
