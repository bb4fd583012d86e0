#!/usr/bin/env bash
# Builds js/pkg, the WebAssembly half of the npm package `dhrt` (and of the dashboard,
# which every node embeds): the wasm module (scripts/check-wasm.sh), its JavaScript
# bindings (wasm-bindgen --target web, one output for browsers and Node), then
# wasm-opt -Oz. Prints the module's size raw and gzipped.
#
# js/pkg is committed, so that `cargo build` on a fresh clone embeds a working dashboard
# without the wasm toolchain. js/pkg/INPUTS records a hash of every workspace source file
# the wasm build read (from cargo's dep-info), Cargo.lock and the tool versions and flags;
# scripts/test.sh runs this script and fails when INPUTS or the bindings changed, i.e.
# when the committed js/pkg is stale: run this script and commit js/pkg.
#
# Usage: bash scripts/build-js.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

bindgen_version=$DHRT_BINDGEN_VERSION
out=js/pkg
wasm=target/wasm/wasm32-unknown-unknown/wasm-release/dhrt_wasm.wasm
depinfo=target/wasm/wasm32-unknown-unknown/wasm-release/dhrt_wasm.d
opt_flags=(-Oz --strip-debug --strip-producers --enable-bulk-memory
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals)

if ! command -v wasm-bindgen >/dev/null 2>&1 \
    || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$bindgen_version" ]; then
    echo "build-js: wasm-bindgen $bindgen_version is missing; run scripts/setup.sh" >&2
    exit 1
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
    echo "build-js: wasm-opt is missing; run scripts/setup.sh (Debian's binaryen)" >&2
    exit 1
fi

bash scripts/check-wasm.sh

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target web --remove-name-section --remove-producers-section \
    --out-dir "$tmp" "$wasm"
wasm-opt "${opt_flags[@]}" "$tmp/dhrt_wasm_bg.wasm" -o "$tmp/opt.wasm"
mv "$tmp/opt.wasm" "$tmp/dhrt_wasm_bg.wasm"

# The inputs: workspace files named in the dep-info (paths are relative after the
# remap in check-wasm.sh, or absolute under this checkout), with their contents.
inputs() {
    sed -e 's/^[^:]*: //' -e 's/\\ /\x00/g' "$depinfo" | tr ' ' '\n' | tr '\0' ' ' \
        | sed -e "s|^$PWD/||" | grep -v '^/' | grep -v '^$' | sort -u \
        | while IFS= read -r f; do
            [ -f "$f" ] && printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        done
    printf '%s Cargo.lock\n' "$(sha256sum <Cargo.lock | cut -d' ' -f1)"
    echo "wasm-bindgen $bindgen_version; wasm-opt ${opt_flags[*]}; $(sed -n '/^\[profile.wasm-release\]/,/^$/p' Cargo.toml | tr '\n' ' ')"
}
{
    echo "# The sources js/pkg was built from (scripts/build-js.sh); a change means a stale js/pkg."
    inputs
} >"$tmp/INPUTS"

# The dashboard sends the module gzipped to browsers that accept it (-n: no name or
# time in the header, so the bytes depend on the module only).
gzip -9 -n -c "$tmp/dhrt_wasm_bg.wasm" >"$tmp/dhrt_wasm_bg.wasm.gz"

mkdir -p "$out"
rm -f "$out"/dhrt_wasm* "$out"/INPUTS
cp "$tmp"/dhrt_wasm.js "$tmp"/dhrt_wasm.d.ts "$tmp"/dhrt_wasm_bg.wasm "$tmp"/dhrt_wasm_bg.wasm.gz \
    "$tmp"/INPUTS "$out"/

human() { numfmt --to=iec-i --suffix=B "$1"; }
raw=$(stat -c %s "$out/dhrt_wasm_bg.wasm")
gz=$(stat -c %s "$out/dhrt_wasm_bg.wasm.gz")
echo "build-js: $out/dhrt_wasm_bg.wasm after wasm-opt: $raw bytes ($(human "$raw")), gzipped $gz bytes ($(human "$gz"))"
