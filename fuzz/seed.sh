#!/usr/bin/env bash
# Fill fuzz/corpus/<target>/ (gitignored) with seed inputs: the committed seeds in fuzz/seeds/ and
# the repository's own examples (examples/userdata-*.yaml), also gzipped, base64-encoded and as
# MIME parts. Adds files only; libFuzzer keeps growing the corpus across runs. Needs gzip, base64.
set -euo pipefail
cd "$(dirname "$0")"
corpus=corpus
mkdir -p "$corpus"/{csr_pem,csr_der,csr_crafted,userdata,userdata_wrapped}

# CSRs: PEM as they are; the DER inside for csr_der (which wraps its input in PEM itself).
for pem in seeds/csr/*.pem; do
    name=$(basename "$pem" .pem)
    cp "$pem" "$corpus/csr_pem/$name.pem"
    sed '/^-----/d' "$pem" | base64 -d > "$corpus/csr_der/$name.der"
done

mime() { # mime <content-type> <transfer-encoding> <body file>
    printf 'Content-Type: multipart/mixed; boundary="==BOUNDARY=="\nMIME-Version: 1.0\n\n'
    printf -- '--==BOUNDARY==\nContent-Type: %s\nMIME-Version: 1.0\n' "$1"
    case $2 in
        base64) printf 'Content-Transfer-Encoding: base64\n\n'; base64 < "$3" ;;
        gzip) printf 'Content-Transfer-Encoding: base64\n\n'; gzip -cn < "$3" | base64 ;;
        *) printf '\n'; cat "$3" ;;
    esac
    printf -- '\n--==BOUNDARY==--\n'
}

for doc in ../examples/userdata-*.yaml seeds/userdata/*; do
    name=$(basename "$doc")
    out=$corpus/userdata
    cp "$doc" "$out/$name"
    gzip -cn < "$doc" > "$out/$name.gz"
    base64 -w0 < "$doc" > "$out/$name.b64"
    gzip -cn < "$doc" | base64 -w0 > "$out/$name.gz.b64"
    mime 'text/cloud-config; charset="utf-8"' 7bit "$doc" > "$out/$name.mime"
    mime 'text/cloud-config' base64 "$doc" > "$out/$name.b64.mime"
    mime 'application/x-gzip' gzip "$doc" > "$out/$name.gz.mime"
    # userdata_wrapped: a mode byte (0-8, the wrapping), then the text after `#cloud-config`.
    if head -n1 "$doc" | grep -q '^#cloud-config$'; then
        for mode in 0 1 2 3 4 5 6 7 8; do
            { printf "\\x0$mode"; tail -n +2 "$doc"; } > "$corpus/userdata_wrapped/$mode-$name"
        done
    fi
done
echo "fuzz/seed.sh: $(find "$corpus" -type f | wc -l) files in fuzz/corpus/"
