#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 or 13 machine (as root), idempotently.
# The test harness (crate `testkit`) fails with "run tests/setup.sh" when any of this is missing.
#
#   sudo tests/setup.sh
#
# State lives in $BOOTCFG_TEST_HOME (default /var/tmp/bootcfg-test), outside the checkout, so a
# second run on the same machine is fast:
#   venv/                 python venv with moto (tests/requirements-test.txt)
#   roots/*.tar           debootstrap'd bookworm and trixie roots (see tests/setup-roots.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export BOOTCFG_TEST_HOME=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
export DEBIAN_FRONTEND=noninteractive
step() { printf '\n== setup: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "tests/setup.sh must run as root (it installs Debian packages and builds chroots)" >&2; exit 1; }
# Debian 12 (bookworm) or 13 (trixie): the package names below are the same in both (trixie's
# puppetserver is 8.7 and pulls Java 21 itself; the harness then runs Puppet 8 as the "host" server).
grep -Eq '^VERSION_CODENAME=(bookworm|trixie)$' /etc/os-release || { echo "tests/setup.sh expects Debian 12 (bookworm) or 13 (trixie); this is: $(. /etc/os-release; echo "$PRETTY_NAME")" >&2; exit 1; }
mkdir -p "$BOOTCFG_TEST_HOME"

# Package postinsts must never start daemons on the test host.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
fi

step "Debian packages"
# Every package the build and the tests need, named (a fresh Debian 12 host with only Rust has
# none of them): libssl-dev and pkg-config for the openssl crate, python3-venv for moto's venv,
# gcc for crates that build C. Tests also call openssl, procps (kill), util-linux (unshare,
# setsid, flock) and python3 directly.
pkgs=(puppetserver puppet-agent debootstrap gnupg dpkg-dev curl ca-certificates libssl-dev pkg-config gcc util-linux openssl procps python3 python3-venv)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
else
  echo "all present"
fi

# debootstrap checks Debian 13's Release files with the trixie keys, which only newer
# debian-archive-keyring packages of Debian 12 carry.
if [ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]; then
  apt-get update -qq
  apt-get install -y -qq debian-archive-keyring
fi

step "moto (python venv)"
venv=$BOOTCFG_TEST_HOME/venv
if ! cmp -s "$here/requirements-test.txt" "$venv/requirements-test.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements-test.txt"
  cp "$here/requirements-test.txt" "$venv/requirements-test.txt"
fi
"$venv/bin/moto_server" --help >/dev/null

if [ -x "$here/setup-roots.sh" ]; then
  step "Debian roots"
  "$here/setup-roots.sh"
fi

step "done: state in $BOOTCFG_TEST_HOME"
