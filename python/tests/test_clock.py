"""Clocks seen from Python: every answer carries the node's clock and the client passes
the newest it saw with every request (see docs/node.md, "Clocks"); a write that lost
to a newer one and could not be re-stamped raises :class:`dhrt.ConflictError`."""

from __future__ import annotations

import pickle
from typing import List

from conftest import ServeProcess, start_serve

import dhrt


def test_conflict_error_is_an_unavailable_error_with_its_code() -> None:
    assert issubclass(dhrt.ConflictError, dhrt.UnavailableError)
    assert "ConflictError" in dhrt.errors.__all__ and dhrt.ConflictError is dhrt.errors.ConflictError
    e = dhrt.ConflictError("lost to a newer write", 0, 2)
    assert (e.code, e.acks, e.required) == ("conflict", 0, 2)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is dhrt.ConflictError and (back.acks, back.required) == (0, 2)


def test_the_client_keeps_the_newest_timestamp_it_has_seen(serve: List[ServeProcess]) -> None:
    node = start_serve(serve)
    with dhrt.connect(node.url) as db:
        ts = db.set("ada", "lovelace", collection="users")
        seen = db.seen
        assert seen is not None and seen >= ts
        later = db.set("ada", "byron", collection="users")
        assert later > seen and db.seen is not None and db.seen >= later
