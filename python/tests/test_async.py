"""The asyncio client: the same calls as the blocking one, many in flight at once on
one event loop, scans and watches as async iterators."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import dhrt


def run(cluster: dhrt.LocalCluster, body: Callable[[dhrt.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with cluster.async_client() as db:
            return await body(db)

    return asyncio.run(main())


def test_the_same_calls_as_the_blocking_client(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        ts = await db.set("alice", "admin", collection="ausers", consistency="all", ttl=60)
        assert isinstance(ts, int)
        assert await db.get("alice", collection="ausers") == b"admin"
        assert await db.exists("alice", collection="ausers")
        assert await db.get("nobody", b"-", collection="ausers") == b"-"
        await db.delete("alice", collection="ausers")
        assert not await db.exists("alice", collection="ausers")
        await db.mset({"a": "1", "b": "2"}, collection="ausers")
        assert await db.mget(["a", "b", "c"], collection="ausers") == [b"1", b"2", None]
        assert sorted([kv async for kv in db.scan(collection="ausers", page_size=1)]) == [
            (b"a", b"1"),
            (b"b", b"2"),
        ]
        stats = await db.stats()
        assert stats["members"]["alive"] == 3
        assert len(await db.ring()) == 3

    run(cluster, body)


def test_a_thousand_requests_in_flight(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        await asyncio.gather(*(db.set(f"k{i}", str(i), collection="many") for i in range(1000)))
        values = await asyncio.gather(*(db.get(f"k{i}", collection="many") for i in range(1000)))
        assert values == [str(i).encode() for i in range(1000)]

    run(cluster, body)


def test_a_watch_sees_what_another_client_writes(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        async with db.watch(b"room:", collection="achat") as changes:
            async with cluster.async_client() as other:
                await other.set("room:1", "hello", collection="achat")
                await other.set("lobby", "ignored", collection="achat")
                await other.delete("room:1", collection="achat")
            first = await changes.next(timeout=5)
            second = await changes.next(timeout=5)
            assert first is not None and (first.key, first.value) == (b"room:1", b"hello")
            assert second is not None and second.deleted and second.ts > first.ts
            assert await changes.next(timeout=0.3) is None
            assert not changes.ended
        assert changes.ended

    run(cluster, body)


def test_an_async_for_watch_ends_when_closed(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> list:
        watch = await db.watch(collection="aclose")
        seen = []

        async def consume() -> None:
            async for event in watch:
                seen.append(event.key)
                if len(seen) == 2:
                    watch.close()

        task = asyncio.ensure_future(consume())
        for k in ("x", "y", "z"):
            await db.set(k, "v", collection="aclose")
        await asyncio.wait_for(task, timeout=10)
        return seen

    assert run(cluster, body) == [b"x", b"y"]


def test_a_closed_async_client_refuses_calls(cluster: dhrt.LocalCluster) -> None:
    async def main() -> None:
        db = await dhrt.connect_async(cluster.urls[0])
        db.close()
        assert db.closed
        try:
            await db.get("k")
        except dhrt.ConnectionError as e:
            assert "closed" in str(e)
        else:  # pragma: no cover
            raise AssertionError("a closed client answered")

    asyncio.run(main())


def test_per_call_timeouts_apply(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        watch = await db.watch(collection="quiet")
        started = asyncio.get_running_loop().time()
        assert await watch.next(timeout=0.2) is None
        assert asyncio.get_running_loop().time() - started < 3
        watch.close()

    run(cluster, body)


def test_a_collection_of_the_async_client(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        users = db.collection("acoll", ttl=60)
        await users.set("alice", "admin")
        await users.update({"bob": "guest"})
        assert await users.get("alice") == b"admin"
        assert await users.exists("bob") and not await users.exists("carol")
        assert await users.count() == 2
        await users.delete("bob")
        assert [k async for k, _ in users.scan()] == [b"alice"]
        async with users.watch() as changes:
            await users.set("dave", "x")
            event = await changes.next(timeout=5)
            assert event is not None and event.key == b"dave"

    run(cluster, body)
