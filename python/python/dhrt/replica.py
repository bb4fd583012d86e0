"""Local copies of collections: :meth:`dhrt.Client.replica` and
:meth:`dhrt.AsyncClient.replica`.

A copy holds every key and value of one collection in this process. It catches up
from the collection's replicas by Merkle sync (only the differences travel) and then
stays current through a watch; when a node dies it moves to another and catches up
again. Reads never ask a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator, Optional, Tuple

from dhrt import _dhrt
from dhrt._options import Key, Seconds, seconds
from dhrt.errors import NotFoundError

_PAGE = 1000


class Replica(Mapping):  # type: ignore[type-arg]
    """A read-only mapping of ``bytes`` keys to ``bytes`` values: a local copy of one
    collection, kept in sync with the cluster::

        users = db.replica("users")      # waits until it has caught up
        users[b"alice"]                  # b'admin', read from this process
        len(users), list(users), b"bob" in users

    Values are those :meth:`dhrt.Client.get` would answer: deleted and expired keys
    are missing. A read sees every change that reached this process before it. Close
    it (or use it as a context manager) to stop following the cluster.
    """

    def __init__(self, native: _dhrt.Replica) -> None:
        self._native = native

    @property
    def collection(self) -> str:
        """The collection copied."""
        return self._native.collection

    def __getitem__(self, key: Key) -> bytes:
        value = self._native.get(key)
        if value is None:
            raise NotFoundError(f"no key {key!r} in the replica of {self.collection!r}")
        return value

    def get(self, key: Key, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the copy has none."""
        value = self._native.get(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes)):
            return False
        return self._native.get(key) is not None

    def __len__(self) -> int:
        return self._native.len()

    def __iter__(self) -> Iterator[bytes]:
        return (k for k, _ in self.scan())

    def scan(self) -> Iterator[Tuple[bytes, bytes]]:
        """Every ``(key, value)`` pair, in ring order, page by page."""
        cursor: Optional[bytes] = None
        while True:
            items, cursor = self._native.scan(cursor, _PAGE)
            yield from items
            if cursor is None:
                return

    @property
    def status(self) -> str:
        """``"synced"`` (caught up), ``"syncing"``, ``"interrupted"`` (its node died; it
        is moving to another), ``"live"`` (moved, about to catch up) or ``"ended"``."""
        return self._native.status

    def wait_synced(self, timeout: Optional[Seconds] = None) -> None:
        """Waits until the copy has caught up (again, after an interruption); raises
        :class:`dhrt.TimeoutError` after ``timeout`` seconds."""
        self._native.wait_synced(seconds(timeout))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def close(self) -> None:
        """Stops following the cluster; reads after this raise
        :class:`dhrt.ConnectionError`."""
        self._native.close()

    def __enter__(self) -> "Replica":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.status
        return f"<dhrt.Replica {self.collection!r} {state}>"
