#!/usr/bin/env bash
# Runs dhrt-wasm's unit tests compiled to wasm32 in Node, with wasm-bindgen-test-runner
# (wasm/tests/node.rs: the JavaScript shapes of the light peer). Uses the Debian Rust
# and std built from source, as scripts/check-wasm.sh does, in the same target dir.
#
# Usage: bash scripts/test-wasm.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

if [ ! -x "$DHRT_WASM_LINKER" ]; then
    echo "test-wasm: the wasm linker $DHRT_WASM_LINKER is missing; run scripts/setup.sh (Debian's lld-22)" >&2
    exit 1
fi
if ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    echo "test-wasm: wasm-bindgen-test-runner is missing; run scripts/setup.sh" >&2
    exit 1
fi
cargo tree --quiet -p dhrt-wasm --target wasm32-unknown-unknown -e normal,dev >/dev/null

# Tests keep panic messages (no immediate-abort) so a failing assertion says why; the
# other flags match check-wasm.sh.
env -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER -u CARGO_ENCODED_RUSTFLAGS \
    RUSTC="$DHRT_WASM_RUSTC" RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$DHRT_WASM_LINKER" RUSTFLAGS="-Ctarget-feature=-reference-types" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    CARGO_PROFILE_DEV_DEBUG=false WASM_BINDGEN_TEST_TIMEOUT=60 \
    timeout 1200 "$DHRT_WASM_CARGO" test --locked -p dhrt-wasm --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort --target-dir target/wasm --test node
