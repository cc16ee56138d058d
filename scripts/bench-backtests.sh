#!/usr/bin/env bash
# The forecast benchmark of ../shared/specs/evaluation.md on the three headline traces:
# `prescale-trainer backtest` on each, files under $OUT (default target-bench/backtest),
# the score table and wall time printed. Needs ../shared/traces beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
traces="${PRESCALE_TRACES:-../shared/traces}"
out="${OUT:-target-bench/backtest}"
if [[ ! -d "$traces" ]]; then
  echo "*** bench-backtests: traces folder $traces is missing (set PRESCALE_TRACES) ***" >&2
  exit 1
fi
cargo build -q -p prescale-trainer
bin="${CARGO_TARGET_DIR:-target}/debug/prescale-trainer"
for t in nasa_http_1995_30s worldcup98_1min twitter_stream_2021_08_30s; do
  echo "== backtest $t"
  start=$(date +%s)
  "$bin" backtest --trace "$traces/$t.csv" --out "$out/$t" 2> "$out-$t.log" || { cat "$out-$t.log" >&2; exit 1; }
  echo "wall time: $(( $(date +%s) - start )) s"
done
