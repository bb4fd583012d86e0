#!/usr/bin/env bash
# Builds dhrt-wasm for wasm32-unknown-unknown and checks the module is self-contained
# (scripts/build-js.sh turns it into js/pkg).
#
# rustup cannot download the wasm32 target on our machines, so this uses Debian's Rust
# (rustc-web, cargo-web, rust-web-src; see scripts/setup.sh) and builds std from source
# with -Zbuild-std, linked by LLVM's wasm-ld named in scripts/toolchain.sh (no `rust-lld`
# is on the PATH of a fresh machine). RUSTC=/usr/bin/rustc keeps the rustup proxy (and so
# rust-toolchain.toml) out of it; /usr/bin/cargo is not a rustup proxy either. A separate
# target dir keeps the two compilers from invalidating each other's builds.
#
# Then it fails if the module imports anything from "env" (some dependency expected a C
# runtime or a missing symbol: the module would not load in a browser), and prints the
# size of the module, raw and gzipped.
#
# Usage: bash scripts/check-wasm.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

target=wasm32-unknown-unknown
target_dir=target/wasm
wasm="$target_dir/$target/wasm-release/dhrt_wasm.wasm"

for tool in "$DHRT_WASM_CARGO" "$DHRT_WASM_RUSTC"; do
    if [ ! -x "$tool" ]; then
        echo "check-wasm: $tool is missing; run scripts/setup.sh (Debian's rustc-web, cargo-web)" >&2
        exit 1
    fi
done
if [ ! -x "$DHRT_WASM_LINKER" ]; then
    echo "check-wasm: the wasm linker $DHRT_WASM_LINKER is missing; run scripts/setup.sh (Debian's lld-22)" >&2
    exit 1
fi
if ! command -v wasm-objdump >/dev/null 2>&1; then
    echo "check-wasm: wasm-objdump is missing; run scripts/setup.sh (Debian's wabt)" >&2
    exit 1
fi

# Cargo.lock is shared with the rustup cargo, which runs first in scripts/test.sh. Let
# that one bring the lock file up to date (a no-op when it already is), then build with
# --locked so Debian's cargo, a different version, never rewrites it.
cargo tree --quiet -p dhrt-wasm --target "$target" -e normal >/dev/null

# The profile (Cargo.toml, [profile.wasm-release]) builds for size. Panics abort at once
# with no message (-Cpanic=immediate-abort drops every panic's formatting code; the
# module traps with "unreachable"); nothing in dhrt panics on input by design. Paths
# are remapped so the module's bytes do not depend on where the checkout or the cargo
# registry live (js/pkg is committed: see scripts/build-js.sh). Reference types are off:
# Debian's wasm-opt (binaryen 108) points wasm-bindgen's exported externref table at the
# wrong table, and the bindings then fail to load; without them wasm-bindgen keeps
# JavaScript objects in a JavaScript array instead.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustflags="-Zunstable-options -Cpanic=immediate-abort -Ctarget-feature=-reference-types"
rustflags+=" --remap-path-prefix=$PWD=/dhrt"
rustflags+=" --remap-path-prefix=$cargo_home/registry/src=/cargo"

echo "check-wasm: building dhrt-wasm for $target with $("$DHRT_WASM_RUSTC" --version), linked by $DHRT_WASM_LINKER"
start=$(date +%s)
env -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER -u CARGO_ENCODED_RUSTFLAGS \
    RUSTC="$DHRT_WASM_RUSTC" RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$DHRT_WASM_LINKER" RUSTFLAGS="$rustflags" \
    "$DHRT_WASM_CARGO" build --locked -p dhrt-wasm --profile wasm-release --target "$target" \
    -Zbuild-std=std,panic_abort --target-dir "$target_dir"
echo "check-wasm: built in $(($(date +%s) - start)) s: $wasm"

# wasm-objdump lists imports as: " - func[0] sig=1 <name> <- module.field".
imports="$(wasm-objdump -x -j Import "$wasm")"
env_imports="$(grep -E '<- env\.' <<<"$imports" || true)"
if [ -n "$env_imports" ]; then
    echo "check-wasm: FAIL: $wasm imports from module \"env\":" >&2
    echo "$env_imports" >&2
    echo "check-wasm: some dependency needs a C runtime or an undefined symbol;" \
        "a browser cannot satisfy these imports. Find it with 'cargo tree -p dhrt-wasm'." >&2
    exit 1
fi
echo "check-wasm: ok, no imports from \"env\" ($(grep -c '<- ' <<<"$imports" || true) imports in all)"

human() { numfmt --to=iec-i --suffix=B "$1"; }
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "check-wasm: size $raw bytes ($(human "$raw")), gzipped $gz bytes ($(human "$gz"))"
# The build above carries no debug info, but still a names section and the like; show the
# size that ships once custom sections are stripped, as wasm-bindgen's output will be.
if command -v wasm-strip >/dev/null 2>&1; then
    stripped="$(mktemp --suffix=.wasm)"
    trap 'rm -f "$stripped"' EXIT
    wasm-strip -o "$stripped" "$wasm"
    sraw=$(stat -c %s "$stripped")
    sgz=$(gzip -9 -c "$stripped" | wc -c)
    echo "check-wasm: stripped of custom sections $sraw bytes ($(human "$sraw")), gzipped $sgz bytes ($(human "$sgz"))"
fi
