"""dhrt — a masterless, horizontally scalable, real-time key/value database.

This package is dhrt's Python face: a client for a running cluster, a cluster that
runs inside your process, and the engine's pure functions. The compiled module
``dhrt._dhrt`` wraps the Rust client, node and core; this layer gives them their
Python shape.

Try it without installing anything else — three real nodes in this process::

    import dhrt

    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client()
        db.set("alice", "admin", collection="users")
        print(db.get("alice", collection="users"))        # b'admin'
        users = db.collection("users")                    # a mutable mapping
        users["bob"] = b"guest"
        print(dict(users.items()))

Against a running node (``python -m dhrt serve``, or ``dhrt serve``)::

    db = dhrt.connect("ws://127.0.0.1:7453", timeout=5.0)

- :func:`connect` / :class:`Client` — blocking; the GIL is released while waiting.
- :class:`AsyncClient` — the same methods for asyncio.
- :meth:`Client.replica` — a local copy of a collection, kept in sync (:class:`Replica`).
- :class:`LocalCluster` — real nodes in-process: ``kill``, ``restart``, ``add_node``.
- :mod:`dhrt.errors` — one hierarchy under :class:`Error`.
- :mod:`dhrt.core` — ring positions, entry merges, Merkle digests, wire frames.

Ring positions are ints in ``[0, 2**64)``::

    >>> import dhrt
    >>> hex(dhrt.ordered_position(b"a"))
    '0x6100000000000000'
"""

from dhrt import core, errors
from dhrt._dhrt import __version__, hashed_position, ordered_position
from dhrt._options import (
    DEFAULT_COLLECTION,
    DEFAULT_MAX_VALUE_BYTES,
    MAX_KEY_BYTES,
    CollectionInfo,
    Event,
    RingMember,
)
from dhrt.aio import AsyncClient, AsyncCollection, AsyncReplica, AsyncWatch, connect_async
from dhrt.client import Client, Collection, Watch, connect
from dhrt.cluster import LocalCluster
from dhrt.replica import Replica
from dhrt.errors import *  # noqa: F403 - the exception hierarchy, listed in errors.__all__

__all__ = errors.__all__ + [
    "__version__",
    "connect",
    "connect_async",
    "Client",
    "AsyncClient",
    "AsyncCollection",
    "Collection",
    "Watch",
    "AsyncWatch",
    "Replica",
    "AsyncReplica",
    "Event",
    "RingMember",
    "CollectionInfo",
    "LocalCluster",
    "core",
    "hashed_position",
    "ordered_position",
    "DEFAULT_COLLECTION",
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_KEY_BYTES",
]
