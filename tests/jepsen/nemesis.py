"""The nemesis: a seeded schedule of faults, run one after another, each logged with times.

Faults (each held for a few seconds, then healed, then a quiet gap):
- kill: kill -9 one node, restart it later (same data dir);
- wipe: kill -9 one node, remove its store (node.redb stays: same member), restart; the
  next fault waits until it serves again (at most one data-losing fault at a time);
- pause: SIGSTOP one node, SIGCONT later;
- partition-halves: a 2|3 split (minority | majority) with blackhole routes;
- partition-isolate: one node cut off from every other node;
- partition-bridge: A sees B and C, B and C do not see each other (two groups bridged
  by one node);
- delay: one to three nodes' packets to their peers delayed by 50–200 ms (± 30 %);
- loss: one or two nodes drop 5–20 % of their packets to peers (and delay 5 ms);
- skew-small: one node restarted under libfaketime, clock ±100–300 ms (inside the
  documented 500 ms bound), restarted with a true clock at the end;
- skew-large: the same with ±1–2 s (beyond the bound).
The client namespace always reaches every node: partitions are between nodes only.
The schedule depends on the seed only; run times depend on the machine.
"""

import random
import time

KINDS = ["kill", "wipe", "pause", "partition-halves", "partition-isolate", "partition-bridge",
         "delay", "loss", "skew-small", "skew-large"]


def schedule(seed, duration, nodes, kinds=KINDS, warmup=5.0):
    """[(start, kind, params, hold)] for a run of `duration` seconds (start relative to t0)."""
    rng = random.Random(seed)
    out = []
    t = warmup
    ids = list(range(1, nodes + 1))
    while True:
        kind = rng.choice(kinds)
        hold = rng.uniform(4.0, 12.0)
        params = {}
        if kind in ("kill", "wipe", "pause"):
            params["node"] = rng.choice(ids)
        elif kind == "partition-halves":
            shuffled = rng.sample(ids, len(ids))
            params["groups"] = [sorted(shuffled[: len(ids) // 2]), sorted(shuffled[len(ids) // 2:])]
        elif kind == "partition-isolate":
            one = rng.choice(ids)
            params["groups"] = [[one], [i for i in ids if i != one]]
        elif kind == "partition-bridge":
            shuffled = rng.sample(ids, len(ids))
            bridge, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            params["bridge"] = bridge
            params["groups"] = [sorted(rest[:half]), sorted(rest[half:])]
        elif kind == "delay":
            params["nodes"] = sorted(rng.sample(ids, rng.randint(1, 3)))
            params["delay_ms"] = rng.randint(50, 200)
            params["jitter_ms"] = int(params["delay_ms"] * 0.3)
            params["loss"] = 0.0
        elif kind == "loss":
            params["nodes"] = sorted(rng.sample(ids, rng.randint(1, 2)))
            params["delay_ms"] = 5
            params["jitter_ms"] = 2
            params["loss"] = round(rng.uniform(0.05, 0.2), 3)
        elif kind in ("skew-small", "skew-large"):
            params["node"] = rng.choice(ids)
            mag = rng.uniform(0.1, 0.3) if kind == "skew-small" else rng.uniform(1.0, 2.0)
            params["skew"] = f"{rng.choice('+-')}{mag:.3f}"
        params["seed"] = rng.randrange(1 << 30)
        if t + hold > duration - 2.0:
            break
        out.append((round(t, 3), kind, params, round(hold, 3)))
        t += hold + rng.uniform(2.0, 6.0)
    return out


def cut_pairs(groups):
    """Node pairs that cannot reach each other when `groups` cannot reach each other."""
    pairs = []
    for gi, a in enumerate(groups):
        for b in groups[gi + 1:]:
            pairs += [(x, y) for x in a for y in b]
    return pairs


class Nemesis:
    """Runs a schedule against `nodes` (cluster.Node by index 1..n) and `net`."""

    def __init__(self, net, nodes, t0, log, stop_event):
        self.net = net
        self.nodes = nodes  # {i: Node}
        self.t0 = t0
        self.log = log
        self.stop = stop_event
        self.events = []  # dicts: kind, params, start, end, plus per-node facts

    def now(self):
        return time.monotonic() - self.t0

    def sleep_until(self, t):
        while not self.stop.is_set():
            left = t - self.now()
            if left <= 0:
                return True
            self.stop.wait(min(left, 0.5))
        return False

    def restart(self, node, skew=None, wait=30.0):
        node.start(skew=skew)
        ok = node.wait_serving(wait)
        if not ok:
            self.log(f"  n{node.i} not serving {wait:.0f} s after its restart")
        return ok

    def run(self, plan):
        for start, kind, params, hold in plan:
            if not self.sleep_until(start):
                break
            ev = {"kind": kind, "params": params, "start": self.now(), "end": None}
            self.events.append(ev)
            self.log(f"[{ev['start']:7.2f}] nemesis {kind} {describe(params)} for {hold:.1f} s")
            try:
                self.apply(kind, params, hold, ev)
            finally:
                if ev["end"] is None:
                    ev["end"] = self.now()
                self.log(f"[{ev['end']:7.2f}] nemesis {kind} healed")

    def apply(self, kind, params, hold, ev):
        end = self.now() + hold
        if kind in ("kill", "wipe"):
            node = self.nodes[params["node"]]
            node.kill()
            ev["down"] = {node.i: [self.now(), None]}
            if kind == "wipe":
                node.wipe()
                ev["wiped"] = {node.i: self.now()}
            self.sleep_until(end)
            ev["end"] = self.now()
            if not self.stop.is_set():
                # A wiped node must serve again before the next data-losing fault.
                self.restart(node, wait=60.0 if kind == "wipe" else 30.0)
            ev["down"][node.i][1] = self.now()
        elif kind == "pause":
            node = self.nodes[params["node"]]
            node.pause()
            ev["down"] = {node.i: [self.now(), None]}
            self.sleep_until(end)
            node.resume()
            ev["down"][node.i][1] = self.now()
        elif kind.startswith("partition"):
            pairs = cut_pairs(params["groups"])
            ev["cut"] = pairs
            self.net.set_blackholes(pairs)
            self.sleep_until(end)
            self.net.set_blackholes([])
        elif kind in ("delay", "loss"):
            try:
                for i in params["nodes"]:
                    self.net.start_queue(i, params["delay_ms"], params["jitter_ms"],
                                         params["loss"], params["seed"] + i)
                self.sleep_until(end)
            finally:
                for i in params["nodes"]:
                    self.net.stop_queue(i)
        elif kind.startswith("skew"):
            node = self.nodes[params["node"]]
            t_kill = self.now()
            node.kill()
            node.start(skew=params["skew"])
            ev["down"] = {node.i: [t_kill, self.now()]}
            node.wait_serving(30.0)
            self.sleep_until(end)
            t_kill = self.now()
            node.kill()
            ev["end"] = self.now()
            node.start()
            ev["down2"] = {node.i: [t_kill, self.now()]}
            node.wait_serving(30.0)

    def heal_all(self):
        """Heals everything: routes, queues, paused and stopped nodes, skewed clocks."""
        self.net.heal()
        for node in self.nodes.values():
            if node.paused:
                node.resume()
        for node in self.nodes.values():
            if not node.running() or node.skew:
                node.kill()
                node.start()
        return all(node.wait_serving(90.0) for node in self.nodes.values())

    # --- what was unreachable when, for the checker -------------------------------------
    def unreachable(self, owner, coordinator, t0, t1):
        """Whether node `owner` could not be reached by `coordinator` at some time in
        [t0, t1] (down, paused, or cut off by a partition)."""
        for ev in self.events:
            e_end = ev["end"] if ev["end"] is not None else float("inf")
            for key in ("down", "down2"):
                iv = ev.get(key, {}).get(owner)
                if iv and iv[0] < t1 and (iv[1] if iv[1] is not None else float("inf")) > t0:
                    return True
            if owner != coordinator and ev["start"] < t1 and e_end > t0:
                if (owner, coordinator) in ev.get("cut", []) or \
                        (coordinator, owner) in ev.get("cut", []):
                    return True
        return False

    def wiped_between(self, owner, t0, t1):
        for ev in self.events:
            tw = ev.get("wiped", {}).get(owner)
            if tw is not None and t0 < tw < t1:
                return True
        return False

    def active_at(self, t0, t1):
        """Names of the faults active at some time in [t0, t1]."""
        out = []
        for ev in self.events:
            e_end = ev["end"] if ev["end"] is not None else float("inf")
            if ev["start"] < t1 and e_end > t0:
                out.append(f"{ev['kind']}({describe(ev['params'])})")
        return out


def describe(params):
    parts = []
    for k, v in params.items():
        if k == "seed":
            continue
        parts.append(f"{k}={v}")
    return " ".join(parts)
