#!/usr/bin/env bash
# Builds the bootcfg Debian package from an already-built binary, with dpkg-deb (no debhelper needed).
#
#   cargo build --release -p bootcfg
#   bootcfg/dist/build-deb.sh target/release/bootcfg target/debian
#
# Contents: /usr/bin/bootcfg, the systemd unit (enabled on install), the man page, and bash, zsh
# and fish completions, all generated from the binary itself (`bootcfg generate`).
set -euo pipefail
bin=${1:?usage: build-deb.sh BINARY OUT_DIR}
out=${2:?usage: build-deb.sh BINARY OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bin" ] || { echo "build-deb.sh: $bin is not an executable; build it first (cargo build --release -p bootcfg)" >&2; exit 1; }
[ -f "$here/bootcfg.service" ] || { echo "build-deb.sh: $here/bootcfg.service is missing" >&2; exit 1; }

version=$("$bin" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d" "$pkg/usr/share/doc/bootcfg"
install -m 0755 "$bin" "$pkg/usr/bin/bootcfg"
install -m 0644 "$here/bootcfg.service" "$pkg/lib/systemd/system/bootcfg.service"
"$bin" generate --out-dir "$stage/gen"
gzip -9n < "$stage/gen/bootcfg.1" > "$pkg/usr/share/man/man1/bootcfg.1.gz"
install -m 0644 "$stage/gen/bootcfg.bash" "$pkg/usr/share/bash-completion/completions/bootcfg"
install -m 0644 "$stage/gen/_bootcfg" "$pkg/usr/share/zsh/vendor-completions/_bootcfg"
install -m 0644 "$stage/gen/bootcfg.fish" "$pkg/usr/share/fish/vendor_completions.d/bootcfg.fish"
install -m 0644 "$here/debian/copyright" "$pkg/usr/share/doc/bootcfg/copyright"
for s in postinst prerm postrm; do install -m 0755 "$here/debian/$s" "$pkg/DEBIAN/$s"; done
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/debian/control.in" > "$pkg/DEBIAN/control"
mkdir -p "$out"
deb=$out/bootcfg_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
