"""Type stubs for the compiled module ``dhrt._dhrt`` (built from python/src/).

This is the thin layer: it takes arguments already defaulted by the pure-Python
package and returns plain values (``bytes``, tuples, JSON text). Use :mod:`dhrt`
instead; these signatures are for the package's own code and for type checkers.

A ``Client`` made with ``asynchronous=False`` blocks (the GIL released) and returns
results; with ``asynchronous=True`` its methods return asyncio awaitables of them. Its
watches follow it.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

_Key = Union[str, bytes, bytearray]
_Value = Union[str, bytes, bytearray]
_Consistency = Union[str, int]
_EntryTuple = Tuple[Optional[bytes], int, int, Optional[int]]

__version__: str
"""The dhrt version this module was built from, such as ``"0.1.0"``."""

MAX_KEY_BYTES: int
"""The longest key, in bytes (65536)."""

DEFAULT_MAX_VALUE_BYTES: int
"""The largest value a node accepts by default, in bytes (16 MiB)."""

class Client:
    """The Rust ``dhrt::Client``: pipelined, ring-aware, one connection per node."""

    def __init__(
        self,
        seeds: Sequence[str],
        timeout: Optional[float],
        max_value: int,
        asynchronous: bool = False,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
    ) -> None:
        """A client of the cluster reached through ``seeds``, presenting ``token`` on every
        connection; nothing is sent yet. ``tls_ca`` (a PEM file) verifies the nodes' TLS
        certificates and turns TLS on."""
    def connect(self) -> Any:
        """Connects (once) through the first reachable seed and reads the ring."""
    def get(
        self, collection: str, key: _Key, consistency: _Consistency, timeout: Optional[float],
    ) -> Any:
        """The value (``bytes``) of ``key``, or ``None``."""
    def set(
        self, collection: str, key: _Key, value: _Value, consistency: _Consistency,
        ttl: Optional[float], timeout: Optional[float],
    ) -> Any:
        """Writes ``key`` = ``value``; the write's timestamp (``int``)."""
    def delete(
        self, collection: str, key: _Key, consistency: _Consistency, timeout: Optional[float],
    ) -> Any:
        """Deletes ``key``; the delete's timestamp (``int``)."""
    def get_many(
        self, collection: str, keys: Sequence[_Key], consistency: _Consistency,
        timeout: Optional[float],
    ) -> Any:
        """The values of ``keys`` in order (``list[bytes | None]``)."""
    def set_many(
        self, collection: str, items: Sequence[Tuple[_Key, _Value]], consistency: _Consistency,
        ttl: Optional[float], timeout: Optional[float],
    ) -> Any:
        """Writes every item with one timestamp (``int``, ``None`` for no items)."""
    def scan(
        self, collection: str, cursor: Optional[bytes], prefix: Optional[_Key], limit: int,
        consistency: _Consistency, timeout: Optional[float],
    ) -> Any:
        """One page: ``(list[(key, value)], cursor or None)``."""
    def watch(
        self, collection: str, prefix: Optional[_Key], timeout: Optional[float],
    ) -> Any:
        """Subscribes; a ``Watch`` once a node has the subscription."""
    def replica(self, collection: str, timeout: Optional[float]) -> Any:
        """Opens a local copy; a ``Replica`` once it has caught up."""
    def stats(self, node: Optional[str], timeout: Optional[float]) -> Any:
        """A node's stats as JSON text."""
    def ring(self, timeout: Optional[float]) -> Any:
        """The ring: ``list[(id, addr, tokens, status)]``."""
    def collection_create(
        self, collection: str, settings: Dict[str, Any], timeout: Optional[float],
    ) -> Any:
        """Gives ``collection`` the settings in ``settings`` (``consistency``, ``ttl`` in
        seconds, ``max_keys``, ``max_bytes``, ``replicas``, ``select`` as a ``dict`` of
        node labels, ``zone_label``); its description, a tuple ``(name, defined,
        placement, replicas, keys, bytes, consistency, ttl_ms, max_keys, max_bytes,
        (replicas_setting, select, zone_label), moving)`` whose consistency is a level's
        name or a number's digits, whose triple is the layout the settings ask for, and
        whose ``moving`` is ``None`` (the layout in use is the one asked for),
        ``"pending"`` (a move not started yet) or the phase of the move under way
        (``"announced"``, ``"copying"``, ``"joint"``)."""
    def collection_alter(
        self, collection: str, change: Dict[str, Any], timeout: Optional[float],
    ) -> Any:
        """Changes the settings named in ``change`` (a ``None`` value: back to the
        cluster's default); the description tuple."""
    def collection_show(self, collection: str, timeout: Optional[float]) -> Any:
        """The description tuple of ``collection``."""
    def collection_list(self, timeout: Optional[float]) -> Any:
        """The description tuples of every collection with settings or keys."""
    def collection_drop(
        self, collection: str, consistency: _Consistency, timeout: Optional[float],
    ) -> Any:
        """Deletes every key of ``collection`` and its settings; how many keys (``int``)."""
    @property
    def seen(self) -> Optional[int]:
        """The newest timestamp a node's answer carried to this client, or None."""

class Watch:
    """A subscription; dropping or closing it unsubscribes."""

    @property
    def ended(self) -> bool:
        """Whether the watch has ended."""
    @property
    def interruptions(self) -> int:
        """How many times the watch was placed again on another node."""
    def next(self, timeout: Optional[float]) -> Any:
        """The next change ``(collection, key, value, ts)``; ``None`` once ended; raises
        ``dhrt.TimeoutError`` after ``timeout``."""
    def close(self) -> None:
        """Ends the subscription."""

class Replica:
    """A local copy of one collection, read without asking a node."""

    @property
    def collection(self) -> str:
        """The collection copied."""
    @property
    def status(self) -> str:
        """``"syncing"``, ``"synced"``, ``"interrupted"``, ``"live"`` or ``"ended"``."""
    @property
    def closed(self) -> bool:
        """Whether it was closed."""
    def get(self, key: Union[str, bytes]) -> Optional[bytes]:
        """The live value of ``key``, or ``None``."""
    def len(self) -> int:
        """Live entries held."""
    def scan(self, cursor: Optional[bytes], limit: int) -> Tuple[List[Tuple[bytes, bytes]], Optional[bytes]]:
        """A page of live pairs after ``cursor`` and the next page's cursor."""
    def wait_synced(self, timeout: Optional[float]) -> Any:
        """Waits until the copy has caught up."""
    def close(self) -> None:
        """Stops following the cluster."""

class Node:
    """A dhrt node running in this process."""

    @staticmethod
    def start(
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Optional[str] = None,
        join: List[str] = ...,
        replicas: int = 3,
        vnodes: int = ...,
        max_value: int = ...,
        id: Optional[int] = None,
        min_free_mb: int = 64,
        leave_timeout: float = 30.0,
        advertise: Optional[str] = None,
        admin_token_file: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_client_auth: bool = False,
    ) -> "Node":
        """Starts a node (in memory when ``data_dir`` is ``None``) and returns once it
        listens. With ``admin_token_file``, every client must present a token; with
        ``tls_cert`` and ``tls_key`` (PEM files) it speaks only TLS."""
    @property
    def addr(self) -> str:
        """``host:port``."""
    @property
    def id(self) -> int:
        """The node id."""
    @property
    def storage(self) -> str:
        """``in memory`` or ``in DIR``."""
    @property
    def running(self) -> bool:
        """Whether it still runs."""
    def kill(self) -> None:
        """Stops it at once, as a crash would."""
    def leave(self) -> bool:
        """Leaves gracefully; whether every range was handed off."""

def init_logs(filter: str) -> None:
    """Sends the nodes' logs to stderr, filtered (``info``, ``debug``, ``dhrt=trace``)."""

def hashed_position(collection: str, key: bytes) -> int:
    """The ring position of ``key`` in a hashed collection (the default placement):
    xxh3-64 of the key, seeded with xxh3-64 of the collection name. An int in
    ``[0, 2**64)``."""

def ordered_position(key: bytes) -> int:
    """The ring position of ``key`` in an ordered collection: its first 8 bytes read
    big-endian, zero-padded on the right, so ring order is key order. An int in
    ``[0, 2**64)``."""

def merge_entries(a: _EntryTuple, b: _EntryTuple, now: Optional[int] = None) -> _EntryTuple:
    """The last-writer-wins merge of two entries ``(value, ts, origin, expires)``."""

def entry_digest(key: bytes, entry: _EntryTuple) -> int:
    """The Merkle digest of ``entry`` stored under ``key``."""

def describe_frame(frame: bytes) -> str:
    """Decodes a wire frame and describes its message; raises ``dhrt.FrameError``."""

def reencode_frame(frame: bytes) -> bytes:
    """Decodes a wire frame and encodes its message again; raises ``dhrt.FrameError``."""
