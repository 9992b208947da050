#!/usr/bin/env bash
# Benchmark (not a test): `bootcfg validate` against `cloud-init schema -c` on the same ~16 KB
# user-data (the EC2 limit for raw user-data). Prints mean wall time per run and the ratio.
#
#   bash bench/validate.sh                 # builds bootcfg --release, 20 runs each
#   RUNS=50 BOOTCFG=target/debug/bootcfg bash bench/validate.sh
#
# cloud-init comes from Debian's `cloud-init` package inside the test root that tests/setup.sh
# builds ($BOOTCFG_TEST_HOME/roots/cloudinit.tar, default /var/tmp/bootcfg-test); the tarball is
# unpacked once into $BOOTCFG_TEST_HOME/bench-root and run with chroot (needs root).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-20}
test_home=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
tarball="$test_home/roots/cloudinit.tar"
root=${BENCH_ROOT:-$test_home/bench-root}

if [[ $(id -u) -ne 0 ]]; then
  echo "bench/validate.sh: needs root (chroot into the Debian root with cloud-init)" >&2
  exit 2
fi
if [[ ! -x "$root/usr/bin/cloud-init" ]]; then
  if [[ ! -f "$tarball" ]]; then
    echo "bench/validate.sh: $tarball not found; run: sudo tests/setup.sh" >&2
    exit 2
  fi
  mkdir -p "$root"
  tar -xf "$tarball" -C "$root"
fi

if [[ -z "${BOOTCFG:-}" ]]; then
  (cd "$here" && cargo build --release -q -p bootcfg)
  BOOTCFG="$here/target/release/bootcfg"
fi

# The user-data: the apt: form with 16 keyed sources, packages and puppet, about 16 KB,
# valid for both tools (cloud-init's schema knows the same keys).
ud=$(mktemp -d)
trap 'rm -rf "$ud"' EXIT
key=$(sed 's/^/        /' "$here/tests/fixtures/userdata/keys/ed25519-cv25519.asc")
{
  echo "#cloud-config"
  echo "package_update: true"
  echo "package_upgrade: true"
  echo "apt:"
  echo "  preserve_sources_list: true"
  echo "  http_proxy: http://proxy.internal.example:3128/"
  echo "  conf: |"
  echo "    APT::Install-Recommends \"false\";"
  echo "  debconf_selections:"
  echo "    tz: tzdata tzdata/Areas select Etc"
  echo "  sources:"
  for i in $(seq 1 17); do
    echo "    repo$i:"
    echo "      source: deb [signed-by=\$KEY_FILE] http://apt$i.internal.example/debian \$RELEASE main"
    echo "      key: |"
    echo "$key"
  done
  echo "packages:"
  for i in $(seq 1 60); do echo "  - pkg$i"; done
  echo "  - [nginx, 1.22.1-9]"
  echo "puppet:"
  echo "  install_type: packages"
  echo "  conf:"
  echo "    agent:"
  echo "      server: puppet.internal.example"
  echo "      certname: \"%i\""
  echo "  csr_attributes:"
  echo "    custom_attributes:"
  echo "      1.2.840.113549.1.9.7: secret"
} > "$ud/user-data.yaml"
cp "$ud/user-data.yaml" "$root/tmp/bench-user-data.yaml"
size=$(stat -c %s "$ud/user-data.yaml")

# Both must accept the file, or the comparison is meaningless.
"$BOOTCFG" validate "$ud/user-data.yaml" >/dev/null
chroot "$root" cloud-init schema -c /tmp/bench-user-data.yaml >/dev/null

# Mean wall and CPU (user+sys, children included) milliseconds per run over $runs runs. CPU time
# is the steadier number on a busy machine.
measure() { # command...
  local TIMEFORMAT='%R %U %S' t
  t=$( { time (for _ in $(seq 1 "$runs"); do "$@" >/dev/null 2>&1; done) ; } 2>&1 )
  awk -v t="$t" -v n="$runs" 'BEGIN { split(t, a, " "); printf "%.1f %.1f\n", a[1] * 1000 / n, (a[2] + a[3]) * 1000 / n }'
}
read -r b_wall b_cpu < <(measure "$BOOTCFG" validate "$ud/user-data.yaml")
read -r c_wall c_cpu < <(measure chroot "$root" cloud-init schema -c /tmp/bench-user-data.yaml)
rm -f "$root/tmp/bench-user-data.yaml"

cloud_init_version=$(chroot "$root" cloud-init --version 2>&1 | awk '{print $2}')
printf 'user-data: %d bytes, %d runs each, load average %s\n' "$size" "$runs" "$(cut -d' ' -f1 /proc/loadavg)"
awk -v bw="$b_wall" -v bc="$b_cpu" -v cw="$c_wall" -v cc="$c_cpu" -v bin="$BOOTCFG" -v v="$cloud_init_version" 'BEGIN {
  printf "                           wall ms/run  cpu ms/run\n"
  printf "bootcfg validate          : %10.1f  %10.1f  (%s)\n", bw, bc, bin
  printf "cloud-init schema -c      : %10.1f  %10.1f  (cloud-init %s)\n", cw, cc, v
  printf "ratio (cloud-init/bootcfg): %9.1fx  %9.1fx\n", cw / bw, cc / bc
}'
