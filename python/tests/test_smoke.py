"""Smoke tests of the compiled module: it imports, and agrees with dhrt-core."""

import re

import pytest

import dhrt


def test_version_is_a_semver_string():
    assert isinstance(dhrt.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", dhrt.__version__)


def test_ordered_position_is_the_first_eight_bytes_big_endian():
    assert dhrt.ordered_position(b"a") == 0x6100000000000000
    assert dhrt.ordered_position(b"") == 0
    assert dhrt.ordered_position(b"abcdefghij") == int.from_bytes(b"abcdefgh", "big")
    assert dhrt.ordered_position(b"apple") < dhrt.ordered_position(b"banana")


def test_hashed_position_matches_dhrt_core():
    # The same value is pinned in dhrt-wasm's tests and was checked against an
    # independent xxh3 implementation: xxh3_64(key, seed=xxh3_64(collection)).
    assert dhrt.hashed_position("users", b"alice") == 0x842B5888779E2FB0
    assert dhrt.hashed_position("default", b"k") == 0x0DD7B9FA0F9933EC


def test_hashed_position_is_a_deterministic_u64_per_collection():
    pos = dhrt.hashed_position("users", b"alice")
    assert type(pos) is int and 0 <= pos < 2**64
    assert pos == dhrt.hashed_position("users", b"alice")
    assert pos != dhrt.hashed_position("admins", b"alice")


def test_keys_must_be_bytes():
    with pytest.raises(TypeError):
        dhrt.ordered_position("a")  # type: ignore[arg-type]
