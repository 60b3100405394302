# wormflow — `make run` builds and runs the default pipeline; `make test` runs the tests.
# Both are idempotent and install what they need. Build outputs live outside the clone
# (CARGO_TARGET_DIR) so a fresh clone reuses an earlier build when there is one.

SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/wormflow/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/wormflow
# Extra arguments for `make run`, e.g. make run ARGS="--set stages.train.params.epochs=5"
ARGS ?=

.PHONY: setup build run test bench clean

## setup: check the toolchain and fetch crates (idempotent)
setup:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	@command -v python3 >/dev/null || { echo "python3 not found: install Python 3.11"; exit 1; }
	cargo fetch --locked

## build: the release binary at $(BIN)
build: setup
	cargo build --release --locked

## run: build, then bring the default pipeline (pipeline.toml) up to date
run: build
	$(BIN) run $(ARGS)

## test: unit and integration tests (real binary, real pipelines)
test: build
	cargo test --release --locked --workspace

## bench: performance benchmarks, printed side by side with their references
bench: build
	bash benches/run.sh

clean:
	rm -rf cache results
