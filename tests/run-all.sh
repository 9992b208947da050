#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent), then runs every test.
# Run as root on Debian 12:   tests/run-all.sh
# Extra arguments go to `cargo test` (e.g. `tests/run-all.sh -p signer`).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tests/setup.sh
echo "== setup took $(( $(date +%s) - start ))s"
# One build serves every test binary; the harness finds the tools setup.sh installed.
cargo test --workspace --no-fail-fast "$@"
echo "== tests/run-all.sh took $(( $(date +%s) - start ))s"
