"""The shared test vectors (tests/vectors/*.json), checked from Python.

The same files are checked by Rust (core/tests/vectors.rs) and by JS, so the hosts
agree byte for byte on where keys live, how versions merge, what Merkle trees hold and
what frames look like. Merkle trees are rebuilt here from their documented definition
(XOR of entry digests under a node's position prefix), not by calling the tree code.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import pytest

import dhrt
from dhrt import core

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "vectors"


def load(name: str) -> Dict[str, Any]:
    doc: Dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


def opt_int(v: Optional[str]) -> Optional[int]:
    return None if v is None else int(v)


def entry_of(v: Dict[str, Any]) -> core.Entry:
    value = None if v["value_hex"] is None else bytes.fromhex(v["value_hex"])
    return core.Entry(value, int(v["ts"]), int(v["origin"]), opt_int(v["expires"]))


def test_hash_positions_match_the_shared_vectors() -> None:
    cases = load("hash.json")["cases"]
    assert len(cases) >= 10
    for case in cases:
        key = bytes.fromhex(case["key_hex"])
        if case["placement"] == "hashed":
            got = dhrt.hashed_position(case["collection"], key)
        else:
            got = dhrt.ordered_position(key)
        assert got == int(case["position"]), case


def test_entry_merges_match_the_shared_vectors() -> None:
    cases = load("entries.json")["cases"]
    assert len(cases) >= 10
    for case in cases:
        a, b, now = entry_of(case["a"]), entry_of(case["b"]), opt_int(case["now"])
        want = entry_of(case["merged"])
        assert core.merge(a, b, now) == want, case["name"]
        assert core.merge(b, a, now) == want, f"{case['name']}: commutative"


def position(collection: str, key: bytes, placements: Dict[str, str]) -> int:
    if placements.get(collection) == "ordered":
        return core.ordered_position(key)
    return core.hashed_position(collection, key)


def test_merkle_trees_match_the_shared_vectors() -> None:
    cases = load("merkle.json")["cases"]
    assert len(cases) >= 5
    for case in cases:
        name, depth, placements = case["name"], case["depth"], case["placements"]
        winners: Dict[Tuple[str, bytes], core.Entry] = {}
        for rec in case["records"]:
            collection, key, entry = rec["collection"], bytes.fromhex(rec["key_hex"]), entry_of(rec["entry"])
            assert position(collection, key, placements) == int(rec["position"]), name
            assert core.entry_digest(key, entry) == int(rec["digest"]), name
            held = winners.get((collection, key))
            winners[(collection, key)] = entry if held is None else core.merge(held, entry)
        for tree in case["trees"]:
            collection = tree["collection"]
            stored: List[Tuple[int, int]] = [
                (position(c, k, placements), core.entry_digest(k, e))
                for (c, k), e in winners.items()
                if c == collection
            ]

            def summary(level: int, prefix: int) -> Dict[str, str]:
                shift = 64 - 2 * level
                digest, count = 0, 0
                for pos, d in stored:
                    if level == 0 or pos >> shift == prefix:
                        digest ^= d
                        count += 1
                return {"digest": str(digest), "count": str(count)}

            assert summary(0, 0) == tree["root"], f"{name}/{collection}: root"
            for node in tree["nodes"]:
                assert node["level"] <= depth
                want = {"digest": node["digest"], "count": node["count"]}
                assert summary(node["level"], int(node["prefix"])) == want, f"{name}/{collection}: {node}"


def test_wire_frames_match_the_shared_vectors() -> None:
    doc = load("wire.json")
    assert len(doc["cases"]) >= 5
    for case in doc["cases"]:
        frame = bytes.fromhex(case["hex"])
        assert core.reencode_frame(frame) == frame, case["name"]
        assert core.describe_frame(frame)
    for case in doc["invalid"]:
        with pytest.raises(dhrt.FrameError) as info:
            core.describe_frame(bytes.fromhex(case["hex"]))
        assert info.value.kind == case["error"], case["name"]
        assert isinstance(info.value, dhrt.InvalidInputError)


def test_a_timestamp_carries_its_milliseconds() -> None:
    case = load("wire.json")["cases"][2]  # a Value written at (1700000000000 ms, counter 3)
    assert "1700000000000 ms" in case["message"]
    assert core.ts_millis((1_700_000_000_000 << 16) | 3) == 1_700_000_000_000
