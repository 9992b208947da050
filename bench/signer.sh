#!/usr/bin/env bash
# Signer benchmark: CSR-submitted-to-signed latency through the autosign hook against a real
# relocatable puppetserver (moto S3 registry), a real agent end to end, the hook process alone,
# and the in-process decision time. Needs `sudo tests/setup.sh` first. Takes about 2 minutes
# (most of it the puppetserver start).
#
#   bench/signer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test -p signer --test puppet -- --ignored --nocapture bench_hook_latency_and_decision_time
