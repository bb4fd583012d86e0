#!/usr/bin/env bash
# What checking client tokens costs: `dhrt bench` against two in-memory nodes of the
# same build, one without tokens and one started with --admin-token-file, alternating
# between them (REPS rounds), SET and GET at pipeline 1 and 16. Prints ops/s per run and
# the median ratio with tokens / without. docs/benchmarks.md ("Tokens") has the figures.
#
# Usage: bash bench/tokens.sh [--reps N] [--duration SECS] [--bin PATH]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

reps=3
duration=5
bin=target/release/dhrt
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        *) echo "usage: bash bench/tokens.sh [--reps N] [--duration SECS] [--bin PATH]" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p dhrt" >&2; exit 1; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$tmp/admin.token"

# Starts a node with ARGS on a free port and sets `addr` to its address (not in a
# subshell, so that its pid is remembered and the node stopped on exit).
start() {
    local log="$tmp/node-${#pids[@]}.log"
    "$bin" serve --memory --port 0 "$@" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        if grep -q "listening on" "$log"; then
            addr="$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log" | head -n1)"
            return
        fi
        sleep 0.1
    done
    echo "the node did not start: $(cat "$log")" >&2
    exit 1
}
start
plain="$addr"
start --admin-token-file "$tmp/admin.token"
tokens="$addr"
token="$(cat "$tmp/admin.token")"

ops() { sed -n 's/.*"ops_per_sec": *\([0-9.]*\).*/\1/p' | head -n1; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-4s %-9s %-12s %-12s %s\n' op pipeline "off ops/s" "on ops/s" "on/off (median)"
for workload in set get; do
    for pipeline in 1 16; do
        off=()
        on=()
        for _ in $(seq 1 "$reps"); do
            common=(bench --workload "$workload" --pipeline "$pipeline" --duration "$duration" --preload --json)
            off+=("$("$bin" "${common[@]}" --node "$plain" | ops)")
            on+=("$("$bin" "${common[@]}" --node "$tokens" --token "$token" | ops)")
        done
        moff="$(printf '%s\n' "${off[@]}" | median)"
        mon="$(printf '%s\n' "${on[@]}" | median)"
        printf '%-4s %-9s %-12s %-12s %.3f   (off: %s; on: %s)\n' "$workload" "$pipeline" "$moff" "$mon" \
            "$(awk -v a="$mon" -v b="$moff" 'BEGIN { print a / b }')" "${off[*]}" "${on[*]}"
    done
done
