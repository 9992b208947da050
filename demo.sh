#!/usr/bin/env bash
# The whole bootcfg flow on this machine, with no AWS account: moto (EC2 + S3), a real Puppet
# Server whose autosign is the signer, `conductor launch`, `bootcfg run` in a fresh Debian root
# (13 with Puppet 8 by default, or 12 with Puppet 7) fed by an IMDSv2 endpoint on 127.0.0.1, the certificate signed during submission, a catalog
# applied, and four attacks left unsigned (the first: an EC2 API reader racing the instance). Each step says what it does and shows the evidence.
#
#   sudo ./demo.sh               # run it: the instance runs Debian 13, Puppet 8 (Debian's stable release)
#   sudo ./demo.sh --debian 12   # the instance runs Debian 12, Puppet 7
#   sudo ./demo.sh --keep        # also keep the work dir (configs, audit log) and print its path
#
# Needs root (debootstrap roots, chroot, namespaces) and a Debian 12 (bookworm) host. It runs
# tests/setup.sh first (idempotent: installs puppetserver, puppet-agent, debootstrap and a moto
# venv, builds the Debian roots; state in /var/tmp/bootcfg-test), then builds the workspace.
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh needs root: it builds Debian roots and runs bootcfg in them with chroot and namespaces." >&2
  echo "Run: sudo ./demo.sh" >&2
  exit 1
fi
if ! grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "demo.sh needs Debian 12 (bookworm); this machine is: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")." >&2
  exit 1
fi
command -v cargo >/dev/null || { echo "demo.sh needs Rust (cargo): see https://rustup.rs" >&2; exit 1; }

echo "== demo: installing what it needs (tests/setup.sh; fast when already done)"
tests/setup.sh > /tmp/bootcfg-demo-setup.log 2>&1 || { tail -40 /tmp/bootcfg-demo-setup.log >&2; echo "tests/setup.sh failed; full log: /tmp/bootcfg-demo-setup.log" >&2; exit 1; }
setup_done=$(date +%s)
echo "   done in $(( setup_done - start )) s (log: /tmp/bootcfg-demo-setup.log)"

echo "== demo: building the workspace (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet
build_done=$(date +%s)
echo "   done in $(( build_done - setup_done )) s"

# Wherever cargo puts its output (CARGO_TARGET_DIR, a build.target-dir setting, else ./target).
target_dir=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
status=0
"$target_dir/debug/demo" "$@" || status=$?
end=$(date +%s)
echo
echo "== demo.sh took $(( end - start )) s: setup $(( setup_done - start )) s, build $(( build_done - setup_done )) s, scenario $(( end - build_done )) s"
exit $status
