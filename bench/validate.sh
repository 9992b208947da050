#!/usr/bin/env bash
# Benchmark (not a test): `bootcfg validate` against `cloud-init schema -c` on the same ~16 KB
# user-data (the EC2 limit for raw user-data), interleaved, with each tool's start-up floor
# measured in the same rounds (`bootcfg --version`, `bootcfg validate` of an empty file,
# `cloud-init --version`). Prints min/median/max wall, median CPU, per-round differences and
# the ratio, with the load average.
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

# Interleaved rounds: each round runs every command once, in the same order, so a change in
# the machine's load hits them all alike. Per run: wall time (spawn to reap, from Python's
# perf_counter around posix_spawn + wait4) and CPU time (user+sys of that child, from wait4's
# rusage). The start-up floors: `bootcfg --version` (process start, dynamic linking, argument
# parsing) and `bootcfg validate` of an empty file (the same plus reading a file and printing
# the verdict); `cloud-init --version` (chrooted Python start-up and imports) for cloud-init.
: > "$ud/empty.yaml"
# The floors under any native program here, in the same rounds: a C program that returns at once,
# and the same linked to libssl and libcrypto (which bootcfg links: TLS, and validate's X.509
# checks) but calling nothing in them.
command -v cc >/dev/null || { echo "bench/validate.sh: no C compiler (apt-get install build-essential)" >&2; exit 2; }
printf 'int main(void) { return 0; }\n' > "$ud/floor.c"
cc -O2 -o "$ud/floor-c" "$ud/floor.c"
cc -O2 -o "$ud/floor-ssl" "$ud/floor.c" -Wl,--no-as-needed -lssl -lcrypto
cloud_init_version=$(chroot "$root" cloud-init --version 2>&1 | awk '{print $2}')
python3 - "$runs" "$size" "$BOOTCFG" "$cloud_init_version" "$ud/user-data.yaml" "$ud/empty.yaml" "$root" "$ud" <<'PY'
import json, os, statistics as st, sys, time
runs, size, bootcfg, civ, udf, empty, root, ud = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
cmds = [
    ("floor: C, returns at once", [f"{ud}/floor-c"]),
    ("floor: C + libssl/libcrypto", [f"{ud}/floor-ssl"]),
    ("bootcfg --version", [bootcfg, "--version"]),
    ("bootcfg validate <empty file>", [bootcfg, "validate", empty]),
    ("bootcfg validate <16 KB>", [bootcfg, "validate", udf]),
    ("cloud-init --version", ["/usr/sbin/chroot", root, "cloud-init", "--version"]),
    ("cloud-init schema -c <16 KB>", ["/usr/sbin/chroot", root, "cloud-init", "schema", "-c", "/tmp/bench-user-data.yaml"]),
]
devnull = os.open(os.devnull, os.O_WRONLY)
fa = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
def once(argv):
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed with {status}")
    return wall * 1000, (ru.ru_utime + ru.ru_stime) * 1000
load0 = open("/proc/loadavg").read().split()[:3]
for argv in (c[1] for c in cmds):  # one untimed warm-up each (page cache)
    once(argv)
res = {name: [] for name, _ in cmds}
for _ in range(runs):
    for name, argv in cmds:
        res[name].append(once(argv))
load1 = open("/proc/loadavg").read().split()[:3]
wall = {n: [r[0] for r in v] for n, v in res.items()}
cpu = {n: [r[1] for r in v] for n, v in res.items()}
mmm = lambda xs: (min(xs), st.median(xs), max(xs))
print(f"user-data: {size} bytes; {runs} interleaved rounds (each round runs all seven commands once); "
      f"load average (1, 5, 15 min) start {' '.join(load0)}, end {' '.join(load1)}")
print(f"{'':32} {'wall ms  min / median / max':>30}   {'cpu ms (user+sys) median':>24}")
for n in wall:
    print(f"{n:32} {'%8.2f / %8.2f / %8.2f' % mmm(wall[n]):>30}   {st.median(cpu[n]):24.2f}")
B, E, V = wall["bootcfg validate <16 KB>"], wall["bootcfg validate <empty file>"], wall["bootcfg --version"]
C, CV = wall["cloud-init schema -c <16 KB>"], wall["cloud-init --version"]
paired = lambda a, b: mmm([x - y for x, y in zip(a, b)])
print("per-round differences (same round, so the same load), wall ms  min / median / max:")
print("  bootcfg validate <16 KB> - validate <empty file> (the 16 KB's own cost: read, decode, parse, check):  %.2f / %.2f / %.2f" % paired(B, E))
print("  bootcfg validate <16 KB> - bootcfg --version (all but process start-up):                              %.2f / %.2f / %.2f" % paired(B, V))
print("  cloud-init schema -c - cloud-init --version (all but interpreter start-up and imports):               %.2f / %.2f / %.2f" % paired(C, CV))
F = wall["floor: C + libssl/libcrypto"]
print("  bootcfg --version - floor: C + libssl/libcrypto (Rust runtime, bootcfg's own image, argument parsing): %.2f / %.2f / %.2f" % paired(V, F))
print("the ratio any program that loads libssl/libcrypto could reach here (cloud-init schema -c / that floor, of medians): %.0fx" % (st.median(C) / st.median(F)))
ratios = [c / b for c, b in zip(C, B)]
print("ratio (cloud-init/bootcfg), whole process, wall: %.1fx of medians; per round min / median / max %.1fx / %.1fx / %.1fx; cpu: %.1fx of medians"
      % (st.median(C) / st.median(B), *mmm(ratios), st.median(cpu["cloud-init schema -c <16 KB>"]) / st.median(cpu["bootcfg validate <16 KB>"])))
print(f"binaries: bootcfg {bootcfg}; cloud-init {civ} (chrooted in its Debian 12 root)")
print(json.dumps({"runs": runs, "bootcfg_ms_median": st.median(B), "cloudinit_ms_median": st.median(C),
                  "bootcfg_startup_ms_median": st.median(V), "ratio_wall_medians": round(st.median(C) / st.median(B), 2)}))
PY
rm -f "$root/tmp/bench-user-data.yaml"
