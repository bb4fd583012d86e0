"""A node without room: writes raise :class:`dhrt.StorageFullError` (code
``storage_full``), reads and deletes keep working. An impossible ``--min-free-mb``
reserve (more than any disk holds) makes every disk "full", so no root is needed."""

from __future__ import annotations

import pathlib
import pickle
from typing import List

import pytest
from conftest import ServeProcess, start_serve, wait_until

import dhrt

IMPOSSIBLE_RESERVE_MB = str(1 << 30)  # 1 PiB


def test_storage_full_error_is_an_unavailable_error_with_its_code() -> None:
    assert issubclass(dhrt.StorageFullError, dhrt.UnavailableError)
    assert "StorageFullError" in dhrt.errors.__all__ and dhrt.StorageFullError is dhrt.errors.StorageFullError
    e = dhrt.StorageFullError("no room", 0, 1)
    assert (e.code, e.acks, e.required, str(e)) == ("storage_full", 0, 1, "no room")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is dhrt.StorageFullError and (back.acks, back.required) == (0, 1)


def test_a_node_without_room_refuses_writes_with_storage_full(serve: List[ServeProcess], tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    node = start_serve(serve, "--min-free-mb", "0", data_dir=data)
    with dhrt.connect(node.url) as db:
        db.set("ada", "lovelace", collection="users")
    assert node.terminate() == 0

    node = start_serve(serve, "--min-free-mb", IMPOSSIBLE_RESERVE_MB, data_dir=data)
    with dhrt.connect(node.url) as db:
        assert wait_until(lambda: db.stats()["status"] == "alive")
        with pytest.raises(dhrt.StorageFullError) as info:
            db.set("ada", "byron", collection="users")
        e = info.value
        assert e.code == "storage_full" and "storage is full" in str(e), str(e)
        assert isinstance(e, dhrt.UnavailableError) and isinstance(e, dhrt.Error)
        # Reads answer the acknowledged value; a delete still works (it frees space).
        assert db.get("ada", collection="users") == b"lovelace"
        db.delete("ada", collection="users")
        assert db.get("ada", collection="users") is None
