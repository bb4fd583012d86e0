#!/usr/bin/env bash
# dhrt vs Redis on loopback, measured by two independent load generators: `dhrt bench`
# (dhrt's native WebSocket protocol vs Redis's RESP) and redis-benchmark (dhrt's Redis
# port vs Redis, both over RESP).
#
# Starts Debian's redis-server (a single server, and a Redis Cluster of 3 masters + 3
# replicas) beside dhrt (a single node, and a 3-node cluster with 3 replicas per key),
# servers pinned to CPU 0 and the load generator to CPU 1, and runs the same workloads
# against both — 50 connections, 16-byte keys, 100-byte values, pipeline 1 and 16, SET
# and GET, keys preloaded so every GET hits — repeatedly, alternating dhrt and Redis.
# Prints a Markdown table of medians, min–max and dhrt/Redis ratios.
#
#   bench/vs-redis.sh                  # 5 repetitions of 10 s runs (about 37 minutes)
#   bench/vs-redis.sh --quick          # a smoke run: 1 repetition of short runs
#   bench/vs-redis.sh --reps 3 --duration 5 --only memory,cluster --out table.md
#
# Comparisons (--only takes a comma-separated subset):
#   memory     dhrt serve --memory          vs redis-server (no persistence)
#   persisted  dhrt serve --data-dir        vs redis-server --appendfsync always
#   cluster    3 x dhrt serve (N=3, quorum) vs Redis Cluster 3 masters + 3 replicas
#   keys       memory per key after loading 1M keys: dhrt --memory RSS growth vs
#              Redis used_memory growth
#   resp       dhrt serve --memory over its Redis port (--resp-port) vs redis-server
#              (no persistence), both driven by redis-benchmark -c 50 -d 100 -r KEYSPACE
#              -P 1/16 -t set/get (its keys are key:<12 digits>, 16 bytes, as dhrt
#              bench's); plus "RESP path vs native protocol": the same dhrt node driven
#              over its WebSocket port by dhrt bench, to read off the target "RESP within
#              10% of the native protocol's throughput" (two different load generators,
#              so a rough comparison of the paths; dhrt-RESP vs Redis under the same
#              redis-benchmark is the fair one)
#
# Everything it starts it stops, by PID, when it exits. Only 127.0.0.1 is used.
set -euo pipefail

REPS=5
DURATION=10
KEYSPACE=100000
MEMORY_KEYS=1000000
CONNECTIONS=50
VALUE_SIZE=100     # dhrt bench's default --value-size; redis-benchmark's -d
ONLY="memory,persisted,cluster,keys,resp"
OUT=""
BUILD=1
QUICK=0
DHRT_ARGS=()
ARGS="$*"

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    cat <<EOF

Options:
  --quick            1 repetition, 2 s runs, 10k keys, 100k keys for memory per key
  --reps N           repetitions of every run (default $REPS)
  --duration SECS    length of each run (default $DURATION; redis-benchmark has no
                     duration, so its -n is the rate last measured times this)
  --keyspace N       keys preloaded and drawn from (default $KEYSPACE; redis-benchmark -r)
  --memory-keys N    keys loaded for memory per key (default $MEMORY_KEYS)
  --only LIST        comparisons to run (default $ONLY)
  --unpinned         no taskset: servers and load generator share every CPU (how dhrt
                     scales with cores; Redis uses one)
  --out FILE         also write the Markdown table to FILE
  --no-build         use the dhrt binary already built
  --dhrt-args "ARGS"  more flags for every dhrt serve (word-split), e.g.
                     "--client-io epoll" to compare against answers written by epoll
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; REPS=1; DURATION=2; KEYSPACE=10000; MEMORY_KEYS=100000 ;;
        --reps) REPS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --keyspace) KEYSPACE="$2"; shift ;;
        --memory-keys) MEMORY_KEYS="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-build) BUILD=0 ;;
        --unpinned) UNPINNED=1 ;;
        --dhrt-args) read -r -a DHRT_ARGS <<<"$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/dhrt-vs-redis.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
PIDS=()

say() { echo "== $*" >&2; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# --- tools -------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null ||
    ! command -v redis-benchmark >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        say "installing redis-server and redis-tools"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y redis-server redis-tools >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y redis-server redis-tools >/dev/null; } ||
            { echo "SKIPPED: apt-get could not install redis-server; install it and rerun" >&2; exit 0; }
    else
        echo "SKIPPED: redis-server/redis-cli/redis-benchmark are missing and apt-get is unavailable (or not root):" \
            "install Redis 7 (Debian: redis-server redis-tools) and rerun" >&2
        exit 0
    fi
fi
if ! command -v python3 >/dev/null; then
    echo "python3 is needed to summarise the results" >&2
    exit 1
fi
if [ "${UNPINNED:-0}" = 1 ]; then
    SERVER_PIN=()
    CLIENT_PIN=()
    PINNING="unpinned (--unpinned): servers and load generator share all $(nproc) CPUs"
elif command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    PINNING="servers on CPU 0, load generator on CPU 1 (taskset)"
else
    say "taskset missing or fewer than 2 CPUs: running unpinned"
    SERVER_PIN=()
    CLIENT_PIN=()
    PINNING="unpinned"
fi

if [ "$BUILD" = 1 ]; then
    say "building dhrt (release)"
    (cd "$ROOT" && nice cargo build --release -p dhrt >&2)
fi
DHRT="${CARGO_TARGET_DIR:-$ROOT/target}/release/dhrt"
[ -x "$DHRT" ] || { echo "no $DHRT: build it (cargo build --release -p dhrt)" >&2; exit 1; }

# --- processes ---------------------------------------------------------------------
# A free port for Redis, and its cluster bus port (+ 10000) free too. Ports come from
# 20000-22767 so bus ports (30000-32767) stay below the kernel's ephemeral range (where
# `dhrt serve --port 0` lands) and never meet another Redis's port.
USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 2768))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            USED_PORTS="$USED_PORTS$p "
            FREE_PORT=$p
            return
        fi
    done
}

# start_dhrt NAME ARGS...: sets LAST_PID and LAST_ADDR.
start_dhrt() {
    local name="$1"; shift
    "${SERVER_PIN[@]}" "$DHRT" serve --port 0 "$@" "${DHRT_ARGS[@]}" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    LAST_ADDR=""
    for _ in $(seq 300); do
        LAST_ADDR="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/$name.out" | head -1)"
        [ -n "$LAST_ADDR" ] && return 0
        kill -0 "$LAST_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "dhrt serve ($name) did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

# start_redis NAME PORT ARGS...: sets LAST_PID.
start_redis() {
    local name="$1" port="$2"; shift 2
    mkdir -p "$WORK/$name"
    "${SERVER_PIN[@]}" redis-server --port "$port" --bind 127.0.0.1 --daemonize no \
        --dir "$WORK/$name" --logfile "$WORK/$name.log" --save '' --appendonly no "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for _ in $(seq 100); do
        if kill -0 "$LAST_PID" 2>/dev/null &&
            [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
            return 0
        fi
        kill -0 "$LAST_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server ($name) did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

stop() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

cpu_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
HZ="$(getconf CLK_TCK)"

# bench COMPARISON SYSTEM "PIDS" ARGS...: one measured run, appended to the results.
bench() {
    local comparison="$1" system="$2" pids="$3"; shift 3
    local before after json load
    load="$(cut -d' ' -f1 /proc/loadavg)"
    # shellcheck disable=SC2086
    before="$(cpu_ticks $pids)"
    json="$("${CLIENT_PIN[@]}" "$DHRT" bench --json --connections "$CONNECTIONS" \
        --duration "$DURATION" --keyspace "$KEYSPACE" "$@")"
    # shellcheck disable=SC2086
    after="$(cpu_ticks $pids)"
    json="{\"comparison\":\"$comparison\",\"system\":\"$system\",\"load1\":$load,\"server_cpu_ticks\":$((after - before)),\"hz\":$HZ,${json:1}"
    echo "$json" >>"$RESULTS"
    python3 - "$json" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
cpu = r["server_cpu_ticks"] / r["hz"] / max(r["seconds"], 1e-9)
print(f'   {r["comparison"]:9} {r["system"]:5} {r["workload"]:3} p{r["pipeline"]:<2} '
      f'{r["ops_per_sec"]:>10,.0f} ops/s  p50 {r["p50_us"]:>6} us  p99 {r["p99_us"]:>6} us  '
      f'errors {r["errors"]}  misses {r["misses"]}  server cpu {cpu:.2f}  client cpu {r["client_cpu"]:.2f}  load {r["load1"]}')
EOF
}

preload() {
    "${CLIENT_PIN[@]}" "$DHRT" bench --json --connections "$CONNECTIONS" --pipeline 16 \
        --keyspace "$KEYSPACE" --preload --requests 0 "$@" >/dev/null
}

# compare NAME "DHRT_PIDS" "DHRT_ARGS" "REDIS_PIDS" "REDIS_ARGS": every workload, REPS
# times, alternating which system goes first.
compare() {
    local name="$1" dpids="$2" dargs="$3" rpids="$4" rargs="$5" rep workload pipeline
    for rep in $(seq "$REPS"); do
        say "$name: repetition $rep of $REPS"
        for workload in set get; do
            for pipeline in 1 16; do
                # shellcheck disable=SC2086
                if [ $((rep % 2)) = 1 ]; then
                    bench "$name" dhrt "$dpids" $dargs --workload $workload --pipeline $pipeline
                    bench "$name" redis "$rpids" $rargs --workload $workload --pipeline $pipeline
                else
                    bench "$name" redis "$rpids" $rargs --workload $workload --pipeline $pipeline
                    bench "$name" dhrt "$dpids" $dargs --workload $workload --pipeline $pipeline
                fi
            done
        done
    done
}

# --- redis-benchmark, the second load generator -------------------------------------
# redis-benchmark's SET and GET tests with -r N use the keys key:<12-digit number below
# N> (16 bytes, the size dhrt bench's keys have), drawn at random, here in database 1
# (--dbnum 1: dhrt's `db1` collection, apart from dhrt bench's keys in database 0). A SET pass with -r would leave about a third of them unwritten
# for N draws (e^-1), so GETs would miss; instead rb_preload writes every one of
# key:000000000000 … key:<KEYSPACE-1>, once, with a pipelined SET per key over one
# connection, then checks with EXISTS that all of them are there. It is the same plain
# RESP for dhrt's Redis port and for redis-server, so both systems hold exactly the keys
# redis-benchmark's GET will read, with values of redis-benchmark's -d size.
rb_preload() {
    "${CLIENT_PIN[@]}" python3 - "$1" "$KEYSPACE" "$VALUE_SIZE" <<'PY'
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port))
buf = b""

def replies(count):
    """The next count one-line replies (+OK, :N, -ERR ...)."""
    global buf
    while buf.count(b"\r\n") < count:
        chunk = sock.recv(1 << 16)
        if not chunk:
            sys.exit(f"port {port} closed the connection during the preload")
        buf += chunk
    lines = buf.split(b"\r\n")
    buf = b"\r\n".join(lines[count:])
    return lines[:count]

def command(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

# Database 1: redis-benchmark runs with --dbnum 1, so its keys sit apart from dhrt
# bench's (database 0, `default`, on dhrt's Redis port).
sock.sendall(command(b"SELECT", b"1"))
if replies(1)[0] != b"+OK":
    sys.exit(f"SELECT 1 on port {port} failed")
value = b"x" * size
batch = 1000
for start in range(0, n, batch):
    keys = [b"key:%012d" % i for i in range(start, min(n, start + batch))]
    sock.sendall(b"".join(command(b"SET", k, value) for k in keys))
    bad = [r for r in replies(len(keys)) if r != b"+OK"]
    if bad:
        sys.exit(f"SET on port {port} answered {bad[0]!r}")
found = 0
for start in range(0, n, batch):
    sock.sendall(command(b"EXISTS", *[b"key:%012d" % i for i in range(start, min(n, start + batch))]))
    reply = replies(1)[0]
    if not reply.startswith(b":"):
        sys.exit(f"EXISTS on port {port} answered {reply!r}")
    found += int(reply[1:])
if found != n:
    sys.exit(f"port {port} holds {found} of the {n} keys preloaded")
PY
}

# redis_port_up PORT: waits until something answers PING on PORT.
redis_port_up() {
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "nothing answers PING on 127.0.0.1:$1" >&2
    exit 1
}

# rb_bench COMPARISON SYSTEM "PIDS" PORT WORKLOAD PIPELINE REQUESTS: one redis-benchmark
# run; sets RB_RPS, and appends its result to the results unless COMPARISON is "".
# redis-benchmark stops after -n requests (it has no duration); it exits non-zero at the
# first error reply, so a run that finishes had none. Its --csv (Redis 7) gives rps and
# avg/min/p50/p95/p99/max latency in ms (µs precision); the server CPU comes from /proc
# as for dhrt bench, charged to the requests sent, and the client's from bash's `time`.
declare -A RB_RATE=()
rb_bench() {
    local comparison="$1" system="$2" pids="$3" port="$4" workload="$5" pipeline="$6" requests="$7"
    local before after load times json TIMEFORMAT='%3R %3U %3S'
    load="$(cut -d' ' -f1 /proc/loadavg)"
    # shellcheck disable=SC2086
    before="$(cpu_ticks $pids)"
    if ! { time "${CLIENT_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNECTIONS" \
        -n "$requests" -d "$VALUE_SIZE" -r "$KEYSPACE" -P "$pipeline" -t "$workload" --dbnum 1 --csv \
        >"$WORK/rb.csv" 2>"$WORK/rb.err"; } 2>"$WORK/rb.time"; then
        echo "redis-benchmark against $system (port $port) failed:" >&2
        cat "$WORK/rb.err" "$WORK/rb.csv" >&2
        exit 1
    fi
    # shellcheck disable=SC2086
    after="$(cpu_ticks $pids)"
    times="$(tail -1 "$WORK/rb.time")"
    json="$(python3 - "$WORK/rb.csv" "$comparison" "$system" "$workload" "$pipeline" "$requests" \
        "$load" "$((after - before))" "$HZ" "$times" "$CONNECTIONS" "$VALUE_SIZE" "$KEYSPACE" <<'PY'
import csv, json, sys
(path, comparison, system, workload, pipeline, requests, load, ticks, hz, times,
 connections, value_size, keyspace) = sys.argv[1:]
rows = {r["test"]: r for r in csv.DictReader(open(path))}
row = rows.get(workload.upper())
if row is None:
    sys.exit(f"no {workload.upper()} row in redis-benchmark's output: {open(path).read()!r}")
us = lambda col: round(float(row[col]) * 1000)
requests, ticks, hz = int(requests), int(ticks), int(hz)
real, user, sys_ = (float(t) for t in times.split())
rps = float(row["rps"])
seconds = requests / rps if rps else 0.0
r = {"comparison": comparison, "system": system, "client": "redis-benchmark",
     "load1": float(load), "server_cpu_ticks": ticks, "hz": hz, "target": system,
     "workload": workload, "connections": int(connections), "pipeline": int(pipeline),
     "key_size": 16, "value_size": int(value_size), "keyspace": int(keyspace),
     "requests": requests, "errors": 0, "misses": None, "seconds": round(seconds, 3),
     "wall_seconds": real, "ops_per_sec": rps, "p50_us": us("p50_latency_ms"),
     "p95_us": us("p95_latency_ms"), "p99_us": us("p99_latency_ms"),
     "min_us": us("min_latency_ms"), "max_us": us("max_latency_ms"),
     "mean_us": float(row["avg_latency_ms"]) * 1000,
     "client_cpu": round((user + sys_) / max(real, 1e-9), 3),
     "server_cpu_us": round(ticks / hz * 1e6 / requests, 2) if requests else None}
print(json.dumps(r))
cpu = ticks / hz / max(seconds, 1e-9)
print(f'   {comparison or "(sizing)":9} {system:5} {workload:3} p{pipeline:<2} '
      f'{rps:>10,.0f} ops/s  p50 {r["p50_us"]:>6} us  p99 {r["p99_us"]:>6} us  '
      f'{requests:,} requests in {seconds:.2f} s (redis-benchmark)  server cpu {cpu:.2f}  '
      f'client cpu {r["client_cpu"]:.2f}  load {load}', file=sys.stderr)
PY
)"
    RB_RPS="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["ops_per_sec"])' "$json")"
    [ -z "$comparison" ] || echo "$json" >>"$RESULTS"
}

# rb_cell COMPARISON SYSTEM "PIDS" PORT WORKLOAD PIPELINE: a measured redis-benchmark run
# of about DURATION seconds. Its -n is the rate last measured in this cell (system,
# workload, pipeline) times DURATION; the first time, a short unrecorded sizing run
# (20,000 × pipeline requests, about a second or less) measures the rate, and
# warms the cell up.
rb_cell() {
    local comparison="$1" system="$2" pids="$3" port="$4" workload="$5" pipeline="$6"
    local cell="$system/$workload/$pipeline" requests
    if [ -z "${RB_RATE[$cell]:-}" ]; then
        rb_bench "" "$system" "$pids" "$port" "$workload" "$pipeline" $((20000 * pipeline))
        RB_RATE[$cell]="$RB_RPS"
    fi
    requests="$(python3 -c 'import sys; print(max(1000, round(float(sys.argv[1]) * float(sys.argv[2]))))' \
        "${RB_RATE[$cell]}" "$DURATION")"
    rb_bench "$comparison" "$system" "$pids" "$port" "$workload" "$pipeline" "$requests"
    RB_RATE[$cell]="$RB_RPS"
}

# compare_resp "DHRT_PID" DHRT_ADDR DHRT_RESP_PORT "REDIS_PID" REDIS_PORT: every
# workload, REPS times: dhrt's Redis port and redis-server under redis-benchmark,
# alternating which goes first, and the same dhrt node under dhrt bench over its
# WebSocket port (system "dhrt-ws") and over its Redis port (system "dhrt-rb": one
# load generator on both paths), run next to the RESP run they are compared with.
compare_resp() {
    local dpid="$1" daddr="$2" dport="$3" rpid="$4" rport="$5" rep workload pipeline
    for rep in $(seq "$REPS"); do
        say "resp: repetition $rep of $REPS"
        for workload in set get; do
            for pipeline in 1 16; do
                if [ $((rep % 2)) = 1 ]; then
                    bench resp dhrt-ws "$dpid" --node "$daddr" --workload $workload --pipeline $pipeline
                    bench resp dhrt-rb "$dpid" --target redis --redis "127.0.0.1:$dport" \
                        --workload $workload --pipeline $pipeline
                    rb_cell resp dhrt "$dpid" "$dport" $workload $pipeline
                    rb_cell resp redis "$rpid" "$rport" $workload $pipeline
                else
                    rb_cell resp redis "$rpid" "$rport" $workload $pipeline
                    rb_cell resp dhrt "$dpid" "$dport" $workload $pipeline
                    bench resp dhrt-rb "$dpid" --target redis --redis "127.0.0.1:$dport" \
                        --workload $workload --pipeline $pipeline
                    bench resp dhrt-ws "$dpid" --node "$daddr" --workload $workload --pipeline $pipeline
                fi
            done
        done
    done
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
PERSIST_NOTE=""

# --- dhrt --memory vs Redis without persistence ------------------------------------
if wants memory; then
    say "memory: dhrt serve --memory vs redis-server without persistence"
    start_dhrt mem --memory
    dpid=$LAST_PID daddr=$LAST_ADDR
    free_port; rport=$FREE_PORT
    start_redis mem-redis "$rport"
    rpid=$LAST_PID
    preload --node "$daddr"
    preload --target redis --redis "127.0.0.1:$rport"
    compare memory "$dpid" "--node $daddr" "$rpid" "--target redis --redis 127.0.0.1:$rport"
    stop "$dpid" "$rpid"
fi

# --- dhrt persisted vs Redis appendfsync always -------------------------------------
if wants persisted; then
    say "persisted: dhrt serve --data-dir vs redis-server --appendonly yes --appendfsync always"
    mkdir -p "$WORK/dhrt-data"
    start_dhrt persisted --data-dir "$WORK/dhrt-data"
    dpid=$LAST_PID daddr=$LAST_ADDR
    free_port; rport=$FREE_PORT
    start_redis aof-redis "$rport" --appendonly yes --appendfsync always
    rpid=$LAST_PID
    preload --node "$daddr"
    preload --target redis --redis "127.0.0.1:$rport"
    if [ -z "$(find "$WORK/dhrt-data" -type f 2>/dev/null | head -1)" ]; then
        PERSIST_NOTE="this dhrt build wrote nothing under --data-dir: its persisted node kept the data in memory"
        say "WARNING: $PERSIST_NOTE"
    fi
    compare persisted "$dpid" "--node $daddr" "$rpid" "--target redis --redis 127.0.0.1:$rport"
    stop "$dpid" "$rpid"
fi

# --- 3-node dhrt cluster vs Redis Cluster 3 masters + 3 replicas ---------------------
if wants cluster; then
    say "cluster: 3 dhrt nodes (3 replicas, quorum) vs Redis Cluster (3 masters + 3 replicas)"
    start_dhrt c1 --memory --replicas 3
    d1=$LAST_PID a1=$LAST_ADDR
    start_dhrt c2 --memory --replicas 3 --join "$a1"
    d2=$LAST_PID a2=$LAST_ADDR
    start_dhrt c3 --memory --replicas 3 --join "$a1"
    d3=$LAST_PID a3=$LAST_ADDR
    for _ in $(seq 300); do
        ok=1
        for a in "$a1" "$a2" "$a3"; do
            [ "$("$DHRT" ring --node "$a" 2>/dev/null | grep -c ' alive ')" = 3 ] || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.2
    done
    [ "$ok" = 1 ] || { echo "the dhrt cluster did not form" >&2; exit 1; }
    rpids=()
    raddrs=()
    for i in 1 2 3 4 5 6; do
        free_port; p=$FREE_PORT
        start_redis "cluster-$i" "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf"
        rpids+=("$LAST_PID")
        raddrs+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${raddrs[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
        { cat "$WORK/cluster-create.log" >&2; exit 1; }
    for _ in $(seq 300); do
        ok=1
        for a in "${raddrs[@]}"; do
            redis-cli -p "${a##*:}" cluster info | grep -q 'cluster_state:ok' || ok=0
        done
        [ "$(redis-cli -p "${raddrs[0]##*:}" cluster nodes | grep -c slave)" = 3 ] || ok=0
        [ $ok = 1 ] && break
        sleep 0.2
    done
    [ "$ok" = 1 ] || { echo "the Redis Cluster did not form" >&2; exit 1; }
    preload --node "$a1" --consistency quorum
    preload --target redis --redis "${raddrs[0]}" --redis-cluster
    compare cluster "$d1 $d2 $d3" "--node $a1 --consistency quorum" \
        "${rpids[*]}" "--target redis --redis ${raddrs[0]} --redis-cluster"
    stop "$d1" "$d2" "$d3" "${rpids[@]}"
fi

# --- memory per key ----------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }
if wants keys; then
    say "keys: memory per key with $MEMORY_KEYS keys"
    start_dhrt keys --memory
    dpid=$LAST_PID daddr=$LAST_ADDR
    sleep 1
    before=$(rss_kib "$dpid")
    "${CLIENT_PIN[@]}" "$DHRT" bench --json --connections "$CONNECTIONS" --pipeline 16 \
        --keyspace "$MEMORY_KEYS" --preload --requests 0 --node "$daddr" >/dev/null
    sleep 2
    after=$(rss_kib "$dpid")
    stop "$dpid"
    free_port; rport=$FREE_PORT
    start_redis keys-redis "$rport"
    rpid=$LAST_PID
    rbefore=$(used_memory "$rport")
    rrss_before=$(rss_kib "$rpid")
    "${CLIENT_PIN[@]}" "$DHRT" bench --json --connections "$CONNECTIONS" --pipeline 16 \
        --keyspace "$MEMORY_KEYS" --preload --requests 0 --target redis \
        --redis "127.0.0.1:$rport" >/dev/null
    rafter=$(used_memory "$rport")
    rrss_after=$(rss_kib "$rpid")
    keys=$(redis-cli -p "$rport" dbsize)
    stop "$rpid"
    echo "{\"comparison\":\"keys\",\"keys\":$MEMORY_KEYS,\"redis_keys\":$keys,\"dhrt_rss_before_kib\":$before,\"dhrt_rss_after_kib\":$after,\"redis_used_before\":$rbefore,\"redis_used_after\":$rafter,\"redis_rss_before_kib\":$rrss_before,\"redis_rss_after_kib\":$rrss_after}" >>"$RESULTS"
fi

# --- dhrt --memory over its Redis port vs Redis, both under redis-benchmark ------------
if wants resp; then
    say "resp: dhrt serve --memory over --resp-port vs redis-server, both driven by redis-benchmark"
    free_port; dport=$FREE_PORT
    start_dhrt resp --memory --resp-port "$dport"
    dpid=$LAST_PID daddr=$LAST_ADDR
    redis_port_up "$dport"
    free_port; rport=$FREE_PORT
    start_redis resp-redis "$rport"
    rpid=$LAST_PID
    # Both systems get key:000000000000 … key:<KEYSPACE-1> in database 1, what
    # redis-benchmark's GET reads (rb_preload; --dbnum 1); the dhrt node also gets
    # dhrt bench's own keys (16-digit numbers) in its `bench` collection for the runs
    # over its WebSocket port, and in database 0 (`default`) for dhrt bench's runs over
    # its Redis port: every lane works on a collection of KEYSPACE keys.
    rb_preload "$dport"
    rb_preload "$rport"
    preload --node "$daddr"
    preload --target redis --redis "127.0.0.1:$dport"
    compare_resp "$dpid" "$daddr" "$dport" "$rpid" "$rport"
    stop "$dpid" "$rpid"
fi

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- the table -----------------------------------------------------------------------
CPU_MODEL="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
export REPS DURATION KEYSPACE CONNECTIONS PINNING LOAD_START LOAD_END PERSIST_NOTE CPU_MODEL QUICK
REDIS_VERSION="$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')"
DHRT_VERSION="$("$DHRT" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
export REDIS_VERSION DHRT_VERSION
export COMMAND="bench/vs-redis.sh $ARGS"
python3 - "$RESULTS" <<'EOF' | tee "${OUT:-/dev/null}"
import json, os, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = [r for r in rows if r["comparison"] != "keys"]
env = os.environ

def median(xs):
    return statistics.median(xs) if xs else float("nan")

def group(comparison, system, workload, pipeline):
    return [r for r in runs if (r["comparison"], r["system"], r["workload"], r["pipeline"])
            == (comparison, system, workload, pipeline)]

def ops(xs):
    v = [r["ops_per_sec"] for r in xs]
    return f"{median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "—"

TITLES = {
    "memory": "dhrt --memory vs Redis, no persistence",
    "persisted": "dhrt persisted vs Redis appendfsync always",
    "cluster": "dhrt 3 nodes (N=3, quorum) vs Redis Cluster 3+3",
    "resp": "dhrt --memory Redis port vs Redis, both under redis-benchmark",
}
COMPARISONS = ["memory", "persisted", "cluster", "resp"]

print(f"Machine: {env['CPU_MODEL']}, {os.cpu_count()} CPUs; {env['PINNING']}. "
      f"Load average at start {env['LOAD_START']}, at end {env['LOAD_END']}.")
print(f"{env['DHRT_VERSION']}, Redis {env['REDIS_VERSION']}. {env['REPS']} repetitions of "
      f"{env['DURATION']} s per cell, alternating dhrt and Redis; {env['CONNECTIONS']} connections, "
      f"16 B keys, 100 B values, {int(env['KEYSPACE']):,} keys preloaded.")
print(f"Command: `{env['COMMAND'].strip()}`")
if any(r["comparison"] == "resp" for r in runs):
    print(f"`resp` rows: redis-benchmark -c {env['CONNECTIONS']} -d 100 -r {int(env['KEYSPACE']):,} "
          f"-P 1/16 -t set/get --dbnum 1 --csv (keys key:<12 digits>, 16 B; one client thread), each run "
          f"-n = the rate last measured × {env['DURATION']} s; key:000000000000 … "
          f"key:{int(env['KEYSPACE']) - 1:012d} preloaded in both by pipelined SETs, checked with EXISTS.")
if env.get("PERSIST_NOTE"):
    print(f"\nNote: {env['PERSIST_NOTE']}.")
print()
print("| comparison | workload | pipeline | dhrt ops/s median (min–max) | Redis ops/s median (min–max) "
      "| ratio | dhrt p50 / p99 µs | Redis p50 / p99 µs | target | |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
for comparison in COMPARISONS:
    for workload in ["set", "get"]:
        for pipeline in [1, 16]:
            d = group(comparison, "dhrt", workload, pipeline)
            r = group(comparison, "redis", workload, pipeline)
            if not d or not r:
                continue
            dm = median([x["ops_per_sec"] for x in d])
            rm = median([x["ops_per_sec"] for x in r])
            ratio = dm / rm if rm else float("nan")
            dp50 = median([x["p50_us"] for x in d])
            rp50 = median([x["p50_us"] for x in r])
            dp99 = median([x["p99_us"] for x in d])
            rp99 = median([x["p99_us"] for x in r])
            target, met = "", ""
            if comparison == "memory" and pipeline == 16:
                target, met = "≥ 1.0×", ratio >= 1.0
            elif comparison == "memory" and pipeline == 1:
                target, met = "p50 ≤ Redis", dp50 <= rp50
            elif comparison in ("persisted", "cluster") and workload == "set":
                target, met = "≥ 1.0×", ratio >= 1.0
            mark = "" if met == "" else ("met" if met else "**not met**")
            errors = sum(x["errors"] for x in d + r)
            misses = sum(x.get("misses") or 0 for x in d + r)  # redis-benchmark: null
            flag = f" ({errors} errors)" if errors else ""
            flag += f" ({misses} misses)" if misses and workload == "get" else ""
            print(f"| {TITLES[comparison]} | {workload.upper()}{flag} | {pipeline} | {ops(d)} | {ops(r)} "
                  f"| {ratio:.2f}× | {dp50:.0f} / {dp99:.0f} | {rp50:.0f} / {rp99:.0f} | {target} | {mark} |")

for k in [r for r in rows if r["comparison"] == "keys"]:
    n = k["keys"]
    dhrt = (k["dhrt_rss_after_kib"] - k["dhrt_rss_before_kib"]) * 1024 / n
    redis = (k["redis_used_after"] - k["redis_used_before"]) / n
    redis_rss = (k["redis_rss_after_kib"] - k["redis_rss_before_kib"]) * 1024 / n
    ratio = dhrt / redis if redis else float("nan")
    print()
    print(f"Memory per key, {n:,} keys of 16 B with 100 B values (Redis holds {k['redis_keys']:,}):\n")
    print("| dhrt --memory (RSS growth) | Redis (used_memory growth) | Redis (RSS growth) | ratio | target | |")
    print("|---:|---:|---:|---:|---|---|")
    print(f"| {dhrt:.0f} B | {redis:.0f} B | {redis_rss:.0f} B | {ratio:.2f}× | ≤ 1.0× | "
          f"{'met' if ratio <= 1.0 else '**not met**'} |")

# The same dhrt node over its WebSocket port and over its Redis port: first under one
# load generator (dhrt bench on both paths: the fair comparison, which the target is
# judged by), then with each path's own (dhrt bench, redis-benchmark: only rough, their
# client costs differ).
def path_rows(resp_system, target):
    out = []
    for workload in ["set", "get"]:
        for pipeline in [1, 16]:
            w = group("resp", "dhrt-ws", workload, pipeline)
            d = group("resp", resp_system, workload, pipeline)
            if not w or not d:
                continue
            wm = median([x["ops_per_sec"] for x in w])
            dm = median([x["ops_per_sec"] for x in d])
            ratio = dm / wm if wm else float("nan")
            # CPU per request from /proc for both paths, over each run.
            per = lambda xs: median([x["server_cpu_ticks"] / x["hz"] * 1e6 / x["requests"]
                                     for x in xs if x["requests"]])
            p = lambda xs, k: median([x[k] for x in xs])
            errors = sum(x["errors"] for x in w + d)
            misses = sum(x.get("misses") or 0 for x in w + d)
            flag = f" ({errors} errors)" if errors else ""
            flag += f" ({misses} misses)" if misses and workload == "get" else ""
            mark = ("met" if ratio >= 0.90 else "**not met**") if target else ""
            out.append(
                f"| {workload.upper()}{flag} | {pipeline} | {ops(w)} | {ops(d)} | {ratio:.2f}× "
                f"| {p(w, 'p50_us'):.0f} / {p(w, 'p99_us'):.0f} | {p(d, 'p50_us'):.0f} / {p(d, 'p99_us'):.0f} "
                f"| {per(w):.1f} | {per(d):.1f} | {'≥ 0.90×' if target else ''} | {mark} |")
    return out

HEADER = ("| workload | pipeline | native (WebSocket) ops/s median (min–max) | RESP ops/s median (min–max) "
          "| RESP / native | native p50 / p99 µs | RESP p50 / p99 µs | native server µs/request (/proc) "
          "| RESP server µs/request (/proc) | target | |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
same = path_rows("dhrt-rb", True)
if same:
    print()
    print("RESP path vs native protocol, the same dhrt --memory node under the same load "
          "generator: `dhrt bench` over its WebSocket port and over its Redis port "
          "(`--target redis`):\n")
    print(HEADER)
    print("\n".join(same))
rough = path_rows("dhrt", False)
if rough:
    print()
    print("The same two paths, each under its own load generator: `dhrt bench` over the "
          "WebSocket port, redis-benchmark over the Redis port (their client costs differ, "
          "so only a rough comparison):\n")
    print(HEADER)
    print("\n".join(rough))

print()
print(f"Server CPU (median over the runs; {env['PINNING']}): cores busy, and CPU per "
      "request summed over every node of the target (`server_cpu_us` of `dhrt bench`; for "
      "`resp`, /proc CPU over redis-benchmark's requests, and client CPU is redis-benchmark's):\n")
print("| comparison | workload | pipeline | dhrt cores | Redis cores | dhrt µs/request | Redis µs/request | ratio | client CPU dhrt / Redis |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for comparison in COMPARISONS:
    for workload in ["set", "get"]:
        for pipeline in [1, 16]:
            d = group(comparison, "dhrt", workload, pipeline)
            r = group(comparison, "redis", workload, pipeline)
            if not d or not r:
                continue
            cpu = lambda xs: median([x["server_cpu_ticks"] / x["hz"] / x["seconds"] for x in xs])
            client = lambda xs: median([x["client_cpu"] for x in xs])
            per = lambda xs: median([x["server_cpu_us"] for x in xs if x.get("server_cpu_us") is not None])
            dus, rus = per(d), per(r)
            ratio = dus / rus if rus else float("nan")
            print(f"| {comparison} | {workload.upper()} | {pipeline} | {cpu(d):.2f} | {cpu(r):.2f} "
                  f"| {dus:.1f} | {rus:.1f} | {ratio:.2f}× | {client(d):.2f} / {client(r):.2f} |")
EOF
if [ -n "$OUT" ]; then
    cp "$RESULTS" "$OUT.jsonl"
    say "table written to $OUT (every run's JSON in $OUT.jsonl)"
fi
