"""LocalCluster: real nodes in this process. Killing a node during quorum writes loses
nothing acknowledged; restarts keep the node's identity (and its data when
persisted); new nodes join; everything stops cleanly, also at interpreter exit."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from typing import Dict, List

import pytest

import dhrt


def port_open(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_killing_a_node_during_quorum_writes_loses_nothing_acknowledged() -> None:
    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client(timeout=10)
        acked: Dict[bytes, bytes] = {}
        failures: List[Exception] = []
        lock = threading.Lock()
        killed = threading.Event()

        def writer(w: int) -> None:
            for i in range(300):
                key, value = f"w{w}:{i}".encode(), f"v{i}".encode()
                try:
                    db.set(key, value, collection="stream", consistency="quorum")
                except dhrt.Error as e:
                    failures.append(e)
                    continue
                with lock:
                    acked[key] = value
                    if len(acked) == 300 and not killed.is_set():
                        killed.set()
                        cluster.kill(2)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert killed.is_set()
        assert len(acked) >= 1000, f"only {len(acked)} of 1200 acknowledged; failures: {failures[:3]}"
        # Every acknowledged write reads back at quorum, through each node left.
        for addr in cluster.addrs[:2]:
            with dhrt.connect(addr, timeout=10) as reader:
                keys = list(acked)
                for start in range(0, len(keys), 200):
                    batch = keys[start : start + 200]
                    got = reader.mget(batch, collection="stream", consistency="quorum")
                    assert got == [acked[k] for k in batch], f"via {addr}"


def test_a_killed_node_is_noticed_and_a_restart_brings_it_back() -> None:
    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client()
        db.set("k", "v", consistency="all")
        ids, urls = cluster.node_ids, cluster.urls
        cluster.kill(1)
        assert cluster.running == [0, 2]
        assert not port_open(cluster.addrs[1])
        cluster.wait_ready()  # the others now see exactly two alive
        assert db.stats(cluster.addrs[0])["members"]["alive"] == 2
        cluster.restart(1)
        assert cluster.node_ids == ids and cluster.urls == urls
        assert db.stats(cluster.addrs[1])["node"] == ids[1]
        assert {m.id for m in db.ring() if m.status == "alive"} == set(ids)
        assert db.get("k", consistency="all") == b"v"


def test_a_persisted_node_restarts_with_its_data() -> None:
    with dhrt.LocalCluster(nodes=3, persist=True) as cluster:
        root = cluster.data_dir
        assert root is not None and (root / "node-1").is_dir()
        db = cluster.client()
        db.mset({f"p{i}": str(i) for i in range(100)}, collection="kept", consistency="all")
        cluster.kill(1)
        cluster.restart(1, wait=False)
        # Its own files: the keys are there before any sync could ship them.
        assert db.stats(cluster.addrs[1])["keys"] >= 100
        cluster.wait_ready()
        assert db.get("p7", collection="kept", consistency="all") == b"7"
    assert not root.exists(), "the temporary data dir is removed"


def test_a_data_dir_of_your_own_is_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with dhrt.LocalCluster(nodes=1, data_dir=tmp_path) as cluster:
        cluster.client().set("k", "v")
    assert (tmp_path / "node-0" / "node.redb").exists()
    with dhrt.LocalCluster(nodes=1, data_dir=tmp_path) as cluster:
        assert cluster.client().get("k") == b"v"


def test_a_new_node_joins_and_takes_its_ranges() -> None:
    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client()
        db.mset({f"u{i}": "x" for i in range(300)}, collection="users", consistency="all")
        i = cluster.add_node()
        assert i == 3 and len(cluster.urls) == 4
        assert len([m for m in db.ring() if m.status == "alive"]) == 4
        # With 3 replicas on 4 nodes the newcomer holds about three quarters.
        assert db.stats(cluster.addrs[3])["keys"] > 100
        with dhrt.connect(cluster.urls[3]) as c:
            assert c.mget([f"u{i}" for i in range(300)], collection="users", consistency="all") == [b"x"] * 300


def test_a_node_that_leaves_hands_off_first() -> None:
    with dhrt.LocalCluster(nodes=4) as cluster:
        db = cluster.client()
        db.mset({f"l{i}": "x" for i in range(100)}, collection="left", consistency="all")
        assert cluster.leave(3) is True
        cluster.wait_ready()
        assert db.mget([f"l{i}" for i in range(100)], collection="left", consistency="all") == [b"x"] * 100


def test_stopping_closes_every_port() -> None:
    cluster = dhrt.LocalCluster(nodes=2).start()
    addrs = cluster.addrs
    assert all(port_open(a) for a in addrs)
    cluster.stop()
    cluster.stop()  # idempotent
    assert not any(port_open(a) for a in addrs)
    assert cluster.running == []


def test_the_interpreter_exits_cleanly_with_a_cluster_running() -> None:
    script = (
        "import dhrt\n"
        "c = dhrt.LocalCluster(nodes=2, persist=True).start()\n"
        "c.client().set('k', 'v')\n"
        "print(c.data_dir, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from pathlib import Path

    assert not Path(done.stdout.strip()).exists(), "atexit stopped it and removed its data"


def test_clients_of_a_single_node_cluster(cluster: dhrt.LocalCluster) -> None:
    with dhrt.LocalCluster(nodes=1) as solo:
        db = solo.client(consistency="all")
        db.set("k", "v")
        assert db.get("k") == b"v"
    with pytest.raises(dhrt.NodeError, match="no node is running"):
        solo.client()
