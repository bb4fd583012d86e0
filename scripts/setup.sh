#!/usr/bin/env bash
# Sets up a Debian 12 machine to build and test dhrt: the Debian Rust used for the
# wasm32 build, wasm tools (wasm-bindgen-cli pinned to the crate's version, binaryen,
# wabt), Chromium for the dashboard's browser test, Redis's own clients (redis-cli,
# redis-benchmark, redis-py) for the Redis endpoint's tests, the pinned rustup
# toolchain's rustfmt and clippy, the Python build and test tools and the dhrt Python
# package itself, and the npm package's dependencies (npm ci in js/). Every step
# checks first and skips what is already there, so a warm machine is done in a second
# or two. Safe with CI=true and no stdin.
#
# Usage: bash scripts/setup.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

say() { printf '[setup] %s\n' "$*"; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        say "need root for: $*" >&2
        return 1
    fi
}

# --- Debian packages ---------------------------------------------------------------
# rustc-web, cargo-web, rust-web-src: Debian's Rust 1.96 with std source, used to build
#   std for wasm32-unknown-unknown (rustup cannot download targets here).
# lld-22: LLVM's wasm-ld, the wasm32 linker, at /usr/lib/llvm-22/bin/wasm-ld (it puts
#   no `rust-lld` on the PATH: the wasm scripts name this linker, see toolchain.sh).
# wabt: wasm-objdump, to check the wasm's imports. binaryen: wasm-opt, for size work.
# chromium: the real browser of the dashboard test (driven by playwright-core).
# faketime: libfaketime, preloaded into one node of native/tests/peer_attacks.rs to run
#   it with a clock an hour ahead (a skewed member).
# openssl: makes the test CA and certificates of the Python tests (python/tests/conftest.py:
# TLS nodes in test_tls.py, the Redis port over TLS in test_redis.py).
# iptables: iptables-legacy's NFQUEUE rules of tests/jepsen (packet delay and loss inside
#   the test's own network namespaces; the kernel has no tc netem). iproute2 (ip netns,
#   veth, bridges, blackhole routes) is part of a Debian base system.
# redis-tools: redis-cli and redis-benchmark, run against `dhrt serve --resp-port` by
#   python/tests/test_redis.py (the Redis server itself is not needed).
apt_packages=(rustc-web cargo-web rust-web-src lld-22 wabt binaryen chromium faketime openssl iptables
    redis-tools)

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${apt_packages[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "apt: all present (${apt_packages[*]})"
else
    say "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q </dev/null
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# --- rustup toolchain components -----------------------------------------------------
# rust-toolchain.toml pins the toolchain and asks for rustfmt and clippy. They are
# normally present; try to add them when not, but carry on (with a warning) when rustup
# cannot download: fmt/clippy steps will then fail loudly in test.sh.
if command -v rustup >/dev/null 2>&1; then
    installed_components="$(rustup component list --installed 2>/dev/null || true)"
    for comp in rustfmt clippy; do
        if grep -q "^${comp}-" <<<"$installed_components"; then
            say "rustup: ${comp} present"
        else
            say "rustup: adding ${comp}"
            timeout 300 rustup component add "$comp" </dev/null \
                || say "WARNING: could not add rustup component ${comp}" >&2
        fi
    done
else
    say "WARNING: rustup not found; cargo fmt/clippy need the pinned toolchain" >&2
fi

# --- Python tools ---------------------------------------------------------------------
# maturin builds the package, pytest and mypy test and check it; redis (redis-py) is the
# Redis client of python/tests/test_redis.py and of bench/python_vs_redis.py.
python="${PYTHON:-python3}"
have_module() {
    "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"
}
pip_missing=()
have_module maturin || pip_missing+=(maturin)
have_module pytest || pip_missing+=(pytest)
have_module mypy || pip_missing+=(mypy)
have_module redis || pip_missing+=(redis)
if [ "${#pip_missing[@]}" -eq 0 ]; then
    say "pip: maturin, pytest, mypy and redis present"
else
    say "pip: installing ${pip_missing[*]}"
    "$python" -m pip install --quiet --root-user-action=ignore "${pip_missing[@]}" </dev/null
fi

# --- the Python package ---------------------------------------------------------------
# `pip install ./python` builds dhrt._dhrt with maturin (release; the first build on a
# bare machine takes several minutes, later ones only what changed) and installs the
# `dhrt` package, so `python -c "import dhrt"` and `python -m dhrt serve` work. It is
# skipped when the sources it is built from are unchanged since the last install here
# (a fingerprint in target/). --no-build-isolation uses the maturin installed above.
fingerprint_file=target/.dhrt-python-installed
fingerprint="$(find python/src python/python python/pyproject.toml python/Cargo.toml \
    native/src native/Cargo.toml core/src core/Cargo.toml Cargo.toml Cargo.lock \
    -type f -print0 | sort -z | xargs -0 cat | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$fingerprint_file" 2>/dev/null || true)" = "$fingerprint" ] \
    && "$python" -c "import dhrt" 2>/dev/null; then
    say "pip: dhrt package up to date"
else
    say "pip: installing ./python (the dhrt package)"
    "$python" -m pip install --quiet --root-user-action=ignore --no-build-isolation \
        --force-reinstall --no-deps ./python </dev/null
    mkdir -p target && echo "$fingerprint" >"$fingerprint_file"
    say "pip: $("$python" -c 'import dhrt; print("dhrt", dhrt.__version__)')"
fi

# --- wasm-bindgen-cli ----------------------------------------------------------------
# Pinned to the wasm-bindgen crate's version (Cargo.toml): the CLI refuses modules built
# by another version. No --locked: the registry mirror lacks one locked dependency.
bindgen_version=$DHRT_BINDGEN_VERSION
if command -v wasm-bindgen >/dev/null 2>&1 \
    && [ "$(wasm-bindgen --version | awk '{print $2}')" = "$bindgen_version" ] \
    && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    say "wasm-bindgen-cli $bindgen_version present"
else
    say "cargo: installing wasm-bindgen-cli $bindgen_version (a few minutes)"
    cargo install wasm-bindgen-cli --version "$bindgen_version" --force </dev/null
fi

# --- Node.js and the npm package's dependencies ---------------------------------------
# Node >= 20 comes with the machine (Debian 12's own nodejs is 18, too old for the
# package); say so plainly when it is missing.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt "$DHRT_NODE_MIN_MAJOR" ] || ! command -v npm >/dev/null 2>&1; then
    say "need Node.js >= 20 with npm (found ${node_major}); install it from nodesource.com" >&2
    exit 1
fi
# npm ci from the committed lock file (ws; playwright-core, which drives the system
# Chromium: never run `npx playwright install`). Skipped while the lock is unchanged.
stamp=js/node_modules/.dhrt-lock
if [ -f "$stamp" ] && cmp -s js/package-lock.json "$stamp"; then
    say "npm: js/node_modules up to date"
else
    say "npm: npm ci in js/"
    (cd js && npm ci --no-audit --no-fund --loglevel=error </dev/null)
    cp js/package-lock.json "$stamp"
fi

# --- the check ---------------------------------------------------------------------
# Every tool the tests use, checked in one place (scripts/toolchain.sh): a step above
# that "succeeded" without installing what it should is caught here, not mid-test.
if check_tools; then
    say "done: every tool the tests use is present"
else
    say "FAILED: a tool the tests use is missing (see MISSING above)" >&2
    exit 1
fi
