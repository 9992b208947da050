#!/usr/bin/env bash
# Signer benchmark: CSR-submitted-to-signed latency through the autosign hook against a real
# relocatable puppetserver (moto S3 registry), interleaved with the same server release running a
# no-op autosign executable (the floor: n=50 each, min/p50/p90/max and the ratio), a real agent
# end to end, the hook process alone, and the in-process decision time. Needs
# `sudo tests/setup.sh` first. Takes about 3 minutes per release (two puppetserver starts).
#
#   bench/signer.sh          # Puppet Server 7.9 (Debian 12) and 8.7 (Debian 13)
#   bench/signer.sh 7        # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
# The signer process measured is a release build (SIGNER=path to measure another binary).
if [ -z "${SIGNER:-}" ]; then
  cargo build -q --release -p signer
  target=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  SIGNER=$target/release/signer
fi
export BENCH_SIGNER=$SIGNER
case "${1:-both}" in
  7) tests=(--test puppet) ;;
  8) tests=(--test puppet8) ;;
  both) tests=(--test puppet --test puppet8) ;;
  *) echo "usage: bench/signer.sh [7|8]" >&2; exit 2 ;;
esac
exec cargo test -p signer "${tests[@]}" -- --ignored --nocapture bench_hook_latency_and_decision_time
