"""The blocking client: :func:`connect`, :class:`Client`, :class:`Collection`,
:class:`Watch`.

A :class:`Client` wraps the Rust client (``dhrt::Client``): one pipelined WebSocket
connection per node, requests sent straight to a replica of their key. Every call
releases the GIL while it waits, so threads sharing one client run their requests
concurrently on those connections. Each call waits at most ``timeout`` seconds (the
client's, or the call's own) and then raises :class:`dhrt.TimeoutError`.
"""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, MutableMapping, ValuesView
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from dhrt import _dhrt
from dhrt._options import (
    DEFAULT_COLLECTION,
    DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_URL,
    UNSET,
    CollectionInfo,
    Consistency,
    Event,
    Key,
    RingMember,
    PathLike,
    Seconds,
    Selector,
    Settings,
    Value,
    _Unset,
    change_of,
    closed,
    collection_info,
    items_of,
    keys_of,
    ring_of,
    seconds,
    settings_of,
    stats_of,
)
from dhrt.errors import NotFoundError, TimeoutError
from dhrt.replica import Replica

__all__ = ["connect", "Client", "Collection", "Watch"]


def connect(
    url: Union[str, Sequence[str]] = DEFAULT_URL,
    *,
    token: Optional[str] = None,
    ca: Optional[PathLike] = None,
    timeout: Optional[Seconds] = 5.0,
    collection: str = DEFAULT_COLLECTION,
    consistency: Optional[Consistency] = None,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> "Client":
    """Connects to a dhrt cluster through the node at ``url`` and returns a
    :class:`Client`.

    ``url`` is ``ws://host:port``, ``host:port``, or a list of them (the first
    reachable is used; the client then learns every node from the ring). A
    ``wss://host:port`` address speaks TLS to every node, verifying their certificates
    against ``ca`` (the path of the cluster CA's PEM file; giving one turns TLS on for
    ``host:port`` addresses too) or, without it, the public roots. ``timeout``
    (seconds; ``None`` waits forever) bounds every call, connecting included.
    ``collection`` and ``consistency`` are the defaults of calls that name none;
    ``consistency=None`` lets the node choose (``quorum`` unless configured otherwise).
    ``max_value_bytes`` is the largest value the client lets through (match the nodes'
    ``--max-value``). ``token`` is presented on every connection the client opens: a
    node started with ``--admin-token-file`` requires one (``dhrt token create`` makes
    one); without it such a node answers every call with :class:`dhrt.UnauthorizedError`,
    and a call the token does not allow raises :class:`dhrt.ForbiddenError`.

    Raises :class:`dhrt.ConnectionError` when no node answers::

        db = dhrt.connect("ws://127.0.0.1:7453")
        db.set("alice", "admin", collection="users")
        secure = dhrt.connect("wss://db.example.com:7453", ca="ca.pem")
    """
    return Client(
        url,
        token=token,
        ca=ca,
        timeout=timeout,
        collection=collection,
        consistency=consistency,
        max_value_bytes=max_value_bytes,
    )


class Client:
    """A connection to a dhrt cluster (see :func:`connect`, which takes the same
    arguments). Safe to share between threads; use it as a context manager to close it.

    Every data call takes the keywords ``collection=`` (default: the client's),
    ``consistency=`` (``"one"``, ``"quorum"``, ``"all"`` or a number of replicas) and
    ``timeout=`` (seconds); writes also take ``ttl=`` (seconds or a ``timedelta``).
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]] = DEFAULT_URL,
        *,
        token: Optional[str] = None,
        ca: Optional[PathLike] = None,
        timeout: Optional[Seconds] = 5.0,
        collection: str = DEFAULT_COLLECTION,
        consistency: Optional[Consistency] = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self._settings = s = Settings(url, token, timeout, collection, consistency, max_value_bytes, ca)
        native = _dhrt.Client(s.urls, s.timeout, max_value_bytes, False, s.token, tls_ca=s.ca)
        native.connect()
        self._native: Optional[_dhrt.Client] = native

    @property
    def _client(self) -> _dhrt.Client:
        if self._native is None:
            raise closed()
        return self._native

    @property
    def urls(self) -> List[str]:
        """The addresses this client was given."""
        return list(self._settings.urls)

    @property
    def timeout(self) -> Optional[float]:
        """Seconds each call may take (``None``: no limit)."""
        return self._settings.timeout

    @property
    def seen(self) -> Optional[int]:
        """The newest timestamp any node's answer carried to this client (``None``
        before the first answer). The client passes it with every request, so its next
        write is stamped above everything it saw, through any node."""
        return self._client.seen

    # -- single keys ----------------------------------------------------------------

    def get(
        self,
        key: Key,
        default: Optional[bytes] = None,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[bytes]:
        """The value of ``key``, or ``default`` (``None``) when it is missing, deleted or
        expired. The replicas asked (``consistency``) must answer; the newest version
        among their answers wins."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        value = self._client.get(c, key, level, wait)
        return default if value is None else value

    def set(
        self,
        key: Key,
        value: Value,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Writes ``key`` = ``value`` (expiring after ``ttl`` seconds, if given) and
        returns the write's timestamp, once ``consistency`` replicas stored it."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        ts: int = self._client.set(c, key, value, level, seconds(ttl), wait)
        return ts

    def delete(
        self,
        key: Key,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Deletes ``key`` (leaving a tombstone) and returns the delete's timestamp.
        Deleting a missing key is not an error."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        ts: int = self._client.delete(c, key, level, wait)
        return ts

    def exists(
        self,
        key: Key,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> bool:
        """Whether ``key`` has a live value (a read: costs as much as :meth:`get`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        return self._client.get(c, key, level, wait) is not None

    # -- batches --------------------------------------------------------------------

    def mget(
        self,
        keys: Iterable[Key],
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> List[Optional[bytes]]:
        """The values of ``keys`` in one request: a list in the same order, ``None`` for
        each missing key."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        values: List[Optional[bytes]] = self._client.get_many(c, keys_of(keys), level, wait)
        return values

    def mset(
        self,
        items: Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]],
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[int]:
        """Writes every ``(key, value)`` of ``items`` (a mapping or pairs) in one request,
        all with one timestamp, which it returns (``None`` for no items). Not a
        transaction: after an error some items may have been written."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        ts: Optional[int] = self._client.set_many(c, items_of(items), level, seconds(ttl), wait)
        return ts

    # -- scans and watches ----------------------------------------------------------

    def scan(
        self,
        prefix: Optional[Key] = None,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: Optional[Seconds] = None,
    ) -> Iterator[Tuple[bytes, bytes]]:
        """Every live ``(key, value)`` of the collection (only keys starting with
        ``prefix``, if given), in ring order: key order for ``ordered.*`` collections,
        hash order otherwise. Fetches ``page_size`` entries per round trip, lazily,
        continuing from a cursor; ``timeout`` applies to each page. The first page is
        read at once, so bad arguments fail here rather than at the first ``next``.

        A scan is not a snapshot: writes made while it runs may or may not be seen."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        native = self._client
        items, cursor = native.scan(c, None, prefix, page_size, level, wait)

        def pages() -> Iterator[Tuple[bytes, bytes]]:
            page, more = items, cursor
            while True:
                yield from page
                if more is None:
                    return
                page, more = native.scan(c, more, prefix, page_size, level, wait)

        return pages()

    def watch(
        self,
        prefix: Optional[Key] = None,
        *,
        collection: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> "Watch":
        """Subscribes to changes of the collection (keys starting with ``prefix``, if
        given) and returns a :class:`Watch` — an iterator of :class:`dhrt.Event`, and a
        context manager that unsubscribes. Returns once a node has the subscription:
        changes made after that are all delivered, each once, those of one key in
        timestamp order. When that node dies the watch moves to another by itself
        (:attr:`Watch.interruptions` counts such moves; changes made during one may be
        missed)::

            with db.watch(collection="users") as changes:
                for event in changes:
                    print(event.key, event.value)
        """
        c = self._settings.collection if collection is None else collection
        return Watch(self._client.watch(c, prefix, self._settings.wait(timeout)))

    def replica(self, collection: Optional[str] = None, *, timeout: Optional[Seconds] = None) -> Replica:
        """A local copy of the collection: a read-only mapping of ``bytes`` keys to
        ``bytes`` values held in this process, caught up by Merkle sync and kept current
        by a watch (see :class:`dhrt.Replica`). Returns once it has caught up::

            users = db.replica("users")
            users[b"alice"]         # read locally, no round trip
        """
        c = self._settings.collection if collection is None else collection
        return Replica(self._client.replica(c, self._settings.wait(timeout)))

    # -- the cluster ----------------------------------------------------------------

    def stats(self, node: Optional[str] = None, *, timeout: Optional[Seconds] = None) -> Dict[str, Any]:
        """Counts and state of one node (``node`` = ``"host:port"``, else any connected
        node), as a dict: ``keys``, ``tombstones``, ``bytes``, ``collections``,
        ``status``, ``members`` (by status), ``sync``, ``hints_pending``..."""
        return stats_of(self._client.stats(node, self._settings.wait(timeout)))

    def ring(self, *, timeout: Optional[Seconds] = None) -> List[RingMember]:
        """Every member of the ring as a connected node sees it."""
        return ring_of(self._client.ring(self._settings.wait(timeout)))

    def collection(
        self,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
    ) -> "Collection":
        """The collection ``name`` as a mutable mapping (see :class:`Collection`), with
        its own default ``consistency`` and ``ttl`` for writes."""
        return Collection(self, name, consistency=consistency, ttl=ttl)

    # -- collection settings --------------------------------------------------------

    def create_collection(
        self,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
        max_keys: Optional[int] = None,
        max_bytes: Optional[int] = None,
        replicas: Optional[int] = None,
        select: Optional[Selector] = None,
        zone_label: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> CollectionInfo:
        """Gives the collection ``name`` settings that every node applies, and returns
        its :class:`dhrt.CollectionInfo`. A setting left ``None`` is the cluster's
        default:

        - ``consistency``: the level of requests that name none (``"one"``,
          ``"quorum"``, ``"all"`` or a number of replicas);
        - ``ttl``: seconds (or a ``timedelta``) a value written without a ``ttl`` of
          its own lives;
        - ``max_keys``, ``max_bytes``: a quota; a write that would pass it raises
          :class:`dhrt.QuotaExceededError`;
        - ``replicas``: copies of each key, an ``int`` from 1 to 64 (the cluster's is
          ``dhrt serve --replicas``); quorums count the collection's own;
        - ``select``: the labels a node must carry to hold its replicas, a ``dict``
          such as ``{"disk": "ssd"}`` (nodes are labelled with ``dhrt serve --label
          disk=ssd``); ``{}`` or ``None``: any node;
        - ``zone_label``: a node label whose values are zones, such as ``"zone"``:
          each key's replicas go to distinct zones while there are enough.

        ``replicas``, ``select`` and ``zone_label`` make the collection's *layout*:
        one other than the cluster's moves its data while it serves, which
        :attr:`dhrt.CollectionInfo.moving` follows. Keys it already holds are kept.
        Raises :class:`dhrt.ConflictError` when the collection has settings already
        (change them with :meth:`alter_collection`); a node that requires tokens
        allows this to ``admin`` tokens only::

            db.create_collection("sessions", ttl=3600, max_keys=1_000_000)
            db.create_collection("hot", replicas=2, select={"disk": "ssd"})
        """
        settings = settings_of(consistency, ttl, max_keys, max_bytes, replicas, select, zone_label)
        return collection_info(self._client.collection_create(name, settings, self._settings.wait(timeout)))

    def alter_collection(
        self,
        name: str,
        *,
        consistency: Union[Consistency, None, _Unset] = UNSET,
        ttl: Union[Seconds, None, _Unset] = UNSET,
        max_keys: Union[int, None, _Unset] = UNSET,
        max_bytes: Union[int, None, _Unset] = UNSET,
        replicas: Union[int, None, _Unset] = UNSET,
        select: Union[Selector, None, _Unset] = UNSET,
        zone_label: Union[str, None, _Unset] = UNSET,
        timeout: Optional[Seconds] = None,
    ) -> CollectionInfo:
        """Changes the settings given (see :meth:`create_collection`) and returns the
        collection's :class:`dhrt.CollectionInfo`. A setting left out stays as it is;
        ``None`` returns it to the cluster's default (``select=None``: any node). A
        collection without settings is given them. Raises
        :class:`dhrt.InvalidInputError` (a ``ValueError``) when no setting is given.
        Needs an ``admin`` token on a node that requires tokens::

            db.alter_collection("sessions", ttl=7200, max_keys=None)   # no key quota

        A change of ``replicas``, ``select`` or ``zone_label`` returns at once and
        moves the collection's data while it serves: the description's ``replicas``
        stays the old number until the move is done, which
        :attr:`dhrt.CollectionInfo.moving` follows (``None`` once done; each phase
        takes at least a couple of seconds)::

            db.alter_collection("hot", replicas=3)
            while db.describe_collection("hot").moving is not None:
                time.sleep(0.5)
        """
        change = change_of(consistency, ttl, max_keys, max_bytes, replicas, select, zone_label)
        return collection_info(self._client.collection_alter(name, change, self._settings.wait(timeout)))

    def describe_collection(self, name: str, *, timeout: Optional[Seconds] = None) -> CollectionInfo:
        """The settings and size of the collection ``name``, as a
        :class:`dhrt.CollectionInfo`. Raises :class:`dhrt.NotFoundError` when it has
        neither settings nor keys."""
        return collection_info(self._client.collection_show(name, self._settings.wait(timeout)))

    def collections(self, *, timeout: Optional[Seconds] = None) -> List[CollectionInfo]:
        """Every collection with settings or keys, by name (only those its token
        covers, on a node that requires tokens)."""
        return [collection_info(v) for v in self._client.collection_list(self._settings.wait(timeout))]

    def drop_collection(
        self,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Deletes every key of the collection ``name`` (at ``consistency``) and its
        settings, and returns how many keys were deleted. Made again, the collection
        starts from the cluster's defaults. Not atomic: writes made meanwhile may
        survive it; after an error, call it again to delete the rest. Needs an
        ``admin`` token on a node that requires tokens."""
        c, level, wait = self._settings.call(name, consistency, timeout)
        deleted: int = self._client.collection_drop(c, level, wait)
        return deleted

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connections. Later calls raise :class:`dhrt.ConnectionError`."""
        self._native = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "connected"
        return f"<dhrt.Client {', '.join(self._settings.urls)} {state}>"


class Collection(MutableMapping):  # type: ignore[type-arg]
    """One collection of a cluster as a mutable mapping from keys to ``bytes``::

        users = db.collection("users")
        users["alice"] = b"admin"          # str values are stored as UTF-8
        users["alice"]                     # b'admin'; a missing key raises KeyError
        "alice" in users                   # True
        del users["alice"]
        users.update({"bob": "x", "carol": "y"})   # one request (mset)
        for key, value in users.items(): ...       # a paged scan

    Differences from a ``dict``, all for the sake of the network:

    - ``del c[key]`` of a missing key does not raise: a delete is idempotent and
      checking first would cost a read.
    - ``len(c)`` is **exact** but costs a full scan (O(n) entries over the network);
      iteration order is ring order, not insertion order.
    - Reads use the collection's ``consistency``; every method also exists on
      :class:`Client` with per-call keywords.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
    ) -> None:
        self.client = client
        """The client it uses."""
        self.name = name
        """The collection's name."""
        self.consistency = consistency
        """Its consistency level for reads and writes (``None``: the client's)."""
        self.ttl = ttl
        """Seconds written values live (``None``: until deleted)."""

    def __getitem__(self, key: Key) -> bytes:
        value = self.client.get(key, collection=self.name, consistency=self.consistency)
        if value is None:
            raise NotFoundError(f"no key {key!r} in collection {self.name!r}")
        return value

    def __setitem__(self, key: Key, value: Value) -> None:
        self.client.set(key, value, collection=self.name, consistency=self.consistency, ttl=self.ttl)

    def __delitem__(self, key: Key) -> None:
        self.client.delete(key, collection=self.name, consistency=self.consistency)

    def __contains__(self, key: object) -> bool:
        return self.client.exists(key, collection=self.name, consistency=self.consistency)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[bytes]:
        return (k for k, _ in self.scan())

    def __len__(self) -> int:
        return sum(1 for _ in self.scan())

    def get(self, key: Key, default: Optional[bytes] = None) -> Optional[bytes]:  # type: ignore[override]
        """The value of ``key``, or ``default``."""
        return self.client.get(key, default, collection=self.name, consistency=self.consistency)

    def keys(self) -> KeysView:  # type: ignore[type-arg]
        """The keys, read by a scan when iterated."""
        return _Keys(self)

    def items(self) -> ItemsView:  # type: ignore[type-arg]
        """The ``(key, value)`` pairs, read by a paged scan when iterated."""
        return _Items(self)

    def values(self) -> ValuesView:  # type: ignore[type-arg]
        """The values, read by a paged scan when iterated."""
        return _Values(self)

    def update(self, other: Any = (), /, **kwargs: Value) -> None:
        """Writes every item of ``other`` (a mapping or pairs) and ``kwargs`` in one
        request (:meth:`Client.mset`)."""
        items = items_of(other) + list(kwargs.items())
        if items:
            self.client.mset(items, collection=self.name, consistency=self.consistency, ttl=self.ttl)

    def clear(self) -> None:
        """Deletes every key (a scan, then a delete per key)."""
        for key in list(self):
            del self[key]

    def scan(self, prefix: Optional[Key] = None, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[Tuple[bytes, bytes]]:
        """``(key, value)`` pairs, optionally only of keys starting with ``prefix``."""
        return self.client.scan(prefix, collection=self.name, consistency=self.consistency, page_size=page_size)

    def watch(self, prefix: Optional[Key] = None) -> "Watch":
        """Subscribes to this collection's changes (see :meth:`Client.watch`)."""
        return self.client.watch(prefix, collection=self.name)

    def __repr__(self) -> str:
        return f"<dhrt.Collection {self.name!r}>"


class _Keys(KeysView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[bytes]:
        return (k for k, _ in self._mapping.scan())  # type: ignore[attr-defined]


class _Items(ItemsView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Tuple[bytes, bytes]]:
        return self._mapping.scan()  # type: ignore[attr-defined, no-any-return]


class _Values(ValuesView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[bytes]:
        return (v for _, v in self._mapping.scan())  # type: ignore[attr-defined]


class Watch:
    """A subscription to changes: iterate it for :class:`dhrt.Event`\\ s; use it as a
    context manager (or call :meth:`close`) to unsubscribe.

    Iteration blocks until the next change (Ctrl-C interrupts it) and stops when the
    watch ends: closed, or ended by the node (a collection the token may not read) or
    by the client (a reader 65,536 changes behind). A watch whose node dies moves to
    another serving node by itself. :meth:`next` waits at most a given time.
    """

    def __init__(self, native: _dhrt.Watch) -> None:
        self._native = native

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Event:
        event = self._native.next(None)
        if event is None:
            raise StopIteration
        return Event(*event)

    def next(self, timeout: Optional[Seconds] = None) -> Optional[Event]:
        """The next change, or ``None`` if none arrived within ``timeout`` seconds
        (``None``: wait as long as it takes) or the watch ended (see :attr:`ended`)."""
        try:
            event = self._native.next(seconds(timeout))
        except TimeoutError:
            return None
        return None if event is None else Event(*event)

    @property
    def ended(self) -> bool:
        """Whether the watch has ended: no more events will come."""
        return self._native.ended

    @property
    def interruptions(self) -> int:
        """How many times the watch lost its node — the node died, or ended the watch
        for falling behind — and was placed on another by itself. Changes made during
        such a gap may not have been delivered: re-read what you need when it grows."""
        return self._native.interruptions

    def close(self) -> None:
        """Unsubscribes; a :meth:`next` waiting in another thread returns ``None``."""
        self._native.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
