#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo fuzz, libFuzzer) for a bounded time and prints, per
# target, the executions, the corpus and what was found. Called by `make fuzz`.
#
#   FUZZ_SECONDS  seconds per target (default 600)
#   FUZZ_JOBS     targets run at once (default: the number of cores)
#   FUZZ_TARGETS  which targets (default: every one `cargo fuzz list` names)
#   FUZZ_OUT      corpus, crash artifacts and logs (default target-fuzz/)
#
# Needs a nightly toolchain (sanitizer-coverage flags); installs cargo-fuzz if missing.
# Sanitizer `none`: the workspace denies unsafe code, so AddressSanitizer would mostly
# instrument libtorch's C++ (which it cannot link with); libFuzzer still catches panics,
# hangs (-timeout), and unbounded allocation (-malloc_limit_mb / -rss_limit_mb).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-$(nproc)}
out=$(mkdir -p "${FUZZ_OUT:-target-fuzz}" && cd "${FUZZ_OUT:-target-fuzz}" && pwd)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}-fuzz}

fail() { echo "fuzz: $*" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || fail "needs a nightly toolchain: rustup toolchain install nightly"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}

echo "fuzz: building $(wc -w <<<"$targets") targets (first build: about 30 minutes on 2 cores)"
build() { # every target, or the chosen ones (cargo fuzz build takes one or all)
    if [ -z "${FUZZ_TARGETS:-}" ]; then
        cargo +nightly fuzz build -s none
    else
        for t in $targets; do cargo +nightly fuzz build -s none "$t" || return 1; done
    fi
}
build >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; fail "build failed (log: $out/build.log)"; }

run_one() { # target -> runs it, leaves its log in $out/<target>.log
    local t=$1 corpus="$out/corpus/$1" artifacts="$out/artifacts/$1/"
    mkdir -p "$corpus" "$artifacts"
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    # The spool target writes files per input: a memory-backed temporary folder.
    TMPDIR=/dev/shm cargo +nightly fuzz run -s none "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -artifact_prefix="$artifacts" -print_final_stats=1 -close_fd_mask=3 >"$out/$t.log" 2>&1 || true
}
export -f run_one
export out seconds
echo "fuzz: running each target for ${seconds}s, $jobs at a time (logs in $out)"
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'

status=0
printf '%-20s %14s %10s %8s %8s\n' target executions exec/s corpus found
for t in $targets; do
    log="$out/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    corpus=$(find "$out/corpus/$t" -type f | wc -l)
    found=$(find "$out/artifacts/$t" -type f | wc -l)
    printf '%-20s %14s %10s %8s %8s\n' "$t" "${execs:-0}" "${rate:-0}" "$corpus" "$found"
    if [ "$found" != 0 ]; then
        status=1
        echo "  $t found $found input(s): $out/artifacts/$t (reproduce: cargo +nightly fuzz run -s none $t <file>)"
        grep -m3 -E "panicked|ERROR: libFuzzer|out-of-memory|timeout" "$log" | sed 's/^/    /'
    fi
done
exit $status
