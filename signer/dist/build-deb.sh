#!/usr/bin/env bash
# Builds the bootcfg-signer Debian package (for the Puppet CA host) from an already-built binary,
# with dpkg-deb (no debhelper needed). Prints the path of the .deb.
#
#   cargo build --release -p signer
#   signer/dist/build-deb.sh target/release/signer target/debian
#
# Contents: /usr/bin/signer; the autosign wrapper /usr/lib/bootcfg-signer/autosign (puppet.conf
# [server] autosign = that path); /etc/bootcfg/signer.yaml (a conffile, signs nothing until it is
# configured); bootcfg-signer-watch.service (`sweep --watch`) and bootcfg-signer-sweep.timer with
# its oneshot service, neither enabled; /etc/logrotate.d/bootcfg-signer for the audit log.
# The man page and bash/zsh/fish completions, generated from the binary itself (`signer generate`).
set -euo pipefail
bin=${1:?usage: build-deb.sh BINARY OUT_DIR}
out=${2:?usage: build-deb.sh BINARY OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bin" ] || { echo "build-deb.sh: $bin is not an executable; build it first (cargo build --release -p signer)" >&2; exit 1; }
for f in autosign signer.yaml logrotate bootcfg-signer-watch.service bootcfg-signer-sweep.service \
  bootcfg-signer-sweep.timer debian/control.in debian/conffiles debian/copyright debian/README.Debian \
  debian/postinst debian/prerm debian/postrm; do
  [ -f "$here/$f" ] || { echo "build-deb.sh: $here/$f is missing" >&2; exit 1; }
done

version=$("$bin" --version | awk '$1 == "signer" {print $2}')
[ -n "$version" ] || { echo "build-deb.sh: $bin --version does not say 'signer VERSION'" >&2; exit 1; }
# The shipped config must load with this very binary (no network: check-config reads files only).
"$bin" --config "$here/signer.yaml" check-config >/dev/null 2>&1 || {
  "$bin" --config "$here/signer.yaml" check-config >&2 || true
  echo "build-deb.sh: $here/signer.yaml does not pass check-config" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/bootcfg-signer" "$pkg/etc/bootcfg" \
  "$pkg/etc/logrotate.d" "$pkg/lib/systemd/system" "$pkg/usr/share/doc/bootcfg-signer" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/bash-completion/completions" \
  "$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$pkg/usr/bin/signer"
"$bin" generate --out-dir "$stage/gen"
gzip -9n < "$stage/gen/signer.1" > "$pkg/usr/share/man/man1/signer.1.gz"
install -m 0644 "$stage/gen/signer.bash" "$pkg/usr/share/bash-completion/completions/signer"
install -m 0644 "$stage/gen/_signer" "$pkg/usr/share/zsh/vendor-completions/_signer"
install -m 0644 "$stage/gen/signer.fish" "$pkg/usr/share/fish/vendor_completions.d/signer.fish"
install -m 0755 "$here/autosign" "$pkg/usr/lib/bootcfg-signer/autosign"
# 0640: readable by the group postinst gives it (the Puppet server's), not by everyone.
install -m 0640 "$here/signer.yaml" "$pkg/etc/bootcfg/signer.yaml"
install -m 0644 "$here/logrotate" "$pkg/etc/logrotate.d/bootcfg-signer"
for u in bootcfg-signer-watch.service bootcfg-signer-sweep.service bootcfg-signer-sweep.timer; do
  install -m 0644 "$here/$u" "$pkg/lib/systemd/system/$u"
done
install -m 0644 "$here/debian/copyright" "$pkg/usr/share/doc/bootcfg-signer/copyright"
install -m 0644 "$here/debian/README.Debian" "$pkg/usr/share/doc/bootcfg-signer/README.Debian"
install -m 0644 "$here/debian/conffiles" "$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/debian/$s" "$pkg/DEBIAN/$s"; done
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/debian/control.in" > "$pkg/DEBIAN/control"
mkdir -p "$out"
deb=$out/bootcfg-signer_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
