#!/usr/bin/env python3
"""dhrt's Python client against redis-py, the same loops through each.

Starts a dhrt node (``python -m dhrt serve --memory``, a process of its own; with
``--dhrt-bin PATH`` a cargo-built ``dhrt serve``) and Debian's redis-server (no
persistence) on free ports of 127.0.0.1, then times, for each system, from one Python
thread:

- single:  N SET calls, then N GET calls of the same keys (one round trip each);
- batched: the same N keys, BATCH at a time — dhrt ``mset``/``mget`` (one request per
  batch), redis-py ``pipeline(transaction=False)`` of BATCH SETs or GETs (one round
  trip per batch).

Keys are ``key:000000042``-style (16 bytes), values 100 random bytes. Every round runs
both systems, alternating which goes first; the table shows the median ops/s of each
over the rounds and the ratio dhrt / redis-py (above 1.0 means dhrt is faster). With
``--pin`` (the default when ``taskset`` exists) the servers share CPU 0 and this
process runs on CPU 1, as ``bench/vs-redis.sh`` does.

    python3 bench/python_vs_redis.py                      # 100k keys, 3 rounds
    python3 bench/python_vs_redis.py --count 20000 --rounds 1     # a quick look
    python3 bench/python_vs_redis.py --out /tmp/table.md

Needs ``pip install ./python redis`` and redis-server (``apt-get install
redis-server``). Everything it starts it stops, by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

try:
    import redis
except ImportError:  # pragma: no cover - said once, plainly
    sys.exit("the redis package is missing: pip install redis")

import dhrt

Loop = Callable[[], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: List[str], cpu: Optional[int]) -> List[str]:
    return ["taskset", "-c", str(cpu)] + cmd if cpu is not None else cmd


def start_dhrt(cpu: Optional[int], binary: Optional[str]) -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    serve = [binary, "serve"] if binary else [sys.executable, "-m", "dhrt", "serve"]
    cmd = pinned([*serve, "--memory", "--port", "0"], cpu)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "DHRT_LOG": "warn"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on " in line:
            return proc, line.split("listening on ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"{' '.join(serve)} did not start")


def start_redis(cpu: Optional[int]) -> Tuple[subprocess.Popen, int]:  # type: ignore[type-arg]
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is missing: apt-get install redis-server")
    port = free_port()
    cmd = pinned([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], cpu)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def chunks(items: List[bytes], size: int) -> List[List[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def loops(
    keys: List[bytes],
    batch: int,
    set_one: Callable[[bytes], object],
    get_one: Callable[[bytes], object],
    set_batch: Callable[[List[bytes]], object],
    get_batch: Callable[[List[bytes]], object],
) -> Dict[str, Loop]:
    """The four timed loops over ``keys``, for one system's four operations."""
    groups = chunks(keys, batch)
    return {
        "SET single": lambda: [set_one(k) for k in keys] and None,
        "GET single": lambda: [get_one(k) for k in keys] and None,
        "SET batched": lambda: [set_batch(g) for g in groups] and None,
        "GET batched": lambda: [get_batch(g) for g in groups] and None,
    }


def dhrt_loops(db: dhrt.Client, keys: List[bytes], value: bytes, batch: int) -> Dict[str, Loop]:
    return loops(
        keys,
        batch,
        set_one=lambda k: db.set(k, value),
        get_one=db.get,
        set_batch=lambda g: db.mset([(k, value) for k in g]),
        get_batch=db.mget,
    )


def redis_loops(r: "redis.Redis", keys: List[bytes], value: bytes, batch: int) -> Dict[str, Loop]:
    def pipelined(g: List[bytes], op: str) -> object:
        p = r.pipeline(transaction=False)
        for k in g:
            if op == "set":
                p.set(k, value)
            else:
                p.get(k)
        return p.execute()

    return loops(
        keys,
        batch,
        set_one=lambda k: r.set(k, value),
        get_one=r.get,
        set_batch=lambda g: pipelined(g, "set"),
        get_batch=lambda g: pipelined(g, "get"),
    )


def timed(loop: Loop, count: int) -> float:
    start = time.perf_counter()
    loop()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="keys per loop (default 100000)")
    parser.add_argument("--batch", type=int, default=100, help="keys per batch or pipeline (default 100)")
    parser.add_argument("--value-size", type=int, default=100, help="value bytes (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating who goes first (default 3)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--dhrt-bin",
        metavar="PATH",
        help="run the node with this dhrt binary (e.g. target/release/dhrt) instead of python -m dhrt serve",
    )
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args()

    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu = 0 if pin else None
    if pin:
        os.sched_setaffinity(0, {1})
    keys = [f"key:{i:012d}".encode() for i in range(args.count)]
    value = os.urandom(args.value_size)

    dhrt_proc, addr = start_dhrt(server_cpu, args.dhrt_bin)
    redis_proc, port = start_redis(server_cpu)
    results: Dict[str, Dict[str, List[float]]] = {}
    try:
        db = dhrt.connect(addr, consistency="one")
        r = redis.Redis(port=port)
        # A fresh node serves once it has finished its start-up sync; then warm both up.
        deadline = time.monotonic() + 30
        while db.stats()["status"] != "alive" and time.monotonic() < deadline:
            time.sleep(0.1)
        for i in range(2000):
            db.set(b"warm-up", value)
            r.set(b"warm-up", value)
        systems = {
            "dhrt": dhrt_loops(db, keys, value, args.batch),
            "redis-py": redis_loops(r, keys, value, args.batch),
        }
        for round_ in range(args.rounds):
            order = ["dhrt", "redis-py"] if round_ % 2 == 0 else ["redis-py", "dhrt"]
            for system in order:
                for name, loop in systems[system].items():
                    ops = timed(loop, args.count)
                    results.setdefault(name, {}).setdefault(system, []).append(ops)
                    print(f"round {round_ + 1} {system:8} {name:12} {ops:>10,.0f} ops/s", file=sys.stderr, flush=True)
    finally:
        for proc in (dhrt_proc, redis_proc):
            proc.send_signal(signal.SIGTERM)
        for proc in (dhrt_proc, redis_proc):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    lines = [
        f"{args.count:,} keys of 16 B, values of {args.value_size} B, batches of {args.batch}, "
        f"{args.rounds} rounds (medians, min–max); "
        f"dhrt {dhrt.__version__} (one node, {'`' + os.path.basename(args.dhrt_bin) + ' serve`' if args.dhrt_bin else '`python -m dhrt serve`'} --memory, consistency one), "
        f"redis-py {redis.__version__} ({'hiredis' if redis.utils.HIREDIS_AVAILABLE else 'no hiredis'}), "
        f"{'servers on CPU 0, client on CPU 1' if pin else 'not pinned'}.",
        "",
        "| loop | dhrt ops/s | redis-py ops/s | ratio dhrt / redis-py |",
        "|---|---:|---:|---:|",
    ]
    for name, by_system in results.items():
        d, rp = by_system["dhrt"], by_system["redis-py"]
        cell = lambda xs: f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"  # noqa: E731
        ratio = statistics.median(d) / statistics.median(rp)
        lines.append(f"| {name} | {cell(d)} | {cell(rp)} | {ratio:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
