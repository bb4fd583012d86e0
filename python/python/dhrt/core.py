"""The engine's pure functions, without a node: where a key lives on the ring, how two
versions of an entry merge, an entry's Merkle digest, and what a wire frame holds.

They are the Rust core's own (``dhrt-core``), so Python agrees byte for byte with the
nodes, the browser package and the shared test vectors in ``tests/vectors/``::

    >>> from dhrt import core
    >>> old = core.Entry(b"old", ts=1 << 16, origin=9)
    >>> new = core.Entry(b"new", ts=2 << 16, origin=1)
    >>> core.merge(old, new).value
    b'new'
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from dhrt import _dhrt

__all__ = [
    "Entry",
    "merge",
    "entry_digest",
    "hashed_position",
    "ordered_position",
    "describe_frame",
    "reencode_frame",
    "ts_millis",
]

hashed_position = _dhrt.hashed_position
ordered_position = _dhrt.ordered_position
describe_frame = _dhrt.describe_frame
reencode_frame = _dhrt.reencode_frame


class Entry(NamedTuple):
    """One version of a key as replicas store it."""

    value: Optional[bytes]
    """The value; ``None`` for a tombstone (a delete)."""
    ts: int
    """The hybrid-logical-clock timestamp: 48 bits of milliseconds, 16 of counter."""
    origin: int
    """The id of the node that coordinated the write (breaks timestamp ties)."""
    expires: Optional[int] = None
    """Wall-clock milliseconds when the value expires, if it has a TTL."""


def merge(a: Entry, b: Entry, now: Optional[int] = None) -> Entry:
    """The last-writer-wins merge of two versions: the later ``(ts, origin)`` wins, a
    tombstone wins an exact tie. With ``now`` (wall-clock ms), expired values first
    read as tombstones. Commutative, associative and idempotent."""
    return Entry(*_dhrt.merge_entries(_raw(a), _raw(b), now))


def entry_digest(key: bytes, entry: Entry) -> int:
    """The Merkle digest of ``entry`` stored under ``key``: xxh3-64 of the key, the
    timestamp, origin, tombstone flag and expiry. A tree node's digest is the XOR of
    the digests below it."""
    return _dhrt.entry_digest(key, _raw(entry))


def _raw(e: Entry) -> Tuple[Optional[bytes], int, int, Optional[int]]:
    return (e.value, e.ts, e.origin, e.expires)


def ts_millis(ts: int) -> int:
    """The wall-clock milliseconds of a timestamp (``Event.ts``, a write's result)."""
    return ts >> 16
