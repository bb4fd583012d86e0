"""Local copies of collections (``db.replica``) and watches that outlive their node:
what the client gained by running the same light peer as the browser's package."""

import asyncio
import time

import pytest

import dhrt

from conftest import wait_until


def test_a_replica_is_a_read_only_mapping_kept_in_sync(db: dhrt.Client) -> None:
    want = {f"user-{i:03}".encode(): f"v{i}".encode() for i in range(120)}
    db.mset(want, collection="replicated")
    users = db.replica("replicated", timeout=20)
    assert isinstance(users, dhrt.Replica)
    assert users.status == "synced"
    assert len(users) == 120
    assert dict(users.items()) == want
    assert set(users) == set(want)
    assert b"user-007" in users and "user-007" in users and b"ghost" not in users
    assert users[b"user-001"] == b"v1" and users["user-002"] == b"v2"
    assert users.get(b"ghost") is None and users.get(b"ghost", b"d") == b"d"
    with pytest.raises(dhrt.NotFoundError):
        users[b"ghost"]
    with pytest.raises(KeyError):
        users[b"ghost"]
    with pytest.raises(TypeError):
        users[b"x"] = b"y"  # type: ignore[index]

    # Writes after the catch-up reach the copy through its watch, with no call on it
    # but the reads themselves.
    db.set("late", "fresh", collection="replicated")
    db.delete("user-000", collection="replicated")
    assert wait_until(lambda: users.get(b"late") == b"fresh" and b"user-000" not in users, timeout=10)
    assert len(users) == 120

    users.close()
    assert users.closed
    with pytest.raises(dhrt.ConnectionError, match="closed"):
        users.get(b"late")


def test_a_replica_of_an_async_client_follows_in_the_background(cluster: dhrt.LocalCluster) -> None:
    async def main() -> None:
        async with cluster.async_client() as db:
            await db.set("a", "1", collection="async-replica")
            copy = await db.replica("async-replica", timeout=20)
            assert isinstance(copy, dhrt.AsyncReplica)
            assert dict(copy.items()) == {b"a": b"1"}
            await db.set("b", "2", collection="async-replica")
            for _ in range(200):
                if copy.get(b"b") == b"2":
                    break
                await asyncio.sleep(0.05)
            assert copy.get(b"b") == b"2"
            await copy.wait_synced(timeout=5)
            copy.close()

    asyncio.run(main())


def test_a_watch_and_a_replica_outlive_their_node() -> None:
    with dhrt.LocalCluster(nodes=3) as cluster:
        # Through the first node only: it answered first, so the watch goes there.
        db = dhrt.connect(cluster.urls[0], timeout=10)
        writer = dhrt.connect(cluster.urls[2], timeout=10)
        writer.set("k0", "v0", collection="durable", consistency="all")
        copy = db.replica("durable", timeout=20)
        watch = db.watch(collection="durable")
        writer.set("before", "1", collection="durable")
        event = watch.next(timeout=10)
        assert event is not None and event.key == b"before"

        cluster.kill(0)
        # Writes go on until one arrives through the watch's new node.
        got = None
        for i in range(100):
            writer.set(f"after-{i}", "2", collection="durable")
            got = watch.next(timeout=0.3)
            if got is not None:
                break
        assert got is not None, "no change arrived after the watch's node died"
        assert got.key.startswith(b"after-")
        assert not watch.ended and watch.interruptions >= 1

        # Reads through the dead node's client go to the other replicas.
        assert db.get("before", collection="durable") == b"1"
        # The copy caught up again on the nodes left, with every write.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and copy.get(got.key) != b"2":
            time.sleep(0.05)
        assert copy.get(got.key) == b"2" and copy[b"k0"] == b"v0"
        watch.close()
        copy.close()
        db.close()
        writer.close()
