#!/usr/bin/env bash
# Runs every check a change must pass, in order, stopping at the first failure:
# formatting, clippy, the Rust tests, the doc tests, the wasm build (its import check,
# js/pkg regenerated and checked for staleness), the wasm unit tests in Node, the npm
# package's tests, the dashboard in headless Chromium, the Python package's types and
# tests, and the Jepsen-style test's short run. CI runs this after scripts/setup.sh.
#
# Usage: bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="${PYTHON:-python3}"
suite_start=$(date +%s)
# The builds below need several GiB; a full disk shows up as a linker's bus error, so say
# up front how much there is.
df -h . | awk 'NR == 2 { printf "disk: %s free of %s on %s\n", $4, $2, $6 }'
step_start=$suite_start
step_name=""

# Prints the time the previous step took, then a header for the next one.
step() {
    local now
    now=$(date +%s)
    [ -n "$step_name" ] && printf '==> %s: ok (%d s)\n' "$step_name" "$((now - step_start))"
    step_name="$1"
    step_start=$now
    printf '\n==> %s\n' "$step_name"
}
# On the way out after a failure, name the step that failed.
report_failure() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n==> FAILED: %s (exit %d)\n' "$step_name" "$rc" >&2
    fi
}
trap report_failure EXIT

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Unit and integration tests of every crate (dhrt-python has test = false: its tests are
# the Python ones below); the doc tests run as their own step.
step "cargo test --workspace (unit and integration tests)"
cargo test --workspace --tests

step "cargo test --workspace --doc (doc tests)"
cargo test --workspace --doc

step "scripts/build-js.sh (wasm32 build, no imports from \"env\", js/pkg up to date)"
bash scripts/build-js.sh
# js/pkg is committed (the dashboard embeds it); INPUTS hashes what it was built from.
if ! git diff --quiet -- js/pkg/INPUTS js/pkg/dhrt_wasm.js js/pkg/dhrt_wasm.d.ts; then
    git --no-pager diff --stat -- js/pkg
    echo "js/pkg is stale: its sources changed since it was built. scripts/build-js.sh" \
        "just rebuilt it; commit js/pkg with your change." >&2
    exit 1
fi

step "scripts/test-wasm.sh (dhrt-wasm unit tests in Node)"
bash scripts/test-wasm.sh

# The package's tests start target/debug/dhrt, built by the cargo test step; rebuild it
# in case js/pkg changed (the binary embeds the dashboard).
step "node --test js/test (the npm package: vectors, a 3-node cluster, npm pack)"
cargo build --quiet -p dhrt
(cd js && timeout 600 node --test --test-concurrency=1 test/*.test.js)

step "node --test js/browser (the dashboard in headless Chromium)"
(cd js && timeout 600 node --test --test-concurrency=1 browser/*.test.js)
echo "screenshots: target/artifacts/browser/"

# --no-build-isolation uses the maturin that setup.sh installed instead of fetching one
# into a fresh build environment every run.
step "pip install ./python"
"$python" -m pip install --quiet --root-user-action=ignore --no-build-isolation \
    --force-reinstall --no-deps ./python

step "mypy --strict python/python/dhrt (the package's types and stubs)"
(cd python && "$python" -m mypy --strict python/dhrt)

# The suite starts in-process clusters and node processes on ephemeral ports of
# 127.0.0.1; every wait in it is bounded, and the whole step is too.
step "python -m pytest -q python/tests"
timeout 1200 "$python" -m pytest -q python/tests

# The Jepsen-style test (docs/jepsen.md): the checker's own tests, then a short run of
# five `dhrt serve` processes in network namespaces of their own under a seeded nemesis
# (kills, wipes, pauses, partitions, delay and loss, clock skew). It needs root for the
# namespaces; as another user it prints why it skipped. Every namespace, rule and
# process it creates is removed at its end.
step "tests/jepsen: the checker's tests"
(cd tests/jepsen && "$python" -m unittest -q)

step "tests/jepsen/run --duration 120 (five nodes in network namespaces, seeded faults)"
timeout 900 "$python" tests/jepsen/run --duration 120 --seed "${DHRT_JEPSEN_SEED:-11}"

step "done"
printf '==> all checks passed in %d s\n' "$(($(date +%s) - suite_start))"
