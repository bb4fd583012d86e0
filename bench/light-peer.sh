#!/usr/bin/env bash
# The browser package in numbers: the WebAssembly module's size (raw and gzipped, after
# wasm-opt, as js/pkg ships it) and the light peer's read latency from Node against a
# local node, beside the native Rust client's (docs/benchmarks.md, "The browser
# package").
#
# It builds the release binary and the example, starts one in-memory node on a free
# port, and runs bench/light-peer.mjs (the npm package in Node) and the client_latency
# example (dhrt::Client) in turn, ROUNDS times each, alternating, so both see the same
# machine. Each run writes the same 10,000 keys, warms up, then times GETS sequential
# reads (one in flight). The node is stopped on exit.
#
# Usage: bash bench/light-peer.sh [--gets N] [--rounds N]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

gets=20000
rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --gets) gets="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "light-peer: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

wasm=js/pkg/dhrt_wasm_bg.wasm
echo "wasm: $(stat -c %s "$wasm") bytes raw, $(gzip -9 -n -c "$wasm" | wc -c) bytes gzipped ($wasm, after wasm-opt)"

cargo build --quiet --release -p dhrt --bin dhrt --example client_latency
bin=target/release/dhrt
example=target/release/examples/client_latency

log="$(mktemp)"
"$bin" serve --memory --port 0 >"$log" 2>&1 &
node_pid=$!
trap 'kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; rm -f "$log"' EXIT
addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's/.* listening on \([^ ]*\).*/\1/p' "$log" | head -1)"
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "light-peer: the node did not start:" >&2; cat "$log" >&2; exit 1; }
echo "node: $addr ($("$bin" --version)), $gets sequential gets per run, $rounds rounds"

for r in $(seq 1 "$rounds"); do
    timeout 300 node bench/light-peer.mjs "ws://$addr" "$gets"
    timeout 300 "$example" "$addr" "$gets"
done
