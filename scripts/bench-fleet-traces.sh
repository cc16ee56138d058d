#!/usr/bin/env bash
# The forecast table with fleet models: the three headline traces imported as services of
# one store (`prescale-trainer import`), then `train --services` fits a fleet model and does
# each service's work (calibration, baselines, the choice of its forecaster on its own
# validation part, backtest on its test part: the same 80/20 split as `backtest`). NASA and
# Twitter share 30 s steps and train one fleet; WorldCup 98's 1-minute steps train a fleet
# of one. Prints, per trace, the served forecaster's and the fleet transformer's test MAE
# beside the best baseline's. Files under $OUT (default target-bench/fleet-traces); needs
# ../shared/traces beside the repository (or $PRESCALE_TRACES).
set -euo pipefail
cd "$(dirname "$0")/.."
traces="${PRESCALE_TRACES:-../shared/traces}"
out="${OUT:-target-bench}/fleet-traces"
budget="${MAX_SECONDS:-420}"
if [[ ! -d "$traces" ]]; then
  echo "*** bench-fleet-traces: traces folder $traces is missing (set PRESCALE_TRACES) ***" >&2
  exit 1
fi
cargo test -q --workspace --no-run
trainer="${CARGO_TARGET_DIR:-target}/debug/prescale-trainer"
rm -rf "$out"
mkdir -p "$out"
"$trainer" import --data "$out/data-30s" \
  --trace "traces/nasa-http-1995=$traces/nasa_http_1995_30s.csv" \
  --trace "traces/twitter-stream-2021=$traces/twitter_stream_2021_08_30s.csv"
"$trainer" import --data "$out/data-1min" --trace "traces/worldcup98=$traces/worldcup98_1min.csv"
for step in 30s 1min; do
  echo "== fleet of the $step traces (training budget $budget s)"
  start=$(date +%s)
  "$trainer" --max-seconds "$budget" train --data "$out/data-$step" --services 'traces/*' \
    --models "$out/models-$step" 2> "$out/fleet-$step.log" | tee "$out/fleet-$step.out" \
    || { cat "$out/fleet-$step.log" >&2; exit 1; }
  echo "wall time: $(( $(date +%s) - start )) s"
done
