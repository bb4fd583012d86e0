"""The workload: client threads writing, deleting and reading keys at quorum over HTTP.

Each worker has its own seeded RNG (so a seed gives the same choices: op, key, node),
picks a random node per request, writes unique values (`w<worker>-<n>`), and records
every operation with its invoke and complete times (seconds since the run began) and
an outcome:
- ok: 200 (a read's 404 `not_found` is an ok read of "absent");
- fail: the request was definitely not applied — any 4xx, or 503 `unavailable` saying
  nothing was written (overloaded, no node serving, syncing, shutting down); for a read,
  any error;
- info: indeterminate — a timeout, a refused or reset connection, `quorum_not_reached`
  (`acked` replicas may hold it), `unavailable` "not committed", 5xx otherwise.
"""

import http.client
import json
import random
import threading
import time

import cluster

DEFINITE_UNAVAILABLE = ("overloaded", "no node is serving", "is syncing", "shutting down",
                        "is leaving", "owners of this key can", "has not heard from its cluster",
                        "no node owns any part")


def classify_write(status, body):
    if status == 200:
        return "ok", None
    try:
        err = json.loads(body).get("error", {})
    except ValueError:
        err = {}
    code, msg = err.get("code", str(status)), err.get("message", "")
    if 400 <= status < 500:
        return "fail", code
    if code == "unavailable" and any(s in msg for s in DEFINITE_UNAVAILABLE):
        return "fail", f"{code}: {msg[:60]}"
    return "info", f"{code}: {msg[:60]}"


class Workload:
    def __init__(self, nodes, keys, seed, workers, t0, timeout=3.0, pace=0.02,
                 weights=(0.5, 0.15, 0.35), consistency="quorum", max_ops=1_000_000):
        self.nodes = nodes
        self.keys = keys
        self.seed = seed
        self.workers = workers
        self.t0 = t0
        self.timeout = timeout
        self.pace = pace
        self.weights = weights
        self.consistency = consistency
        self.max_ops = max_ops
        self.history = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def now(self):
        return time.monotonic() - self.t0

    def one(self, worker, rng, n):
        f = rng.choices(("write", "delete", "read"), weights=self.weights)[0]
        key = rng.choice(self.keys)
        node = rng.choice(self.nodes)
        value = f"w{worker}-{n}" if f == "write" else None
        path = cluster.key_path(key, self.consistency)
        op = {"f": f, "key": key, "value": value, "node": node.i, "inv": self.now(),
              "worker": worker}
        try:
            if f == "write":
                status, headers, body = cluster.request(node.addr, "PUT", path,
                                                        body=value.encode(), timeout=self.timeout)
            elif f == "delete":
                status, headers, body = cluster.request(node.addr, "DELETE", path,
                                                        timeout=self.timeout)
            else:
                status, headers, body = cluster.request(node.addr, "GET", path,
                                                        timeout=self.timeout)
            op["cmp"] = self.now()
            if f == "read":
                if status == 200:
                    op.update(type="ok", value=body.decode(errors="replace"), error=None,
                              ts=headers.get("x-dhrt-ts"))
                elif status == 404:
                    op.update(type="ok", value=None, error=None)
                else:
                    op.update(type="fail", error=f"{status}")
            else:
                op["type"], op["error"] = classify_write(status, body)
                if status == 200:
                    try:
                        op["ts"] = json.loads(body).get("ts")
                    except ValueError:
                        pass
        except (OSError, http.client.HTTPException) as e:
            op["cmp"] = self.now()
            op["type"] = "fail" if f == "read" else "info"
            op["error"] = type(e).__name__
        with self.lock:
            self.history.append(op)

    def run_worker(self, worker):
        rng = random.Random(self.seed * 1000 + worker)
        n = 0
        while not self.stop.is_set() and n < self.max_ops:
            n += 1
            self.one(worker, rng, n)
            self.stop.wait(self.pace * rng.random() * 2)

    def start(self):
        for w in range(self.workers):
            t = threading.Thread(target=self.run_worker, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)
