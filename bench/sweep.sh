#!/usr/bin/env bash
# Benchmark (not a test): `signer sweep` over N pending CSRs with registrations against a minimal
# client making only the CA API calls a sweep needs (list, fetch each, sign each; the signer's own
# HTTP client), on the same real puppetserver (no autosign) and moto S3 registry, interleaved for
# ROUNDS rounds with the order alternating. Prints min/median/max of each, the ratio of medians and
# the load average. Needs `sudo tests/setup.sh` first.
#
#   bench/sweep.sh                       # N=1000 CSRs a batch, 10 rounds (estimated: about 50 minutes on 2 cores)
#   N=250 ROUNDS=10 bench/sweep.sh       # smaller batches
#   bench/sweep.sh 8                     # against Puppet Server 8.7 instead of 7.9
set -euo pipefail
cd "$(dirname "$0")/.."
# The signer process measured is a release build (SIGNER=path to measure another binary).
if [ -z "${SIGNER:-}" ]; then
  cargo build -q --release -p signer
  target=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  SIGNER=$target/release/signer
fi
export BENCH_SIGNER=$SIGNER
case "${1:-7}" in
  7) test=puppet ;;
  8) test=puppet8 ;;
  *) echo "usage: bench/sweep.sh [7|8]" >&2; exit 2 ;;
esac
export BENCH_SWEEP_N="${N:-1000}" BENCH_SWEEP_ROUNDS="${ROUNDS:-10}"
exec cargo test -p signer --test "$test" -- --ignored --nocapture bench_sweep_over_pending_csrs
