#!/usr/bin/env bash
# Benchmark (not a test): bootcfg against Debian's cloud-init 22.4 on the same user-data, in
# identical roots (fresh copies of $BOOTCFG_TEST_HOME/roots/cloudinit.tar plus puppet-agent), both reading it from the same NoCloud seed, both run in the same namespace runner.
#
#   bench/agent-overhead.sh                       # RUNS=10, target/release/bootcfg (built if missing)
#   RUNS=3 BOOTCFG=target/debug/bootcfg bench/agent-overhead.sh
#
# Method: the user-data exercises the modules both tools share (apt conf, debconf selections,
# puppet.conf + CA + csr_attributes) with the expensive steps made no-ops
# (no apt update, no package install, no puppet run), so what is left is each agent's own cost:
# start-up, datasource, parsing, file writes, and the one child both run (debconf-set-selections).
# cloud-init runs its four boot stages (init --local, init, modules config, modules final; the
# harness's cloud.cfg.d limits the modules); bootcfg runs `bootcfg run --root`. Reported: median
# wall time, CPU (user+sys, children included), peak RSS of the largest process in the tree, and
# bootcfg's own time (its result.json: duration minus time in child processes).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
home=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
tarball=$home/roots/cloudinit.tar
runs=${RUNS:-10}
[ "$(id -u)" = 0 ] || { echo "bench/agent-overhead.sh needs root (chroot, namespaces)" >&2; exit 2; }
[ -f "$tarball" ] || { echo "bench/agent-overhead.sh: $tarball is missing; run: sudo tests/setup.sh" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/agent-overhead.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
if [ -z "${BOOTCFG:-}" ]; then
  [ -x "$here/target/release/bootcfg" ] || (cd "$here" && cargo build --release -q -p bootcfg)
  BOOTCFG=$here/target/release/bootcfg
fi
mkdir -p "$home/tmp"
work=$(mktemp -d -p "$home/tmp" bench-agent-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

{
  echo '#cloud-config'
  echo 'apt:'
  echo '  preserve_sources_list: true'
  echo '  conf: |'
  echo '    Acquire::Retries "3";'
  echo '  debconf_selections:'
  echo '    tzdata: |'
  echo '      tzdata tzdata/Areas select Europe'
  echo 'package_update: false'
  echo 'puppet:'
  echo '  install: false'
  echo '  start_service: false'
  echo '  exec: false'
  echo '  conf:'
  echo '    main:'
  echo '      server: puppet.bench.invalid'
  echo '      certname: "%i"'
  echo '    ca_cert: |'
  sed 's/^/      /' "$here/examples/puppet-ca.pem"
  echo '  csr_attributes:'
  echo '    custom_attributes:'
  echo '      1.2.840.113549.1.9.7: bench-secret-0123456789abcdef0123456789abcdef'
  echo '    extension_requests:'
  echo '      pp_instance_id: "%i"'
} > "$work/user-data"

# The template: cloudinit.tar plus Debian's puppet-agent (cloud-init's puppet module runs
# `puppet config print` even with install: false), installed once per run, outside the timing.
template=$work/template
mkdir -p "$template"
tar -C "$template" --numeric-owner --xattrs --xattrs-include='*' -xf "$tarball"
echo "== installing puppet-agent into the template root (once, not timed)" >&2
unshare --mount --uts --pid --fork --kill-child --propagation private /bin/sh -c '
  R="$1"; mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"; mount --bind /dev/pts "$R/dev/pts"
  exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -o Dpkg::Options::=--force-confold puppet-agent' ns "$template" > "$work/template.log" 2>&1 \
  || { tail -30 "$work/template.log" >&2; echo "installing puppet-agent into the template failed" >&2; exit 1; }
printf '[main]\nlogdir = /var/log/puppet\n' > "$template/etc/puppet/puppet.conf"   # the image's own

fresh() { # dir: a fresh copy of the template root, seeded
  rm -rf "$1"; cp -a "$template" "$1"
  mkdir -p "$1/var/lib/cloud/seed/nocloud"
  cp "$work/user-data" "$1/var/lib/cloud/seed/nocloud/user-data"
  printf 'instance-id: i-0bench0000000000\nlocal-hostname: bench\n' > "$1/var/lib/cloud/seed/nocloud/meta-data"
}
# argv prefix: private namespaces with proc/sys/devpts mounted into ROOT (next argument), then the
# rest of argv (not chrooted), with a clean environment.
ns=(unshare --mount --uts --pid --fork --kill-child --propagation private /bin/sh -c '
    R="$1"; shift
    mount -t proc proc "$R/proc" && mount -t sysfs sysfs "$R/sys" && mount --bind /dev/pts "$R/dev/pts" || exit 125
    exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"' ns)
# One measured run, traced by bench/proctrace.py (ptrace: stops only at forks, execs and exits):
# writes its JSON (wall, the tool's own CPU and peak RSS, its children's wall, CPU and peak RSS).
measure() { # label json argv...
  local label=$1 json=$2; shift 2
  "$@" > "$work/$label.out" 2>&1 || {
    echo "$label failed:" >&2; tail -30 "$work/$label.out" >&2; exit 1; }
  [ -s "$json" ] || { echo "$label: no measurement" >&2; exit 1; }
}

# Both must have done the work, or the comparison is meaningless.
check_applied() { # root tool
  grep -q '^server *= *puppet.bench.invalid' "$1/etc/puppet/puppet.conf" \
    && grep -q 'bench-secret' "$1/etc/puppet/csr_attributes.yaml" \
    && grep -q 'Acquire::Retries "3"' "$1"/etc/apt/apt.conf.d/* \
    && grep -q 'BEGIN CERTIFICATE' "$1/var/lib/puppet/ssl/certs/ca.pem" \
    || { echo "$2 did not apply the user-data in $1" >&2; exit 1; }
}

stages=(-- cloud-init init --local -- cloud-init init -- cloud-init modules --mode config -- cloud-init modules --mode final)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq 1 "$runs"); do
  r=$work/root-b; fresh "$r"
  measure bootcfg "$work/b$i.json" "${ns[@]}" "$r" python3 "$here/bench/proctrace.py" "$work/b$i.json" --proc "$r/proc" -- "$BOOTCFG" run --root "$r"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["outcome"]=="success", d; json.dump({"own_ms": d["duration_ms"]-d["child_ms"], "duration_ms": d["duration_ms"]}, open(sys.argv[2], "w"))' \
    "$r/var/lib/bootcfg/result.json" "$work/b$i.result.json"
  check_applied "$r" bootcfg
  r=$work/root-c; fresh "$r"
  measure cloudinit "$work/c$i.json" "${ns[@]}" "$r" python3 "$here/bench/proctrace.py" "$work/c$i.json" --chroot "$r" --proc "$r/proc" --concurrent '/bin/sh -c tee' "${stages[@]}"
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["v1"]["errors"]; assert e==[], e' "$r/var/lib/cloud/data/result.json"
  grep -q 'Running module apt-configure' "$r/var/log/cloud-init.log" && grep -q 'Running module puppet' "$r/var/log/cloud-init.log" \
    || { echo "cloud-init did not run apt-configure and puppet" >&2; exit 1; }
  check_applied "$r" cloud-init
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# bootcfg validate's peak RSS (no child at all), for comparison with run's.
rss_validate=$(/usr/bin/time -f '%M' "$BOOTCFG" validate "$work/user-data" 2>&1 >/dev/null | tail -1)
ci_version=$(chroot "$work/root-c" cloud-init --version 2>&1 | awk '{print $2}')

python3 - "$work" "$runs" "$BOOTCFG" "$ci_version" "$rss_validate" "$load_start" "$load_end" <<'PY'
import json, statistics as st, sys
work, runs, binary, civ, rss_v, l0, l1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
load = lambda k, i: json.load(open(f"{work}/{k}{i}.json"))
b = [load("b", i) for i in range(1, runs + 1)]
c = [load("c", i) for i in range(1, runs + 1)]
res = [load("b", f"{i}.result") for i in range(1, runs + 1)]
med = lambda xs: st.median(xs)
mmm = lambda xs: "%s / %s / %s" % tuple(f"{x:.3f}" for x in (min(xs), med(xs), max(xs)))
wall = lambda d: d["wall_s"]
cpu = lambda d: d["tool_cpu_s"] + d["children_cpu_s"]
own_wall = lambda d: d["wall_s"] - d["children_wall_s"]
own_cpu = lambda d: d["tool_cpu_s"]
peak = lambda d: max(d["tool_hwm_kb"], d["children_hwm_kb"]) / 1024
print(f"same user-data, identical roots (cloudinit.tar copies), {runs} interleaved runs each (bootcfg, cloud-init, bootcfg, ...); "
      f"load average (1, 5, 15 min) start {l0}, end {l1}")
print("Whole run: cloud-init's 4 Python stage processes against one native binary, each with the children it starts (listed below); no apt run, no package install, no Puppet run:")
print(f"                               {'wall s  min / median / max':>26}   {'cpu s median':>12}  peak RSS MB (largest process)")
print(f"bootcfg run                  : {mmm([wall(d) for d in b]):>26}   {med([cpu(d) for d in b]):12.3f}  {med([peak(d) for d in b]):6.1f}")
print(f"cloud-init {civ} (4 stages) : {mmm([wall(d) for d in c]):>26}   {med([cpu(d) for d in c]):12.3f}  {med([peak(d) for d in c]):6.1f}")
print(f"ratio (cloud-init/bootcfg), whole run (start-ups vs one binary): wall {med([wall(d) for d in c]) / med([wall(d) for d in b]):.1f}x, cpu {med([cpu(d) for d in c]) / med([cpu(d) for d in b]):.1f}x (of medians)")
print("Each tool's own time (its own processes only; children = every process it started, e.g. debconf-set-selections, puppet):")
print(f"                               {'own wall s (wall - children)':>28}  {'own cpu s':>26}  children (median): n, wall s, cpu s")
for name, rows in (("bootcfg run", b), (f"cloud-init {civ} (4 stages)", c)):
    print(f"{name:29}: {mmm([own_wall(d) for d in rows]):>28}  {mmm([own_cpu(d) for d in rows]):>26}  "
          f"{med([d['children'] for d in rows]):.0f}, {med([d['children_wall_s'] for d in rows]):.3f}, {med([d['children_cpu_s'] for d in rows]):.3f}")
print(f"ratio (cloud-init/bootcfg), own time: wall {med([own_wall(d) for d in c]) / med([own_wall(d) for d in b]):.1f}x, cpu {med([own_cpu(d) for d in c]) / med([own_cpu(d) for d in b]):.1f}x (of medians)")
print(f"bootcfg's own time by its result.json (duration - children), ms min / median / max: "
      f"{min(r['own_ms'] for r in res)} / {med([r['own_ms'] for r in res]):.0f} / {max(r['own_ms'] for r in res)} of median {med([r['duration_ms'] for r in res]):.0f} ms")
print(f"bootcfg peak RSS (VmHWM at exit, own process only): run {med([d['tool_hwm_kb'] for d in b]) / 1024:.1f} MB "
      f"(min {min(d['tool_hwm_kb'] for d in b) / 1024:.1f}, max {max(d['tool_hwm_kb'] for d in b) / 1024:.1f}), its largest child {med([d['children_hwm_kb'] for d in b]) / 1024:.1f} MB; "
      f"validate {rss_v / 1024:.1f} MB (GNU time); cloud-init's largest stage {med([d['tool_hwm_kb'] for d in c]) / 1024:.1f} MB")
for name, d in (("bootcfg", b[-1]), ("cloud-init", c[-1])):
    kids = sorted((k for cmd in d["commands"] for k in cmd["child_cmds"]), reverse=True)
    print(f"{name}'s slowest children in the last run (s, command): " + "; ".join(f"{t:.3f} {cmd[:70]}" for t, cmd in kids[:4]))
print("(cloud-init's `/bin/sh -c tee` of its output runs beside each stage: not subtracted from its own wall)")
print(f"binary: {binary}")
print(json.dumps({"bootcfg_wall_s": med([wall(d) for d in b]), "cloudinit_wall_s": med([wall(d) for d in c]),
                  "bootcfg_own_wall_s": med([own_wall(d) for d in b]), "cloudinit_own_wall_s": med([own_wall(d) for d in c]),
                  "bootcfg_run_rss_kb": med([d['tool_hwm_kb'] for d in b])}))
PY
