"""The blocking client against a three-node LocalCluster: every call, its keywords,
str and bytes, the mapping view, stats and ring, and that waiting releases the GIL."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

import dhrt


def test_set_get_delete_exists(db: dhrt.Client) -> None:
    ts = db.set("alice", b"admin", collection="users")
    assert isinstance(ts, int) and ts > 0
    assert db.get("alice", collection="users") == b"admin"
    assert db.exists("alice", collection="users")
    later = db.delete("alice", collection="users")
    assert later > ts
    assert db.get("alice", collection="users") is None
    assert not db.exists("alice", collection="users")
    assert db.get("alice", b"fallback", collection="users") == b"fallback"
    # Deleting what is not there is fine.
    db.delete("never-written", collection="users")


def test_str_and_bytes_keys_and_values_are_the_same_bytes(db: dhrt.Client) -> None:
    db.set("ключ", "значение")
    assert db.get("ключ".encode()) == "значение".encode()
    db.set(b"\x00\xff", bytearray(b"\x01\x02"))
    assert db.get(b"\x00\xff") == b"\x01\x02"
    assert db.get(bytearray(b"\x00\xff")) == b"\x01\x02"


def test_the_default_collection_is_default(db: dhrt.Client) -> None:
    db.set("k-default", "v")
    assert db.get("k-default", collection=dhrt.DEFAULT_COLLECTION) == b"v"
    assert db.get("k-default", collection="other") is None


def test_every_consistency_level(db: dhrt.Client) -> None:
    for level in ["one", "quorum", "all", "default", "ALL", 1, 2, 3, "2"]:
        db.set(f"lvl-{level}", "v", consistency=level)
        assert db.get(f"lvl-{level}", consistency=level) == b"v"


def test_a_client_default_consistency_and_collection(cluster: dhrt.LocalCluster) -> None:
    with cluster.client(collection="prefs", consistency="all") as c:
        c.set("theme", "dark")
        assert c.get("theme") == b"dark"
    with cluster.client() as c:
        assert c.get("theme", collection="prefs", consistency="one") == b"dark"


def test_ttl_expires_values(db: dhrt.Client) -> None:
    db.set("short", "v", ttl=0.3)
    db.set("timedelta", "v", ttl=datetime.timedelta(milliseconds=300))
    db.set("long", "v", ttl=60)
    assert db.get("short") == b"v"
    time.sleep(0.6)
    assert db.get("short") is None
    assert db.get("timedelta") is None
    assert db.get("long") == b"v"


def test_mset_and_mget(db: dhrt.Client) -> None:
    ts = db.mset({"m1": "a", "m2": b"b"}, collection="batch")
    assert isinstance(ts, int)
    db.mset([("m3", "c")], collection="batch", ttl=60)
    assert db.mget(["m1", "m2", "m3", "missing"], collection="batch") == [b"a", b"b", b"c", None]
    assert db.mset({}, collection="batch") is None
    assert db.mget([], collection="batch") == []
    assert db.mget(iter(["m1"]), collection="batch") == [b"a"]


def test_scan_pages_through_everything_with_a_cursor(db: dhrt.Client) -> None:
    want = {f"item:{i:04}".encode(): f"v{i}".encode() for i in range(250)}
    db.mset(want, collection="scanned")
    db.set("other:1", "x", collection="scanned")
    got = dict(db.scan(collection="scanned", page_size=7))
    assert got == {**want, b"other:1": b"x"}
    assert dict(db.scan(b"item:", collection="scanned", page_size=50)) == want
    assert list(db.scan(collection="never-written")) == []


def test_an_ordered_collection_scans_in_key_order(db: dhrt.Client) -> None:
    keys = [f"2026-11-{d:02}".encode() for d in (9, 1, 30, 15, 2)]
    db.mset({k: b"e" for k in keys}, collection="ordered.events")
    assert [k for k, _ in db.scan(collection="ordered.events", page_size=2)] == sorted(keys)


def test_the_collection_mapping(db: dhrt.Client) -> None:
    users = db.collection("mapped")
    users["alice"] = b"admin"
    users["bob"] = "guest"
    assert users["alice"] == b"admin"
    assert "bob" in users and "carol" not in users
    assert users.get("carol") is None and users.get("carol", b"-") == b"-"
    with pytest.raises(KeyError):
        users["carol"]
    with pytest.raises(dhrt.NotFoundError):
        users["carol"]
    users.update({"carol": "x"}, dave="y")
    assert len(users) == 4
    assert sorted(users) == [b"alice", b"bob", b"carol", b"dave"]
    assert dict(users.items()) == {b"alice": b"admin", b"bob": b"guest", b"carol": b"x", b"dave": b"y"}
    assert sorted(users.values()) == [b"admin", b"guest", b"x", b"y"]
    assert sorted(users.keys()) == sorted(users)
    del users["alice"]
    del users["alice"]  # idempotent, as documented
    assert users.pop("bob") == b"guest"
    assert len(users) == 2
    users.clear()
    assert len(users) == 0


def test_a_collection_with_its_own_ttl_and_level(db: dhrt.Client) -> None:
    sessions = db.collection("sessions", consistency="all", ttl=0.3)
    sessions["s1"] = "token"
    assert sessions["s1"] == b"token"
    time.sleep(0.6)
    assert "s1" not in sessions


def test_stats_and_ring(db: dhrt.Client, cluster: dhrt.LocalCluster) -> None:
    db.set("counted", "v", consistency="all")
    stats = db.stats()
    assert stats["status"] == "alive"
    assert stats["members"]["alive"] == 3
    assert stats["keys"] >= 1
    assert db.stats(cluster.addrs[1])["node"] == cluster.node_ids[1]
    ring = db.ring()
    assert sorted(m.addr for m in ring) == sorted(cluster.addrs)
    assert all(isinstance(m, dhrt.RingMember) and m.status == "alive" and m.tokens for m in ring)
    assert {m.id for m in ring} == set(cluster.node_ids)


def test_a_closed_client_refuses_calls(cluster: dhrt.LocalCluster) -> None:
    c = cluster.client()
    c.close()
    assert c.closed
    with pytest.raises(dhrt.ConnectionError, match="closed"):
        c.get("k")


def test_threads_share_one_client(db: dhrt.Client) -> None:
    errors = []

    def writer(t: int) -> None:
        try:
            for i in range(100):
                db.set(f"t{t}:{i}", str(i), collection="threads")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(db.collection("threads")) == 400


def test_waiting_releases_the_gil(db: dhrt.Client) -> None:
    # One thread blocks in a native wait for a change; this thread must still run
    # Python to make that change. Were the GIL held while waiting, this would hang
    # until the watch's timeout and the event would never come.
    got = []
    with db.watch(collection="gil") as changes:
        t = threading.Thread(target=lambda: got.append(changes.next(timeout=10)))
        t.start()
        time.sleep(0.2)
        db.set("poke", "v", collection="gil")
        t.join(timeout=15)
    assert got and got[0] is not None and got[0].key == b"poke"


def test_connect_takes_several_addresses_and_plain_host_port(cluster: dhrt.LocalCluster) -> None:
    with dhrt.connect(["127.0.0.1:1", cluster.addrs[0]], timeout=5) as c:
        assert c.urls == ["127.0.0.1:1", cluster.addrs[0]]
        c.set("k", "v")
        assert c.get("k") == b"v"
