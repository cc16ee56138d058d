#!/usr/bin/env bash
# The two benchmarks of ../shared/specs/evaluation.md on the three headline traces, as the
# README reports them: `prescale-trainer train` (the backtest, its files, and the model
# stored) then `prescale-trainer simulate` with that model. Files under $OUT (default
# target-bench; $TRACES picks a subset); needs ../shared/traces beside the repository (or $PRESCALE_TRACES).
set -euo pipefail
cd "$(dirname "$0")/.."
traces="${PRESCALE_TRACES:-../shared/traces}"
out="${OUT:-target-bench}"
budget="${MAX_SECONDS:-420}"
if [[ ! -d "$traces" ]]; then
  echo "*** bench-backtests: traces folder $traces is missing (set PRESCALE_TRACES) ***" >&2
  exit 1
fi
# The same build as `make build` (one feature resolution), so nothing is compiled twice.
cargo test -q --workspace --no-run
bin="${CARGO_TARGET_DIR:-target}/debug"
mkdir -p "$out"
for t in ${TRACES:-nasa_http_1995_30s worldcup98_1min twitter_stream_2021_08_30s}; do
  echo "== $t: backtest (training budget $budget s)"
  start=$(date +%s)
  "$bin/prescale-trainer" --max-seconds "$budget" train --trace "$traces/$t.csv" --models "$out/models/$t" \
    --out "$out/backtest/$t" 2> "$out/$t-train.log" | tee "$out/$t-train.out" || { cat "$out/$t-train.log" >&2; exit 1; }
  echo "wall time: $(( $(date +%s) - start )) s"
  version=$(grep -o 'stored model [0-9TZ]*' "$out/$t-train.out" | cut -d' ' -f3)
  echo "== $t: scaling simulation with model $version"
  "$bin/prescale-trainer" simulate --trace "$traces/$t.csv" --models "$out/models/$t" --version "$version" \
    --out "$out/simulate/$t" 2> "$out/$t-simulate.log" || { cat "$out/$t-simulate.log" >&2; exit 1; }
done
