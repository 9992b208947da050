#!/usr/bin/env bash
# Build every fuzz target, then run each for a bounded time. Exits non-zero on any crash
# (panic, failed assertion, sanitizer report), hang (-timeout) or out-of-memory; the input is
# left in fuzz/artifacts/<target>/. Called by .ci/run; by hand: fuzz/ci.sh [seconds per target].
#
# Environment: BOOTCFG_FUZZ_TARGET_DIR (default /var/tmp/bootcfg-fuzz-target, outside the clone
# so the next run reuses the dependency build); BOOTCFG_FUZZ_SANITIZER (default none: the code
# under test is safe Rust plus the system's uninstrumented libssl, and without AddressSanitizer
# the targets run 3-4x more inputs per second and build in 3.5 instead of 5 minutes cold; panics,
# overflow checks and debug assertions still fail the run. `address` adds ASan and LeakSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
target_dir=${BOOTCFG_FUZZ_TARGET_DIR:-/var/tmp/bootcfg-fuzz-target}
sanitizer=${BOOTCFG_FUZZ_SANITIZER:-none}
export CARGO_TERM_COLOR=never
# --target-dir below is the only target dir (also keeps `cargo install` out of the main one).
unset CARGO_TARGET_DIR

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

fuzz=(cargo +nightly fuzz)
opts=(--fuzz-dir fuzz --target-dir "$target_dir" --sanitizer "$sanitizer")

fuzz/seed.sh
start=$(date +%s)
"${fuzz[@]}" build "${opts[@]}"
echo "== fuzz build took $(( $(date +%s) - start ))s"

failed=()
mkdir -p fuzz/artifacts
for target in $("${fuzz[@]}" list --fuzz-dir fuzz); do
    echo "== fuzz $target for ${seconds}s"
    log=fuzz/artifacts/$target.log
    # -timeout: one input running this long is a bug (a hang), not a slow machine.
    if "${fuzz[@]}" run "${opts[@]}" "$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE))|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    else
        tail -n 200 "$log"
        failed+=("$target")
    fi
done
if (( ${#failed[@]} )); then
    echo "== fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== fuzz: no crash in $(( $(date +%s) - start ))s"
