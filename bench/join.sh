#!/usr/bin/env bash
# Benchmark (not a test): a full first boot and the time to join, bootcfg against Debian's
# cloud-init 22.4 with the same signer hook (a real puppetserver 7.9, the registry on moto S3), the
# same user-data (from `conductor launch`) and the same local mirror of real Debian packages:
# apt source and key, apt-get update, jq, puppet-agent, puppet.conf, CA, csr_attributes, one
# `puppet agent` run. ROUNDS interleaved rounds (order alternating), one boot of each a round.
# Reports, from the start of each boot: puppet-agent installed, certificate signed, catalog
# applied (joined) and the whole boot, min/median/max, ratios of medians, the load average.
# Needs `sudo tests/setup.sh` first and Debian's archive (the mirror's packages are downloaded
# once per run, before the timing).
#
#   bench/join.sh                 # ROUNDS=10 (about 25 minutes on 2 cores)
#   ROUNDS=2 bench/join.sh
#   BOOTCFG=target/debug/bootcfg SIGNER=target/debug/signer bench/join.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [ -z "${BOOTCFG:-}" ] || [ -z "${SIGNER:-}" ]; then
  # one package a build, so bootcfg does not get the signer's features
  cargo build -q --release -p bootcfg
  cargo build -q --release -p signer
fi
export BENCH_BOOTCFG="${BOOTCFG:-$target/release/bootcfg}" BENCH_SIGNER="${SIGNER:-$target/release/signer}"
export JOIN_ROUNDS="${ROUNDS:-10}"
cargo build -q --workspace --bins
exec cargo test -q -p testkit --test bench_join -- --ignored --nocapture bench_first_boot_and_time_to_join
