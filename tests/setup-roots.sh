#!/usr/bin/env bash
# Builds the Debian 12 (bookworm) and 13 (trixie) roots the end-to-end tests copy (one fresh copy
# per test).
# Called by tests/setup.sh; can be run alone (as root):
#
#   sudo tests/setup-roots.sh            # idempotent: ~0.1 s when the roots are up to date
#   sudo tests/setup-roots.sh --force    # rebuild everything
#
# Output in $BOOTCFG_TEST_HOME/roots/ (default /var/tmp/bootcfg-test/roots):
#   base.tar       debootstrap --variant=minbase bookworm, with the fix-ups a chroot needs:
#                  apt sources = the host's mirror (incl. -updates and -security), policy-rc.d exit 101,
#                  /etc/hosts, resolv.conf, `apt-get update` done, `apt-get clean`
#   cloudinit.tar  base + Debian's cloud-init + gnupg (cloud-init needs gpg for `key:`), a harness
#                  override /etc/cloud/cloud.cfg.d/99-bootcfg-test.cfg (only apt-configure,
#                  package-update-upgrade-install and puppet; no network, no hostname) and
#                  `service`/`systemctl` stubs in /usr/local/sbin that record their argv in
#                  /var/log/service-stub.log and start nothing
#   base-trixie.tar, cloudinit-trixie.tar
#                  the same recipe for Debian 13 (trixie): cloud-init 25.1, apt 3.0
#   puppetserver-trixie.tar
#                  base-trixie + trixie's puppetserver (8.x) and puppet-agent (8.x); testkit::puppet
#                  runs Puppet Server 8 from a copy of it (Puppet 7.9 runs from the host's packages)
#   *.stamp        the ROOTS_VERSION each tarball was built with; bump ROOTS_VERSION when the
#                  recipe below changes so every machine rebuilds. Tarballs older than
#                  $BOOTCFG_ROOTS_MAX_AGE_DAYS (default 7) are rebuilt too (stale apt lists).
#
# Every command inside a root runs in private mount, UTS and PID namespaces (see `in_root`), so
# no mount, hostname change or daemon outlives it.
set -euo pipefail

ROOTS_VERSION=1
MAX_AGE_DAYS=${BOOTCFG_ROOTS_MAX_AGE_DAYS:-7}
export BOOTCFG_TEST_HOME=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
roots=$BOOTCFG_TEST_HOME/roots
force=0
[ "${1:-}" = --force ] && force=1

[ "$(id -u)" = 0 ] || { echo "setup-roots.sh must run as root (debootstrap, chroot): sudo tests/setup.sh" >&2; exit 1; }
for tool in debootstrap unshare tar; do
  command -v "$tool" >/dev/null || { echo "setup-roots.sh: $tool is missing; run sudo tests/setup.sh" >&2; exit 1; }
done
mkdir -p "$roots" "$BOOTCFG_TEST_HOME/tmp"

# One builder at a time (two test runs may call setup concurrently).
exec 9>"$roots/.lock"
flock 9

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '   roots: %s\n' "$*"; }

# Run argv inside root $1: private mount/UTS/PID namespaces, proc/sys/devpts mounted only there,
# clean environment. Everything started inside dies with the namespace.
in_root() {
  local r
  r=$(readlink -f "$1"); shift
  unshare --mount --uts --pid --fork --propagation private /bin/sh -c '
    R="$1"; shift
    mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"; mount --bind /dev/pts "$R/dev/pts"
    exec chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
         HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"' in-root "$r" "$@"
}

fresh() { # name -> true when $roots/$name.tar is missing or stale
  [ "$force" = 1 ] && return 0
  [ -s "$roots/$1.tar" ] && [ "$(cat "$roots/$1.stamp" 2>/dev/null)" = "$ROOTS_VERSION" ] || return 0
  # The apt lists inside go stale as the mirror moves on (point releases remove old .debs).
  if [ -n "$(find "$roots/$1.tar" -mtime +"$MAX_AGE_DAYS")" ]; then
    say "$1.tar is older than $MAX_AGE_DAYS days: rebuilding"
    return 0
  fi
  return 1
}

snapshot() { # dir name: tar the tree atomically, then stamp it
  local t0; t0=$(now)
  tar -C "$1" --numeric-owner --xattrs --xattrs-include='*' -cf "$roots/$2.tar.part" .
  mv -f "$roots/$2.tar.part" "$roots/$2.tar"
  echo "$ROOTS_VERSION" > "$roots/$2.stamp"
  say "$2.tar: $(du -h "$roots/$2.tar" | cut -f1), tar took $(elapsed "$t0") s"
}

unpack() { # name dir
  rm -rf "$2"; mkdir -p "$2"
  tar -C "$2" --numeric-owner --xattrs --xattrs-include='*' -xf "$roots/$1.tar"
}

apt_install() { # dir pkgs...
  local d=$1; shift
  in_root "$d" apt-get install -y -q -o Dpkg::Options::=--force-confold "$@"
  in_root "$d" apt-get clean
}

total0=$(now)

# The mirror the host already uses (the machine may reach only that one), rewritten per suite.
host_src=/etc/apt/sources.list.d/debian.sources
[ -r "$host_src" ] || { echo "setup-roots.sh: $host_src not found; the roots take their mirror from it" >&2; exit 1; }
host_suite=$(. /etc/os-release && echo "$VERSION_CODENAME")

# build_suite SUITE TAG: base$TAG.tar and cloudinit$TAG.tar (TAG "" for bookworm, "-trixie" for trixie)
build_suite() {
  local suite=$1 tag=$2 build_dir=$roots/build$2 t0 mirror
  if fresh "base$tag"; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' "$host_src")
    say "debootstrap --variant=minbase $suite from $mirror"
    rm -rf "$build_dir"
    t0=$(now)
    debootstrap --variant=minbase "$suite" "$build_dir" "$mirror" > "$roots/debootstrap$tag.log" 2>&1 || {
      tail -n 30 "$roots/debootstrap$tag.log" >&2; echo "setup-roots.sh: debootstrap $suite failed (log: $roots/debootstrap$tag.log)" >&2; exit 1; }
    say "debootstrap $suite took $(elapsed "$t0") s"
    t0=$(now)
    rm -f "$build_dir/etc/apt/sources.list"
    # deb822 debian.sources, as Debian 12 and 13 images configure apt, with this suite's names
    sed "s/\b$host_suite\b/$suite/g" "$host_src" > "$build_dir/etc/apt/sources.list.d/debian.sources"
    printf '#!/bin/sh\n# test roots: package scripts never start daemons\nexit 101\n' > "$build_dir/usr/sbin/policy-rc.d"
    chmod 755 "$build_dir/usr/sbin/policy-rc.d"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$build_dir/etc/hosts"
    rm -f "$build_dir/etc/resolv.conf"; cp -L /etc/resolv.conf "$build_dir/etc/resolv.conf"
    in_root "$build_dir" apt-get update -q > "$roots/apt-update$tag.log" 2>&1 || {
      cat "$roots/apt-update$tag.log" >&2; echo "setup-roots.sh: apt-get update in the $suite base root failed" >&2; exit 1; }
    in_root "$build_dir" apt-get clean
    say "fix-ups + apt-get update took $(elapsed "$t0") s"
    snapshot "$build_dir" "base$tag"
    rm -rf "$build_dir"
    rm -f "$roots/cloudinit$tag.stamp" "$roots/puppetserver$tag.stamp" # derived from base
  else
    say "base$tag.tar ($suite) is up to date (v$ROOTS_VERSION)"
  fi

  if fresh "cloudinit$tag"; then
    t0=$(now)
    unpack "base$tag" "$build_dir"
    say "unpacked base$tag in $(elapsed "$t0") s; installing cloud-init + gnupg"
    t0=$(now)
    # With Recommends (eatmydata, sudo, ...), as on a real cloud image.
    apt_install "$build_dir" cloud-init gnupg > "$roots/cloudinit-install$tag.log" 2>&1 || {
      tail -n 30 "$roots/cloudinit-install$tag.log" >&2; echo "setup-roots.sh: installing cloud-init in $suite failed" >&2; exit 1; }
    say "cloud-init + gnupg install took $(elapsed "$t0") s"
    cat > "$build_dir/etc/cloud/cloud.cfg.d/99-bootcfg-test.cfg" <<'CFG'
# bootcfg test harness: no network, hostname or disk side effects; only the modules under comparison.
datasource_list: [ NoCloud, None ]
network: {config: disabled}
preserve_hostname: true
manage_etc_hosts: false
cloud_init_modules: []
cloud_config_modules: [apt-configure]
cloud_final_modules: [package-update-upgrade-install, puppet]
CFG
    for stub in service systemctl; do
      cat > "$build_dir/usr/local/sbin/$stub" <<STUB
#!/bin/sh
# bootcfg test harness stub: records its argv, starts nothing.
echo "$stub \$*" >> /var/log/service-stub.log
exit 0
STUB
      chmod 755 "$build_dir/usr/local/sbin/$stub"
    done
    snapshot "$build_dir" "cloudinit$tag"
    rm -rf "$build_dir"
  else
    say "cloudinit$tag.tar ($suite) is up to date (v$ROOTS_VERSION)"
  fi
}

# puppetserver$TAG.tar: base$TAG + that release's puppetserver and puppet-agent (Debian 13: 8.x),
# which testkit::puppet runs in a copy of this root (no daemon started here: policy-rc.d).
build_puppetserver() {
  local suite=$1 tag=$2 build_dir=$roots/build$2 t0
  if fresh "puppetserver$tag"; then
    t0=$(now)
    unpack "base$tag" "$build_dir"
    say "installing puppetserver + puppet-agent in $suite"
    apt_install "$build_dir" --no-install-recommends puppetserver puppet-agent openssl curl ca-certificates > "$roots/puppetserver-install$tag.log" 2>&1 || {
      tail -n 30 "$roots/puppetserver-install$tag.log" >&2; echo "setup-roots.sh: installing puppetserver in $suite failed" >&2; exit 1; }
    say "puppetserver install took $(elapsed "$t0") s ($(in_root "$build_dir" dpkg-query -W -f='${Version}' puppetserver))"
    snapshot "$build_dir" "puppetserver$tag"
    rm -rf "$build_dir"
  else
    say "puppetserver$tag.tar ($suite) is up to date (v$ROOTS_VERSION)"
  fi
}

build_suite bookworm ""
build_suite trixie "-trixie"
build_puppetserver trixie "-trixie"

say "done in $(elapsed "$total0") s: $(ls "$roots"/*.tar | xargs -n1 basename | tr '\n' ' ')"
