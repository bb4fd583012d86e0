"""The asyncio client: :class:`AsyncClient` and :class:`AsyncWatch`.

The same methods as :class:`dhrt.Client`, as coroutines. Requests run on the Rust
runtime and complete asyncio futures on your event loop (no thread pool): thousands
can be in flight at once, pipelined on one connection per node::

    async with dhrt.AsyncClient("ws://127.0.0.1:7453") as db:
        await db.set("alice", "admin", collection="users")
        values = await asyncio.gather(*(db.get(k) for k in keys))
"""

from __future__ import annotations

from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Dict,
    Iterable,
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
from dhrt.errors import TimeoutError
from dhrt.replica import Replica

__all__ = ["AsyncClient", "AsyncCollection", "AsyncWatch", "connect_async"]


async def connect_async(
    url: Union[str, Sequence[str]] = DEFAULT_URL,
    *,
    token: Optional[str] = None,
    ca: Optional[PathLike] = None,
    timeout: Optional[Seconds] = 5.0,
    collection: str = DEFAULT_COLLECTION,
    consistency: Optional[Consistency] = None,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> "AsyncClient":
    """Connects (see :func:`dhrt.connect` for the arguments) and returns a connected
    :class:`AsyncClient`."""
    client = AsyncClient(
        url,
        token=token,
        ca=ca,
        timeout=timeout,
        collection=collection,
        consistency=consistency,
        max_value_bytes=max_value_bytes,
    )
    await client.connect()
    return client


class AsyncClient:
    """An asyncio connection to a dhrt cluster. Takes the arguments of
    :func:`dhrt.connect`; connects on :meth:`connect`, on ``async with``, or on the
    first call. Every method of :class:`dhrt.Client` is here as a coroutine, with the
    same keywords."""

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
        self._native: Optional[_dhrt.Client] = _dhrt.Client(
            s.urls, s.timeout, max_value_bytes, True, s.token, tls_ca=s.ca
        )

    async def connect(self) -> "AsyncClient":
        """Connects, if not connected yet; raises :class:`dhrt.ConnectionError` when no
        node answers."""
        await self._client.connect()
        return self

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
        before the first answer); passed with every request, as :attr:`Client.seen`."""
        return self._client.seen

    async def get(
        self,
        key: Key,
        default: Optional[bytes] = None,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[bytes]:
        """The value of ``key``, or ``default`` (see :meth:`dhrt.Client.get`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        value = await self._client.get(c, key, level, wait)
        return default if value is None else value

    async def set(
        self,
        key: Key,
        value: Value,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Writes ``key`` = ``value``; returns the timestamp (see :meth:`dhrt.Client.set`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        ts: int = await self._client.set(c, key, value, level, seconds(ttl), wait)
        return ts

    async def delete(
        self,
        key: Key,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Deletes ``key``; returns the timestamp (see :meth:`dhrt.Client.delete`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        ts: int = await self._client.delete(c, key, level, wait)
        return ts

    async def exists(
        self,
        key: Key,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> bool:
        """Whether ``key`` has a live value."""
        return await self.get(key, collection=collection, consistency=consistency, timeout=timeout) is not None

    async def mget(
        self,
        keys: Iterable[Key],
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> List[Optional[bytes]]:
        """The values of ``keys`` in one request (see :meth:`dhrt.Client.mget`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        values: List[Optional[bytes]] = await self._client.get_many(c, keys_of(keys), level, wait)
        return values

    async def mset(
        self,
        items: Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]],
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[int]:
        """Writes every item in one request (see :meth:`dhrt.Client.mset`)."""
        c, level, wait = self._settings.call(collection, consistency, timeout)
        native = self._client
        ts: Optional[int] = await native.set_many(c, items_of(items), level, seconds(ttl), wait)
        return ts

    def scan(
        self,
        prefix: Optional[Key] = None,
        *,
        collection: Optional[str] = None,
        consistency: Optional[Consistency] = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: Optional[Seconds] = None,
    ) -> AsyncIterator[Tuple[bytes, bytes]]:
        """Every live ``(key, value)``, paged lazily (see :meth:`dhrt.Client.scan`)::

            async for key, value in db.scan(collection="users"):
                ...
        """
        c, level, wait = self._settings.call(collection, consistency, timeout)

        async def pages() -> AsyncIterator[Tuple[bytes, bytes]]:
            native = self._client
            cursor: Optional[bytes] = None
            while True:
                page, cursor = await native.scan(c, cursor, prefix, page_size, level, wait)
                for item in page:
                    yield item
                if cursor is None:
                    return

        return pages()

    def watch(
        self,
        prefix: Optional[Key] = None,
        *,
        collection: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> "AsyncWatch":
        """Subscribes to changes (see :meth:`dhrt.Client.watch`). The subscription is in
        place once the returned :class:`AsyncWatch` is awaited or entered::

            async with db.watch(collection="users") as changes:
                async for event in changes:
                    ...
        """
        c = self._settings.collection if collection is None else collection
        wait = self._settings.wait(timeout)

        async def subscribe() -> _dhrt.Watch:
            native = self._client
            watch: _dhrt.Watch = await native.watch(c, prefix, wait)
            return watch

        return AsyncWatch(subscribe)

    async def replica(self, collection: Optional[str] = None, *, timeout: Optional[Seconds] = None) -> "AsyncReplica":
        """A local copy of the collection, once it has caught up (see
        :meth:`dhrt.Client.replica`); it follows the cluster in the background, and its
        reads are plain method calls::

            users = await db.replica("users")
            users[b"alice"]
        """
        c = self._settings.collection if collection is None else collection
        native = self._client
        return AsyncReplica(await native.replica(c, self._settings.wait(timeout)))

    async def stats(self, node: Optional[str] = None, *, timeout: Optional[Seconds] = None) -> Dict[str, Any]:
        """Counts and state of one node (see :meth:`dhrt.Client.stats`)."""
        native = self._client
        return stats_of(await native.stats(node, self._settings.wait(timeout)))

    async def ring(self, *, timeout: Optional[Seconds] = None) -> List[RingMember]:
        """Every member of the ring as a connected node sees it."""
        native = self._client
        return ring_of(await native.ring(self._settings.wait(timeout)))

    def collection(
        self,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        ttl: Optional[Seconds] = None,
    ) -> "AsyncCollection":
        """The collection ``name`` with its own default ``consistency`` and ``ttl`` (see
        :class:`AsyncCollection`)."""
        return AsyncCollection(self, name, consistency=consistency, ttl=ttl)

    async def create_collection(
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
        """Gives the collection ``name`` settings every node applies: ``consistency``,
        ``ttl``, ``max_keys``, ``max_bytes``, and its layout ``replicas``, ``select``
        (``{"disk": "ssd"}``) and ``zone_label`` (see
        :meth:`dhrt.Client.create_collection`)."""
        settings = settings_of(consistency, ttl, max_keys, max_bytes, replicas, select, zone_label)
        native = self._client
        return collection_info(await native.collection_create(name, settings, self._settings.wait(timeout)))

    async def alter_collection(
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
        """Changes the settings given; ``None`` returns one to the cluster's default. A
        change of ``replicas``, ``select`` or ``zone_label`` moves the collection's data
        while it serves: poll :meth:`describe_collection` until its ``moving`` is
        ``None`` (see :meth:`dhrt.Client.alter_collection`)."""
        change = change_of(consistency, ttl, max_keys, max_bytes, replicas, select, zone_label)
        native = self._client
        return collection_info(await native.collection_alter(name, change, self._settings.wait(timeout)))

    async def describe_collection(self, name: str, *, timeout: Optional[Seconds] = None) -> CollectionInfo:
        """The settings and size of the collection ``name`` (see
        :meth:`dhrt.Client.describe_collection`)."""
        native = self._client
        return collection_info(await native.collection_show(name, self._settings.wait(timeout)))

    async def collections(self, *, timeout: Optional[Seconds] = None) -> List[CollectionInfo]:
        """Every collection with settings or keys, by name."""
        native = self._client
        return [collection_info(v) for v in await native.collection_list(self._settings.wait(timeout))]

    async def drop_collection(
        self,
        name: str,
        *,
        consistency: Optional[Consistency] = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Deletes every key of the collection and its settings; how many keys (see
        :meth:`dhrt.Client.drop_collection`)."""
        c, level, wait = self._settings.call(name, consistency, timeout)
        deleted: int = await self._client.collection_drop(c, level, wait)
        return deleted

    def close(self) -> None:
        """Closes the connections. Later calls raise :class:`dhrt.ConnectionError`."""
        self._native = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native is None

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._native is None else "open"
        return f"<dhrt.AsyncClient {', '.join(self._settings.urls)} {state}>"


class AsyncCollection:
    """One collection for asyncio: the coroutine counterparts of
    :class:`dhrt.Collection`'s mapping operations (``await users.get(key)``, ``await
    users.set(key, value)``...), since ``users[key]`` cannot be awaited::

        users = db.collection("users", consistency="all")
        await users.set("alice", "admin")
        await users.get("alice")          # b'admin'
        async for key, value in users.scan(): ...
    """

    def __init__(
        self,
        client: AsyncClient,
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

    async def get(self, key: Key, default: Optional[bytes] = None) -> Optional[bytes]:
        """The value of ``key``, or ``default``."""
        return await self.client.get(key, default, collection=self.name, consistency=self.consistency)

    async def set(self, key: Key, value: Value) -> int:
        """Writes ``key`` = ``value`` (with the collection's ``ttl``)."""
        return await self.client.set(key, value, collection=self.name, consistency=self.consistency, ttl=self.ttl)

    async def delete(self, key: Key) -> int:
        """Deletes ``key`` (idempotent)."""
        return await self.client.delete(key, collection=self.name, consistency=self.consistency)

    async def exists(self, key: Key) -> bool:
        """Whether ``key`` has a live value."""
        return await self.client.exists(key, collection=self.name, consistency=self.consistency)

    async def update(self, items: Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]]) -> Optional[int]:
        """Writes every item in one request (:meth:`AsyncClient.mset`)."""
        return await self.client.mset(items, collection=self.name, consistency=self.consistency, ttl=self.ttl)

    async def count(self) -> int:
        """The exact number of live keys (a full scan)."""
        return len([None async for _ in self.scan()])

    def scan(self, prefix: Optional[Key] = None, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[Tuple[bytes, bytes]]:
        """``(key, value)`` pairs, optionally only of keys starting with ``prefix``."""
        return self.client.scan(prefix, collection=self.name, consistency=self.consistency, page_size=page_size)

    def watch(self, prefix: Optional[Key] = None) -> "AsyncWatch":
        """Subscribes to this collection's changes (see :meth:`AsyncClient.watch`)."""
        return self.client.watch(prefix, collection=self.name)

    def __repr__(self) -> str:
        return f"<dhrt.AsyncCollection {self.name!r}>"


class AsyncWatch:
    """A subscription to changes for asyncio. ``await`` it, or enter it with ``async
    with`` (which also unsubscribes at the end), to subscribe; then ``async for event
    in watch``, or :meth:`next` with a timeout. Ends as :class:`dhrt.Watch` does."""

    def __init__(self, subscribe: Callable[[], Awaitable[_dhrt.Watch]]) -> None:
        self._subscribe: Optional[Callable[[], Awaitable[_dhrt.Watch]]] = subscribe
        self._native: Optional[_dhrt.Watch] = None

    async def start(self) -> "AsyncWatch":
        """Subscribes, if not yet subscribed; returns once every serving node has the
        subscription."""
        if self._native is None and self._subscribe is not None:
            subscribe, self._subscribe = self._subscribe, None
            self._native = await subscribe()
        return self

    def __await__(self) -> Generator[Any, None, "AsyncWatch"]:
        return self.start().__await__()

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> Event:
        event = await self._next(None)
        if event is None:
            raise StopAsyncIteration
        return event

    async def _next(self, timeout: Optional[float]) -> Optional[Event]:
        await self.start()
        if self._native is None:
            return None
        event = await self._native.next(timeout)
        return None if event is None else Event(*event)

    async def next(self, timeout: Optional[Seconds] = None) -> Optional[Event]:
        """The next change, or ``None`` if none arrived within ``timeout`` seconds or the
        watch ended (see :attr:`ended`)."""
        try:
            return await self._next(seconds(timeout))
        except TimeoutError:
            return None

    @property
    def ended(self) -> bool:
        """Whether the watch has ended: no more events will come."""
        return self._native.ended if self._native is not None else self._subscribe is None

    @property
    def interruptions(self) -> int:
        """How many times the watch was placed again on another node (see
        :attr:`dhrt.Watch.interruptions`)."""
        return self._native.interruptions if self._native is not None else 0

    def close(self) -> None:
        """Unsubscribes; a pending :meth:`next` returns ``None``."""
        self._subscribe = None
        if self._native is not None:
            self._native.close()

    async def __aenter__(self) -> "AsyncWatch":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class AsyncReplica(Replica):
    """A local copy of a collection opened by an :class:`AsyncClient` (see
    :class:`dhrt.Replica`): the same mapping, with :meth:`wait_synced` awaitable."""

    async def wait_synced(self, timeout: Optional[Seconds] = None) -> None:  # type: ignore[override]
        """Waits until the copy has caught up (again, after an interruption); raises
        :class:`dhrt.TimeoutError` after ``timeout`` seconds."""
        await self._native.wait_synced(seconds(timeout))
