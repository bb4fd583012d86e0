"""The shared test vectors (tests/vectors/*.json), checked from Python.

The same files are checked by Rust (core/tests/vectors.rs) and will be by JS, so the
three hosts agree byte for byte on where keys live.
"""

import json
import pathlib

import dhrt

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "vectors"


def test_hash_positions_match_the_shared_vectors():
    cases = json.loads((VECTORS / "hash.json").read_text())["cases"]
    assert len(cases) >= 10
    for case in cases:
        key = bytes.fromhex(case["key_hex"])
        if case["placement"] == "hashed":
            got = dhrt.hashed_position(case["collection"], key)
        else:
            got = dhrt.ordered_position(key)
        assert got == int(case["position"]), case
