#!/usr/bin/env python3
"""An abstract model of migration rules, to compare them before simulating (see
docs/simulation.md, "Migration").

A ring of `nodes` x `vnodes` random tokens holds 2,000 skewed ordered keys
(`user:0000`..`user:1999`: 200 ring positions of 10 keys). In each *step* every node
may move one of its tokens down (counterclockwise) inside the range it owns, handing
the top of that range to the next token clockwise - the only kind of move migration
makes. Loads are exact and moves simultaneous; the real protocol adds hand-off, gossip
and settling between steps. The model reports, per seed, the step at which every
node's primary load is within 1.5x of the mean, or "stall@k" (no rule fires any more,
still unbalanced) or "-" (not within 400 steps).

Rules, all with slack 25% and a minimum of 20 entries:
  token  god's pairwise rule: token t moves when load(t) > load(s)*1.25 + 20, for its
         successor token s held by another node, to the midpoint of the difference;
  node   the same, comparing the two nodes' total loads;
  floor  dhrt's rule: a node whose total exceeds the least loaded node's total
         (floor) *1.25 + 20 moves its most loaded token, giving min(load(t),
         (mine - floor)/2) to the next token clockwise, whoever holds it.

Usage: scripts/migration_model.py [rule ...]   (default: all three)
"""
import bisect
import random
import sys

M = 1 << 64
SLACK, MIN = 0.25, 20


def skewed_keys(n=2000):
    counts = {}
    for i in range(n):
        p = int.from_bytes((b"user:%04d" % i)[:8], "big")
        counts[p] = counts.get(p, 0) + 1
    return sorted(counts.items())


class Ring:
    def __init__(self, nodes, vnodes, seed, keys):
        rng = random.Random(seed)
        self.tok = sorted((rng.getrandbits(64), n) for n in range(nodes) for _ in range(vnodes))
        self.nodes = nodes
        self.keys = keys
        self.pos = [p for p, _ in keys]
        self.cum = [0]
        for _, c in keys:
            self.cum.append(self.cum[-1] + c)

    def count(self, a, b):
        """Entries in (a, b]."""
        if a == b:
            return self.cum[-1]
        if a < b:
            return self.cum[bisect.bisect_right(self.pos, b)] - self.cum[bisect.bisect_right(self.pos, a)]
        return self.count(a, M - 1) + self.count(-1, b)

    def load(self, i):
        return self.count(self.tok[i - 1][0], self.tok[i][0])

    def node_loads(self):
        loads = [0] * self.nodes
        for i, (_, n) in enumerate(self.tok):
            loads[n] += self.load(i)
        return loads

    def split(self, i, give):
        """(q, kept): q in (p, t) keeping about load - give entries in (p, q]."""
        p, t = self.tok[i - 1][0], self.tok[i][0]
        keep = self.load(i) - give
        inside = [(x, c) for x, c in self.keys if (p < x < t) if p < t] if p < t else \
            [(x, c) for x, c in self.keys if x > p] + [(x, c) for x, c in self.keys if x < t]
        kept, q = 0, None
        for x, c in inside:
            if abs(kept + c - keep) > abs(kept - keep):
                break
            kept, q = kept + c, x
        if q is None:
            q = (p + 1) % M
            kept = self.count(p, q)
        return (q, kept) if q not in (p, t) else None


def choose(ring, rule, node, loads, tloads):
    n = len(ring.tok)
    mine = [i for i in range(n) if ring.tok[i][1] == node]
    best = None
    for i in mine:
        j = (i + 1) % n
        other = ring.tok[j][1]
        lt = tloads[i]
        if rule == "token":
            if other == node or not lt > tloads[j] * (1 + SLACK) + MIN:
                continue
            give = (lt - tloads[j]) / 2
        elif rule == "node":
            if other == node or not loads[node] > loads[other] * (1 + SLACK) + MIN or lt == 0:
                continue
            give = min(lt, (loads[node] - loads[other]) / 2)
        else:
            floor = min(l for k, l in enumerate(loads) if k != node)
            if not loads[node] > floor * (1 + SLACK) + MIN or lt == 0:
                continue
            give = min(lt, (loads[node] - floor) / 2)
        key = lt if rule == "floor" else give
        if best is None or key > best[0]:
            best = (key, i, give)
    return best


def step(ring, rule):
    loads = ring.node_loads()
    tloads = [ring.load(i) for i in range(len(ring.tok))]
    moves = []
    for node in range(ring.nodes):
        best = choose(ring, rule, node, loads, tloads)
        if best:
            split = ring.split(best[1], best[2])
            if split and split[1] < tloads[best[1]]:
                moves.append((ring.tok[best[1]], split[0]))
    for tok, q in moves:
        i = ring.tok.index(tok)
        ring.tok[i] = (q, tok[1])
        ring.tok.sort()
    return len(moves)


def run(rule, nodes, vnodes, seed, limit=400):
    ring = Ring(nodes, vnodes, seed, skewed_keys())
    for k in range(limit):
        loads = ring.node_loads()
        if max(loads) * len(loads) <= 1.5 * sum(loads):
            return str(k)
        if step(ring, rule) == 0:
            loads = ring.node_loads()
            return "stall@%d (%.1fx)" % (k, max(loads) * len(loads) / sum(loads))
    return "-"


if __name__ == "__main__":
    for rule in sys.argv[1:] or ["token", "node", "floor"]:
        for vnodes in (1, 4, 8, 32):
            print(rule, "vnodes", vnodes, [run(rule, 5, vnodes, seed) for seed in range(1, 11)])
