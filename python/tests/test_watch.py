"""Watches: changes made by another client arrive, in order per key, filtered by
prefix; a watch is an iterator and a context manager; closing it from another thread
ends it."""

from __future__ import annotations

import threading
import time

import dhrt


def test_a_watch_receives_changes_made_from_another_client(cluster: dhrt.LocalCluster) -> None:
    watcher = cluster.client()
    writer = dhrt.connect(cluster.urls[2])
    with watcher.watch(collection="chat") as changes:
        writer.set("alice", "hi", collection="chat")
        writer.set("alice", "bye", collection="chat", consistency="all")
        writer.delete("alice", collection="chat")
        writer.mset({"bob": "1", "carol": "2"}, collection="chat")
        writer.set("elsewhere", "x", collection="not-chat")
        events = [changes.next(timeout=5) for _ in range(5)]
        assert changes.next(timeout=0.3) is None
    assert all(isinstance(e, dhrt.Event) and e.collection == "chat" for e in events)
    alice = [e for e in events if e is not None and e.key == b"alice"]
    assert [e.value for e in alice] == [b"hi", b"bye", None]
    assert [e.ts for e in alice] == sorted(e.ts for e in alice)
    assert alice[2].deleted
    assert sorted(e.key for e in events if e is not None and e.key != b"alice") == [b"bob", b"carol"]
    watcher.close()
    writer.close()


def test_a_prefix_filters_the_keys(db: dhrt.Client) -> None:
    with db.watch("room:", collection="rooms") as changes:
        db.set("lobby", "x", collection="rooms")
        db.set("room:7", "y", collection="rooms")
        event = changes.next(timeout=5)
        assert event is not None and event.key == b"room:7"
        assert changes.next(timeout=0.3) is None


def test_iterating_a_watch_and_closing_it_from_another_thread(db: dhrt.Client) -> None:
    changes = db.watch(collection="iterated")
    seen = []

    def consume() -> None:
        for event in changes:  # ends when closed
            seen.append(event.value)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(3):
        db.set(f"k{i}", str(i), collection="iterated")
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    changes.close()
    t.join(timeout=10)
    assert not t.is_alive(), "closing ended the iteration"
    assert sorted(seen) == [b"0", b"1", b"2"]
    assert changes.ended
    assert changes.next(timeout=0.1) is None


def test_a_watch_outlives_its_node_and_resumes_when_a_node_serves_again() -> None:
    # The client's watches are the light peer's: one whose node dies is placed again
    # as soon as a node serves (until then it waits, not ended).
    with dhrt.LocalCluster(nodes=1) as cluster:
        db = cluster.client()
        changes = db.watch(collection="doomed")
        cluster.kill(0)
        assert changes.next(timeout=1) is None
        assert not changes.ended
        cluster.restart(0)
        with cluster.client() as writer:
            got = None
            for i in range(50):
                writer.set(f"back-{i}", "1", collection="doomed")
                got = changes.next(timeout=0.3)
                if got is not None:
                    break
        assert got is not None and got.key.startswith(b"back-")
        changes.close()
        assert changes.ended
