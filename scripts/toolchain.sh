# The tools dhrt's build and tests use, named in one place. Sourced (not run) by
# scripts/setup.sh, which installs them and ends with `check_tools`, and by the wasm
# scripts (check-wasm.sh, test-wasm.sh, build-js.sh), which use the paths below.
#
# The wasm32 linker is named explicitly: rustc's default for wasm32-unknown-unknown is a
# `rust-lld` on the PATH, which no Debian package provides (lld-22 installs LLVM's
# wasm-ld under /usr/lib/llvm-22/bin and nothing on the PATH). Naming it through
# CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER changes nothing global on the machine.

# Debian's Rust with std source (rustc-web, cargo-web, rust-web-src): rustup cannot
# download the wasm32 target here, so std is built from source with -Zbuild-std.
DHRT_WASM_RUSTC=/usr/bin/rustc
DHRT_WASM_CARGO=/usr/bin/cargo
# LLVM's WebAssembly linker (Debian's lld-22).
DHRT_WASM_LINKER=/usr/lib/llvm-22/bin/wasm-ld
# wasm-bindgen-cli must match the wasm-bindgen crate (Cargo.toml pins "=0.2.130").
DHRT_BINDGEN_VERSION=0.2.130
# libfaketime (Debian's faketime), preloaded into a node to skew its clock in
# native/tests/peer_attacks.rs.
DHRT_FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
# The oldest Node.js the npm package and its tests support.
DHRT_NODE_MIN_MAJOR=20

# Checks that every tool the tests use is really there. Prints one line per tool and,
# for each missing one, what to do; returns 1 when any is missing.
check_tools() {
    local python="${PYTHON:-python3}" missing=0 got
    ok() { printf '[check] ok       %-26s %s\n' "$1" "$2"; }
    bad() {
        printf '[check] MISSING  %-26s %s\n' "$1" "$2" >&2
        missing=1
    }
    # cargo, rustfmt and clippy from the pinned rustup toolchain.
    for cmd in cargo rustfmt cargo-clippy; do
        if got="$("$cmd" --version 2>/dev/null | head -n1)" && [ -n "$got" ]; then
            ok "$cmd" "$got"
        else
            bad "$cmd" "rustup toolchain component; run: rustup component add ${cmd#cargo-}"
        fi
    done
    for tool in "$DHRT_WASM_RUSTC" "$DHRT_WASM_CARGO"; do
        if [ -x "$tool" ]; then
            ok "$tool" "$("$tool" --version 2>/dev/null | head -n1)"
        else
            bad "$tool" "Debian's Rust for the wasm32 build; run: apt-get install rustc-web cargo-web rust-web-src"
        fi
    done
    if [ -d "$("$DHRT_WASM_RUSTC" --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ]; then
        ok "std source (rust-web-src)" "present"
    else
        bad "std source (rust-web-src)" "needed by -Zbuild-std; run: apt-get install rust-web-src"
    fi
    if [ -x "$DHRT_WASM_LINKER" ]; then
        ok "wasm linker" "$DHRT_WASM_LINKER ($("$DHRT_WASM_LINKER" --version 2>/dev/null | head -n1))"
    else
        bad "wasm linker" "$DHRT_WASM_LINKER is missing; run: apt-get install lld-22"
    fi
    got="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')"
    if [ "$got" = "$DHRT_BINDGEN_VERSION" ] && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
        ok "wasm-bindgen" "$got (and wasm-bindgen-test-runner)"
    else
        bad "wasm-bindgen" "need $DHRT_BINDGEN_VERSION, found '${got:-none}'; run: cargo install wasm-bindgen-cli --version $DHRT_BINDGEN_VERSION --force"
    fi
    for pair in openssl:openssl wasm-objdump:wabt wasm-strip:wabt wasm-opt:binaryen chromium:chromium \
        redis-cli:redis-tools redis-benchmark:redis-tools; do
        local cmd="${pair%%:*}" pkg="${pair#*:}"
        if command -v "$cmd" >/dev/null 2>&1; then
            ok "$cmd" "$("$cmd" --version 2>/dev/null | head -n1)"
        else
            bad "$cmd" "run: apt-get install $pkg"
        fi
    done
    # iptables-legacy: the NFQUEUE rules of tests/jepsen (packet delay and loss).
    if command -v iptables-legacy >/dev/null 2>&1; then
        ok "iptables-legacy" "$(iptables-legacy --version 2>/dev/null | head -n1)"
    else
        bad "iptables-legacy" "tests/jepsen's delay and loss; run: apt-get install iptables"
    fi
    if [ -f "$DHRT_FAKETIME_LIB" ] && command -v faketime >/dev/null 2>&1; then
        ok "faketime" "$DHRT_FAKETIME_LIB"
    else
        bad "faketime" "$DHRT_FAKETIME_LIB is missing; run: apt-get install faketime"
    fi
    got="$(node -p 'process.versions.node' 2>/dev/null || true)"
    if [ -n "$got" ] && [ "${got%%.*}" -ge "$DHRT_NODE_MIN_MAJOR" ] && command -v npm >/dev/null 2>&1; then
        ok "node, npm" "node $got, npm $(npm --version 2>/dev/null)"
    else
        bad "node, npm" "need Node.js >= $DHRT_NODE_MIN_MAJOR with npm (found '${got:-none}'); install it from nodesource.com"
    fi
    if [ -f js/node_modules/playwright-core/package.json ] && [ -f js/node_modules/ws/package.json ]; then
        ok "js/node_modules" "playwright-core, ws"
    else
        bad "js/node_modules" "run: (cd js && npm ci)"
    fi
    for mod in maturin pytest mypy; do
        if got="$("$python" -m "$mod" --version 2>/dev/null | head -n1)" && [ -n "$got" ]; then
            ok "$mod" "$got"
        else
            bad "$mod" "run: $python -m pip install $mod"
        fi
    done
    # redis-py: the Redis endpoint's tests (python/tests/test_redis.py).
    if got="$("$python" -c 'import redis; print(redis.__version__)' 2>/dev/null)"; then
        ok "python package redis" "$got"
    else
        bad "python package redis" "run: $python -m pip install redis"
    fi
    if got="$("$python" -c 'import dhrt; print(dhrt.__version__)' 2>/dev/null)"; then
        ok "python package dhrt" "$got"
    else
        bad "python package dhrt" "run: $python -m pip install --no-build-isolation ./python"
    fi
    return "$missing"
}
