#!/usr/bin/env bash
# Benchmark (not a test): bootcfg against Debian's cloud-init 22.4 on the same user-data, in
# identical roots (fresh copies of $BOOTCFG_TEST_HOME/roots/cloudinit.tar plus puppet-agent), both reading it from the same NoCloud seed, both run in the same namespace runner.
#
#   bench/agent-overhead.sh                       # RUNS=5, target/release/bootcfg (built if missing)
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
runs=${RUNS:-5}
[ "$(id -u)" = 0 ] || { echo "bench/agent-overhead.sh needs root (chroot, namespaces)" >&2; exit 2; }
[ -f "$tarball" ] || { echo "bench/agent-overhead.sh: $tarball is missing; run: sudo tests/setup.sh" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/agent-overhead.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
if [ -z "${BOOTCFG:-}" ]; then
  [ -x "$here/target/release/bootcfg" ] || (cd "$here" && cargo build --release -q -p bootcfg)
  BOOTCFG=$here/target/release/bootcfg
fi
mkdir -p "$home/tmp"
work=$(mktemp -d -p "$home/tmp" bench-agent-XXXXXX)
trap 'rm -rf "$work"' EXIT

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
# One measured run: prints "wall_s cpu_s maxrss_kb".
measure() { # label argv...
  local label=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" > "$work/$label.out" 2>&1 || {
    echo "$label failed:" >&2; tail -30 "$work/$label.out" >&2; exit 1; }
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$work/time"
}

# Both must have done the work, or the comparison is meaningless.
check_applied() { # root tool
  grep -q '^server *= *puppet.bench.invalid' "$1/etc/puppet/puppet.conf" \
    && grep -q 'bench-secret' "$1/etc/puppet/csr_attributes.yaml" \
    && grep -q 'Acquire::Retries "3"' "$1"/etc/apt/apt.conf.d/* \
    && grep -q 'BEGIN CERTIFICATE' "$1/var/lib/puppet/ssl/certs/ca.pem" \
    || { echo "$2 did not apply the user-data in $1" >&2; exit 1; }
}

: > "$work/bootcfg.rows"; : > "$work/cloudinit.rows"
stages='cloud-init init --local && cloud-init init && cloud-init modules --mode config && cloud-init modules --mode final'
for i in $(seq 1 "$runs"); do
  r=$work/root-b; fresh "$r"
  row=$(measure bootcfg "${ns[@]}" "$r" "$BOOTCFG" run --root "$r")
  own=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["outcome"]=="success", d; print(d["duration_ms"]-d["child_ms"], d["duration_ms"])' "$r/var/lib/bootcfg/result.json")
  check_applied "$r" bootcfg
  echo "$row $own" >> "$work/bootcfg.rows"
  r=$work/root-c; fresh "$r"
  row=$(measure cloudinit "${ns[@]}" "$r" chroot "$r" /bin/sh -c "$stages")
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["v1"]["errors"]; assert e==[], e' "$r/var/lib/cloud/data/result.json"
  grep -q 'Running module apt-configure' "$r/var/log/cloud-init.log" && grep -q 'Running module puppet' "$r/var/log/cloud-init.log" \
    || { echo "cloud-init did not run apt-configure and puppet" >&2; exit 1; }
  check_applied "$r" cloud-init
  echo "$row" >> "$work/cloudinit.rows"
done

# bootcfg's own peak RSS with no child at all: validate and plan of the same user-data.
rss_validate=$(/usr/bin/time -f '%M' "$BOOTCFG" validate "$work/user-data" 2>&1 >/dev/null | tail -1)
fresh "$work/root-p"
rss_plan=$(/usr/bin/time -f '%M' -o "$work/time" "$BOOTCFG" plan --root "$work/root-p" --user-data "$work/user-data" --instance-id i-0bench0000000000 >/dev/null 2>&1; cat "$work/time")
ci_version=$(chroot "$work/root-p" cloud-init --version 2>&1 | awk '{print $2}')

python3 - "$work/bootcfg.rows" "$work/cloudinit.rows" "$runs" "$BOOTCFG" "$ci_version" "$rss_validate" "$rss_plan" <<'PY'
import statistics as st, sys, json
def rows(p): return [list(map(float, l.split())) for l in open(p) if l.strip()]
b, c = rows(sys.argv[1]), rows(sys.argv[2])
runs, binary, civ, rss_v, rss_p = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
med = lambda rs, i: st.median(r[i] for r in rs)
bw, bc, bm, bo, bd = (med(b, i) for i in range(5))
cw, cc, cm = (med(c, i) for i in range(3))
print(f"same user-data, identical roots (cloudinit.tar copies), {runs} runs each, medians; load average {open('/proc/loadavg').read().split()[0]}")
print(f"                              wall s   cpu s  peak RSS MB (largest process in tree)")
print(f"bootcfg run                 : {bw:6.2f}  {bc:6.2f}  {bm/1024:6.1f}   ({binary})")
print(f"cloud-init {civ} (4 stages) : {cw:6.2f}  {cc:6.2f}  {cm/1024:6.1f}")
print(f"ratio (cloud-init/bootcfg)  : {cw/bw:5.1f}x  {cc/bc:5.1f}x")
print(f"bootcfg's own time (result.json duration - children): {bo:.0f} ms of {bd:.0f} ms")
print(f"bootcfg peak RSS, no children: validate {rss_v/1024:.1f} MB, plan {rss_p/1024:.1f} MB")
print(json.dumps({"bootcfg_wall_s": bw, "cloudinit_wall_s": cw, "wall_ratio": round(cw/bw, 2), "cpu_ratio": round(cc/bc, 2), "bootcfg_own_ms": bo, "bootcfg_rss_plan_kb": rss_p}))
PY
