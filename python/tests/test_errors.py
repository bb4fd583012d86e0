"""Every error path: the hierarchy, bad arguments refused before anything is sent,
errors the node answers with, and connections that fail or hang."""

from __future__ import annotations

import builtins
import pickle
import socket
import threading
import time
import urllib.request
from typing import Iterator

import pytest

import dhrt
from dhrt import errors


def test_one_hierarchy_with_the_builtin_bases() -> None:
    for name in errors.__all__:
        cls = getattr(dhrt, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, dhrt.Error)
    assert issubclass(dhrt.InvalidInputError, ValueError)
    assert issubclass(dhrt.InvalidTypeError, TypeError)
    assert issubclass(dhrt.InvalidTypeError, dhrt.InvalidInputError)
    assert issubclass(dhrt.TooLargeError, dhrt.InvalidInputError)
    assert issubclass(dhrt.NotFoundError, KeyError)
    assert issubclass(dhrt.QuorumError, dhrt.UnavailableError)
    assert issubclass(dhrt.TimeoutError, builtins.TimeoutError)
    assert issubclass(dhrt.ConnectionError, builtins.ConnectionError)


def test_errors_keep_their_message_and_fields_through_pickle() -> None:
    e = dhrt.QuorumError("only 1 of 2 replicas answered", 1, 2)
    assert (str(e), e.acks, e.required, e.code) == ("only 1 of 2 replicas answered", 1, 2, "quorum_not_reached")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is dhrt.QuorumError
    assert (str(back), back.acks, back.required) == (str(e), 1, 2)
    nf = pickle.loads(pickle.dumps(dhrt.NotFoundError("no key 'k'")))
    assert str(nf) == "no key 'k'" and nf.code == "not_found"
    t = dhrt.TimeoutError("slow")
    assert str(t) == "slow" and t.acks is None


# -- bad arguments never reach the wire ------------------------------------------------


@pytest.fixture(scope="module")
def solo() -> Iterator[dhrt.LocalCluster]:
    """One node: every request of a client reaches it, so its counters show what was
    sent."""
    with dhrt.LocalCluster(nodes=1) as c:
        yield c


def data_requests(addr: str) -> int:
    """Data requests and bad frames the node at ``addr`` has seen, from ``/metrics``."""
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    total = 0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        counted = name.startswith("dhrt_requests_total") and not any(
            f'op="{op}"' in name for op in ("ring", "stats")
        )
        if counted or name == "dhrt_bad_frames_total":
            total += int(value)
    return total


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda db: db.get(""), dhrt.InvalidInputError, "must not be empty"),
        (lambda db: db.get(b"k" * (64 * 1024 + 1)), dhrt.TooLargeError, "at most 65536 bytes"),
        (lambda db: db.get(42), dhrt.InvalidTypeError, "str or bytes, not int"),
        (lambda db: db.get(None), dhrt.InvalidTypeError, "not NoneType"),
        (lambda db: db.set("k", 3.5), dhrt.InvalidTypeError, "a value must be str or bytes"),
        (lambda db: db.set("k", b"x" * (16 * 1024 * 1024 + 1)), dhrt.TooLargeError, "over the limit"),
        (lambda db: db.set("k", "v", consistency="most"), dhrt.InvalidInputError, 'invalid consistency "most"'),
        (lambda db: db.set("k", "v", consistency=""), dhrt.InvalidInputError, "invalid consistency"),
        (lambda db: db.set("k", "v", consistency=0), dhrt.InvalidInputError, "consistency 0"),
        (lambda db: db.set("k", "v", consistency=-1), dhrt.InvalidInputError, "invalid consistency -1"),
        (lambda db: db.set("k", "v", consistency=256), dhrt.InvalidInputError, "invalid consistency 256"),
        (lambda db: db.set("k", "v", consistency=True), dhrt.InvalidTypeError, "consistency must be"),
        (lambda db: db.set("k", "v", consistency=2.0), dhrt.InvalidTypeError, "not float"),
        (lambda db: db.get("k", collection="a/b"), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.get("k", collection=""), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.get("k", collection=".."), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.get("k", collection="x" * 65), dhrt.InvalidInputError, "1 to 64 characters"),
        (lambda db: db.get("k", collection=b"users"), dhrt.InvalidTypeError, "collection name must be str"),
        (lambda db: db.set("k", "v", ttl=0), dhrt.InvalidInputError, "ttl must be a positive"),
        (lambda db: db.set("k", "v", ttl=-5), dhrt.InvalidInputError, "ttl must be a positive"),
        (lambda db: db.set("k", "v", ttl=float("nan")), dhrt.InvalidInputError, "ttl must be a positive"),
        (lambda db: db.set("k", "v", ttl="1h"), dhrt.InvalidTypeError, "ttl must be a number of seconds"),
        (lambda db: db.get("k", timeout=0), dhrt.InvalidInputError, "timeout must be a positive"),
        (lambda db: db.get("k", timeout=float("inf")), dhrt.InvalidInputError, "timeout must be a positive"),
        (lambda db: db.mget(["ok", ""]), dhrt.InvalidInputError, "must not be empty"),
        (lambda db: db.mget("abc"), dhrt.InvalidTypeError, "an iterable of keys"),
        (lambda db: db.mget([1]), dhrt.InvalidTypeError, "not int"),
        (lambda db: db.mset({"k": 1}), dhrt.InvalidTypeError, "a value must be str or bytes"),
        (lambda db: db.mset([("k", b"x" * (16 * 1024 * 1024 + 1))]), dhrt.TooLargeError, "over the limit"),
        (lambda db: db.mset([(f"k{i}", b"x" * (1 << 20)) for i in range(21)]), dhrt.TooLargeError, "split it"),
        (lambda db: db.scan(collection="a b"), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.watch(collection="a b"), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.watch(prefix=7), dhrt.InvalidTypeError, "str or bytes"),
    ],
)
def test_bad_arguments_are_refused_before_sending(solo: dhrt.LocalCluster, call, error, words) -> None:  # type: ignore[no-untyped-def]
    with solo.client() as db:
        before = data_requests(solo.addrs[0])
        with pytest.raises(error, match=words) as info:
            call(db)
        assert isinstance(info.value, dhrt.Error)
        assert data_requests(solo.addrs[0]) == before, "nothing reaches the node"


def test_consistency_above_the_replicas_is_refused_by_the_node(db: dhrt.Client) -> None:
    # Only the node knows a key's replica count: it answers invalid_input.
    with pytest.raises(dhrt.InvalidInputError, match="cannot be met with 3 replicas") as info:
        db.set("k4", "v", consistency=4)
    assert info.value.code == "invalid_input"


def test_bad_arguments_to_connect_are_refused(cluster: dhrt.LocalCluster) -> None:
    with pytest.raises(dhrt.InvalidTypeError):
        dhrt.connect(cluster.urls[0], token=7)  # type: ignore[arg-type]
    with pytest.raises(dhrt.InvalidInputError, match="token is empty"):
        dhrt.connect(cluster.urls[0], token="  ")
    with pytest.raises(dhrt.InvalidInputError):
        cluster.client(max_value_bytes=0)
    with pytest.raises(dhrt.InvalidInputError):
        dhrt.connect([cluster.urls[0], 7])  # type: ignore[list-item]


def test_mapping_reads_of_missing_keys_raise_not_found(db: dhrt.Client) -> None:
    with pytest.raises(dhrt.NotFoundError, match="no key 'ghost' in collection 'c'"):
        db.collection("c")["ghost"]


# -- connections -----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(server.getsockname()[1])
    stop.set()
    t.join(timeout=5)
    for s in accepted:
        s.close()
    server.close()


def test_no_node_at_the_address_is_a_connection_error() -> None:
    port = closed_port()
    with pytest.raises(dhrt.ConnectionError, match="is the node running") as info:
        dhrt.connect(f"ws://127.0.0.1:{port}", timeout=5)
    assert isinstance(info.value, builtins.ConnectionError)
    assert info.value.code == "connection"


def test_a_node_that_never_answers_is_a_timeout(silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(dhrt.TimeoutError, match="no answer within 0.300 s"):
        dhrt.connect(f"127.0.0.1:{silent_port}", timeout=0.3)
    assert time.monotonic() - start < 5


def test_the_async_client_fails_the_same_way(silent_port: int) -> None:
    import asyncio

    async def main() -> None:
        with pytest.raises(dhrt.TimeoutError):
            await dhrt.connect_async(f"127.0.0.1:{silent_port}", timeout=0.3)
        with pytest.raises(dhrt.ConnectionError):
            await dhrt.AsyncClient(f"127.0.0.1:{closed_port()}").get("k")
        with pytest.raises(dhrt.InvalidInputError):
            await dhrt.AsyncClient(f"127.0.0.1:{closed_port()}").set("k", "v", consistency="most")

    asyncio.run(main())


def test_a_call_to_a_stopped_cluster_fails_with_connection_error() -> None:
    cluster = dhrt.LocalCluster(nodes=1).start()
    db = cluster.client(timeout=5)
    db.set("k", "v")
    cluster.stop()
    with pytest.raises((dhrt.ConnectionError, dhrt.TimeoutError)):
        db.get("k")


# -- what the node answers -------------------------------------------------------------


def test_quorum_not_reached_says_how_many_answered() -> None:
    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client(timeout=10)
        cluster.kill(2)
        with pytest.raises(dhrt.QuorumError) as info:
            db.set("needs-all", "v", consistency="all")
        e = info.value
        assert (e.acks, e.required) == (2, 3), str(e)
        assert "2 of the 3 replicas" in str(e)
        assert isinstance(e, dhrt.UnavailableError) and e.code == "quorum_not_reached"
        # Quorum still works with one node down.
        db.set("needs-quorum", "v", consistency="quorum")
        assert db.get("needs-quorum", consistency="quorum") == b"v"


# -- in-process nodes ------------------------------------------------------------------


def test_cluster_arguments_and_node_numbers_are_checked(cluster: dhrt.LocalCluster) -> None:
    with pytest.raises(dhrt.InvalidInputError, match="nodes must be an int"):
        dhrt.LocalCluster(nodes=0)
    with pytest.raises(dhrt.InvalidInputError, match="replicas"):
        dhrt.LocalCluster(replicas=0)
    with pytest.raises(dhrt.InvalidInputError, match="no node 7"):
        cluster.kill(7)
    with pytest.raises(dhrt.NodeError, match="is running"):
        cluster.restart(0)


def test_a_port_in_use_is_a_node_error(cluster: dhrt.LocalCluster) -> None:
    port = int(cluster.addrs[0].rsplit(":", 1)[1])
    with pytest.raises(dhrt.NodeError, match="cannot listen"):
        dhrt._dhrt.Node.start(port=port)
