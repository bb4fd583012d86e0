"""The checker: a per-key register check over a recorded history, plus the summaries.

A history is a list of operations (dicts):
    {"f": "write"|"delete"|"read", "key": str, "value": str|None, "node": int,
     "inv": float, "cmp": float, "type": "ok"|"fail"|"info", "error": str|None}
`value` is the value written (None for a delete) or, for a read, the value read (None
for "not found"). `type` is ok (acknowledged; for a read: answered), fail (definitely
not applied: a write refused before anything was stored) or info (indeterminate: a
timeout, a lost connection, quorum_not_reached — it may have been stored, now or later).

Each key is a register whose initial state is "absent"; a delete writes "absent". A
read that answered is *legal* when its value is that of a write w (or the initial
state) that
  - was not definitely failed, and was invoked before the read completed, and
  - is not superseded at the read's start: no acknowledged write w2 was invoked after w
    completed and completed before the read began.
An indeterminate write never completes (it may take effect at any later time), so it is
never superseded; the initial state completed at -inf. Every write carries a unique
value, so a value names its write. A read of a value that no possible write wrote is
"impossible"; a read of a superseded write is "stale" — for the final reads (after the
heal) a stale read means an acknowledged write was lost, or a deleted key came back.

A stale read made while more than floor(N/2) of the key's owners were unreachable (or
had lost their data) is not a violation of quorum semantics: `excuse(read, newer)`
decides, given the read and the acknowledged write that superseded what it returned.
"""

import math

INF = math.inf


def writes_by_key(history):
    out = {}
    for op in history:
        if op["f"] in ("write", "delete") and op["type"] != "fail":
            out.setdefault(op["key"], []).append(op)
    return out


def effective_cmp(w):
    return w["cmp"] if w["type"] == "ok" else INF


def superseded(w, t, acked):
    """Whether an acknowledged write of `acked` started after `w` completed and
    completed before time `t`; returns that write (the earliest to complete) or None."""
    end = effective_cmp(w)
    best = None
    for w2 in acked:
        if w2 is not w and w2["inv"] > end and w2["cmp"] < t:
            if best is None or w2["cmp"] < best["cmp"]:
                best = w2
    return best


INITIAL = {"f": "delete", "key": None, "value": None, "node": None, "inv": -INF, "cmp": -INF,
           "type": "ok", "error": None, "initial": True}


def check_read(r, writes, acked):
    """None when read `r` is legal, else (kind, candidates, newer): kind "stale" or
    "impossible", the writes it could have read, and the write that superseded them."""
    value = r["value"]
    candidates = [w for w in writes if w["value"] == value and w["inv"] < r["cmp"]]
    if value is None:
        candidates.append(INITIAL)
    if not candidates:
        return ("impossible", [], None)
    newer = None
    for w in candidates:
        s = superseded(w, r["inv"], acked)
        if s is None:
            return None
        if newer is None or s["cmp"] > newer["cmp"]:
            newer = s
    return ("stale", candidates, newer)


def check(history, final_reads=(), excuse=None):
    """Checks the history and the final reads (made after the heal). Returns a dict:
    violations (list), excused (list), and counts."""
    writes = writes_by_key(history)
    violations, excused = [], []
    for phase, ops in (("run", history), ("final", final_reads)):
        for r in ops:
            if r["f"] != "read" or r["type"] != "ok":
                continue
            ws = writes.get(r["key"], [])
            acked = [w for w in ws if w["type"] == "ok"]
            bad = check_read(r, ws, acked)
            if bad is None:
                continue
            kind, candidates, newer = bad
            v = {"phase": phase, "kind": kind, "key": r["key"], "read": r, "newer": newer,
                 "read_of": [w for w in candidates if not w.get("initial")]}
            if phase == "final" and kind == "stale":
                v["kind"] = "deleted key back" if newer["f"] == "delete" else \
                    "acknowledged write lost"
            reason = excuse(r, newer) if (excuse and phase == "run" and kind == "stale") else None
            if reason:
                v["excuse"] = reason
                excused.append(v)
            else:
                violations.append(v)
    return {"violations": violations, "excused": excused}


def op_counts(history):
    """{f: {ok, fail, info}} for the history."""
    out = {}
    for op in history:
        c = out.setdefault(op["f"], {"ok": 0, "fail": 0, "info": 0})
        c[op["type"]] += 1
    return out


def longest_write_gap(history, start, end):
    """(gap seconds, from, to): the longest stretch in [start, end] without an
    acknowledged write or delete (by completion time)."""
    acks = sorted(op["cmp"] for op in history
                  if op["f"] in ("write", "delete") and op["type"] == "ok")
    points = [start] + [t for t in acks if start <= t <= end] + [end]
    best = (0.0, start, start)
    for a, b in zip(points, points[1:]):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


def convergence(replica_values, owners):
    """replica_values: {key: {node: (value, ts) | "unread"}} read from each owner alone.
    Returns the keys whose owners disagree (ignoring owners that could not be read), with
    what each holds."""
    diverged = []
    for key, per_node in sorted(replica_values.items()):
        seen = {n: v for n, v in per_node.items() if v != "unread"}
        if len({tuple(v) for v in seen.values()}) > 1:
            diverged.append({"key": key, "replicas": per_node, "owners": owners.get(key)})
    return diverged


def describe_op(op):
    """One line for an operation: what, through which node, outcome and times."""
    if op is None:
        return "-"
    if op.get("initial"):
        return "initial(absent)"
    v = "absent" if op["value"] is None else op["value"]
    return f"{op['f']}({v}) via n{op['node']} {op['type']} [{op['inv']:.3f}s..{op['cmp']:.3f}s]"
