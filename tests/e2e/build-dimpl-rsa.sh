#!/usr/bin/env bash
# Builds `sluice` and `sluice-dataplane` against dimpl 0.9.0 with
# patches/dimpl-0.9.0-rsa-client-certificates.patch (RSA client certificates in DTLS 1.2, issue
# 20; docs/decisions.md D24) into target/dimpl-rsa/build/debug, and prints that binary's path.
#
# The patch is applied to a fresh copy of the crate cargo already downloaded (nothing of dimpl is
# committed); `cargo --config patch.crates-io…` points the build at the copy, and Cargo.lock,
# which cargo rewrites for a patched source, is put back afterwards. Idempotent: a second run
# only rebuilds what changed. The default `cargo build` is untouched: it uses dimpl as published.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="$root/target/dimpl-rsa"
patch_file="$root/patches/dimpl-0.9.0-rsa-client-certificates.patch"

cargo fetch --locked -q
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/dimpl-0.9.0 | head -1)"
[ -d "$src" ] || { echo "dimpl-0.9.0 not in the cargo registry" >&2; exit 1; }

stamp="$out/dimpl-0.9.0/.sluice-patch"
if ! [ -f "$stamp" ] || ! cmp -s "$stamp" "$patch_file"; then
    rm -rf "$out/dimpl-0.9.0"
    mkdir -p "$out"
    cp -r "$src" "$out/dimpl-0.9.0"
    patch -s -p1 -d "$out/dimpl-0.9.0" < "$patch_file"
    cp "$patch_file" "$stamp"
fi

cp Cargo.lock "$out/Cargo.lock.orig"
trap 'cp "$out/Cargo.lock.orig" "$root/Cargo.lock"' EXIT
cargo build -q --config "patch.crates-io.dimpl.path=\"$out/dimpl-0.9.0\"" --target-dir "$out/build" \
    -p sluice-control --bin sluice -p sluice-dataplane --bin sluice-dataplane
echo "$out/build/debug/sluice"
