"""Against separate node processes: ``python -m dhrt serve`` (the node the package
ships), and the cargo-built ``dhrt serve`` binary when one is there. The client, the
HTTP API and the Python client agree; signals leave gracefully; data dirs survive
restarts; a second process joins the first."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import urllib.request
from typing import List

import pytest
from conftest import PYTHON_SERVE, ServeProcess, cargo_serve, start_serve, wait_until

import dhrt

PROGRAMS = [pytest.param(PYTHON_SERVE, id="python -m dhrt serve")]
if cargo_serve() is not None:
    PROGRAMS.append(pytest.param(cargo_serve(), id="dhrt serve (cargo)"))


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_client_of_a_node_process(serve: List[ServeProcess], program: List[str]) -> None:
    node = start_serve(serve, program=program)
    with dhrt.connect(node.url) as db:
        db.set("alice", "admin", collection="users")
        db.mset({"bob": "guest", "carol": "owner"}, collection="users")
        assert db.get("alice", collection="users") == b"admin"
        assert dict(db.scan(collection="users")) == {b"alice": b"admin", b"bob": b"guest", b"carol": b"owner"}
        with db.watch(collection="users") as changes:
            with dhrt.connect(node.addr) as other:
                other.delete("bob", collection="users")
            event = changes.next(timeout=5)
            assert event is not None and event.key == b"bob" and event.deleted
        assert db.stats()["keys"] == 3
    # The HTTP API of the same node sees what Python wrote.
    body = json.loads(urllib.request.urlopen(f"http://{node.addr}/users/alice", timeout=10).read())
    assert body == {"key": "alice", "value": "admin"}
    assert node.terminate() == 0


def test_sigterm_leaves_gracefully(serve: List[ServeProcess]) -> None:
    node = start_serve(serve)
    assert node.terminate() == 0
    assert node.proc.stderr is not None
    err = node.proc.stderr.read()
    assert "SIGTERM: leaving the cluster" in err and "left" in err


def test_a_second_process_joins_the_first(serve: List[ServeProcess]) -> None:
    first = start_serve(serve)
    second = start_serve(serve, "--join", first.addr)
    with dhrt.connect(first.url) as db:
        assert wait_until(
            lambda: all(db.stats(n.addr)["members"]["alive"] == 2 for n in (first, second)), timeout=30
        )
        db.set("shared", "yes", consistency="all")
    with dhrt.connect(second.url) as db:
        assert db.get("shared", consistency="all") == b"yes"
        assert sorted(m.addr for m in db.ring()) == sorted([first.addr, second.addr])


def test_a_data_dir_survives_a_restart(serve: List[ServeProcess], tmp_path: pathlib.Path) -> None:
    node = start_serve(serve, data_dir=tmp_path)
    with dhrt.connect(node.url) as db:
        db.mset({f"k{i}": str(i) for i in range(50)})
    assert node.terminate() == 0
    again = start_serve(serve, data_dir=tmp_path)
    with dhrt.connect(again.url) as db:
        assert db.mget([f"k{i}" for i in range(50)]) == [str(i).encode() for i in range(50)]


def test_a_port_in_use_is_an_error_that_says_so(cluster: dhrt.LocalCluster) -> None:
    port = cluster.addrs[0].rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "dhrt", "serve", "--memory", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1:" + port in done.stderr


def test_version_and_help() -> None:
    done = subprocess.run([sys.executable, "-m", "dhrt", "version"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == dhrt.__version__
    done = subprocess.run(
        [sys.executable, "-m", "dhrt", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--data-dir" in done.stdout and "--join" in done.stdout


