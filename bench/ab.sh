#!/usr/bin/env bash
# Two builds of dhrt against each other, in one window: for each round, each binary in
# turn serves one `--memory` node pinned to CPU 0, `dhrt bench` (of the same binary) on
# CPU 1 preloads the keyspace and runs one lane; prints ops/s and the server's CPU time
# a request (the steadier measure on a noisy machine), per round and as means.
#
#   bench/ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS] [set|get] [PIPELINE]
#
# e.g. build the base in a worktree (git worktree add /tmp/base REV; CARGO_TARGET_DIR=
# /tmp/base-target cargo build --release -p dhrt there) and compare it with this tree's
# target/release/dhrt: bench/ab.sh /tmp/base-target/release/dhrt target/release/dhrt 6 5
# set 16. Needs two CPUs (taskset); nothing else should run meanwhile.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
A=$1 B=$2 ROUNDS=${3:-4} SECONDS_=${4:-5} WORKLOAD=${5:-set} PIPELINE=${6:-16}
for bin in "$A" "$B"; do
    [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
done
WORK="$(mktemp -d)"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
HZ="$(getconf CLK_TCK)"

# run BINARY TAG: one round of one binary; appends "TAG OPS US_PER_REQUEST" to results.
run() {
    local bin="$1" tag="$2" addr="" before after json
    taskset -c 0 "$bin" serve --memory --port 0 >"$WORK/out" 2>"$WORK/log" &
    PID=$!
    for _ in $(seq 100); do
        addr="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/out" | head -1)"
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "$bin did not start:" >&2; cat "$WORK/log" >&2; exit 1; }
    taskset -c 1 "$bin" --node "$addr" bench --json --connections 50 --pipeline 16 \
        --keyspace 100000 --preload --requests 0 >/dev/null
    before="$(awk '{print $14 + $15}' "/proc/$PID/stat")"
    json="$(taskset -c 1 "$bin" --node "$addr" bench --json --connections 50 \
        --duration "$SECONDS_" --keyspace 100000 --workload "$WORKLOAD" --pipeline "$PIPELINE")"
    after="$(awk '{print $14 + $15}' "/proc/$PID/stat")"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    python3 - "$json" "$((after - before))" "$HZ" "$tag" >>"$WORK/results" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
ticks, hz, tag = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ops = r["ops_per_sec"] * r["seconds"]
print(tag, round(r["ops_per_sec"]), round(ticks / hz / max(ops, 1) * 1e6, 3))
EOF
    tail -1 "$WORK/results"
}

echo "$WORKLOAD at pipeline $PIPELINE, $ROUNDS rounds of $SECONDS_ s: A=$A B=$B"
for _ in $(seq "$ROUNDS"); do
    run "$A" A
    run "$B" B
done
python3 - "$WORK/results" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1])]
for tag in ("A", "B"):
    mine = [(float(o), float(c)) for t, o, c in rows if t == tag]
    ops = [o for o, _ in mine]
    cpu = sum(c for _, c in mine) / len(mine)
    print(f"{tag}: mean {sum(ops) / len(ops):,.0f} ops/s ({min(ops):,.0f}-{max(ops):,.0f}), "
          f"server CPU {cpu:.3f} us a request")
EOF
