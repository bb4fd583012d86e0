"""The Redis endpoint (``dhrt serve --resp-port``) against Redis's own clients: redis-py,
redis-cli and redis-benchmark, on a cluster of three ``dhrt serve`` processes (three
replicas, every node with a Redis port of its own).

What a Redis client does reaches the same data as dhrt's own client: database N is a
collection (0 ``default``, 1 ``db1``), a write through one node reads back through the
others, expiry works (TTL, the EXPIRE family, PERSIST, GETEX, SET KEEPTTL), SCAN, KEYS,
DBSIZE and FLUSHDB walk a whole collection across the cluster (hashed and ordered),
keyspace notifications of writes made through any node reach a subscriber on another,
INFO and CONFIG answer what clients ask, and what dhrt cannot honour (INCR) or does not
know is an error that says so, after which the connection goes on working.

Needs the cargo-built binary (``cargo build --release -p dhrt``), Debian's
redis-tools (redis-cli, redis-benchmark) and the redis package (redis-py); a test
whose tool is missing is skipped with a reason (``bash scripts/setup.sh`` installs
them all).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import time
import uuid
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest
from conftest import ServeProcess, cargo_serve, wait_until

import dhrt

redis: Optional[ModuleType]
try:
    import redis
except ImportError:  # the tests that need it skip
    redis = None

SETUP = "bash scripts/setup.sh installs it"


class RespNode(ServeProcess):
    """A cargo-built ``dhrt serve --resp-port 0``: its dhrt address from the
    ``listening on`` line, its Redis port from the ``Redis clients:`` line."""

    def __init__(self, *args: str, program: List[str]) -> None:
        super().__init__("--resp-port", "0", *args, program=program)
        self.resp_port = self._await_resp_port()

    def _await_resp_port(self) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("Redis clients:"):
                return int(line.split(" -p ")[1].split()[0])
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"dhrt serve printed no `Redis clients:` line: {self.stderr()}")


@pytest.fixture(scope="module")
def nodes() -> Iterator[List[RespNode]]:
    """Three ``dhrt serve`` processes in one cluster (3 replicas), each with its own
    Redis port; all three see all three alive before the tests start."""
    program = cargo_serve()
    if program is None:
        pytest.skip("no cargo-built dhrt binary ($DHRT_BIN, target/release/dhrt); cargo build --release -p dhrt")
    started: List[RespNode] = []
    try:
        first = RespNode("--replicas", "3", program=program)
        started.append(first)
        for _ in range(2):
            started.append(RespNode("--replicas", "3", "--join", first.addr, program=program))
        with dhrt.connect(first.url) as db:
            assert wait_until(
                lambda: all(db.stats(n.addr)["members"]["alive"] == 3 for n in started), timeout=30
            ), "the three nodes did not all see each other alive"
        yield started
    finally:
        for n in started:
            n.kill()


@pytest.fixture
def dhrt_db(nodes: List[RespNode]) -> Iterator[dhrt.Client]:
    """dhrt's own client of the cluster, to check what Redis clients wrote."""
    with dhrt.connect(nodes[0].url) as db:
        yield db


def redis_module() -> Any:
    if redis is None:
        pytest.skip(f"the redis package (redis-py) is missing; {SETUP}")
    return redis


def resp3_supported() -> Optional[str]:
    """Why this redis-py cannot speak RESP3 (``protocol=3``, redis-py 5.0 and later),
    or None when it can."""
    r = redis_module()
    major = int(r.__version__.split(".")[0])
    if major < 5:
        return f"redis-py {r.__version__} has no protocol=3 (RESP3 came with 5.0)"
    return None


PROTOCOLS = [pytest.param(2, id="RESP2"), pytest.param(3, id="RESP3")]


def connect(node: RespNode, protocol: int, **kwargs: Any) -> Any:
    """A redis-py client of ``node`` on one connection (so SELECT and DHRT.* stay
    with it), speaking RESP ``protocol``."""
    r = redis_module()
    if protocol == 3:
        why = resp3_supported()
        if why is not None:
            print(f"skipping RESP3: {why}")
            pytest.skip(why)
    return r.Redis(
        host="127.0.0.1",
        port=node.resp_port,
        protocol=protocol,
        socket_timeout=10,
        single_connection_client=True,
        **kwargs,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- redis-py ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redis_py_reads_and_writes(nodes: List[RespNode], dhrt_db: dhrt.Client, protocol: int) -> None:
    k = unique("k")
    with connect(nodes[0], protocol) as r:
        assert r.ping() is True
        assert r.get(k) is None
        assert r.set(k, "v1") is True
        assert r.get(k) == b"v1"
        assert r.set(k, "v2", get=True) == b"v1"
        assert r.getset(k, "v3") == b"v2"
        assert r.strlen(k) == 2 and r.type(k) == b"string"
        pairs = {f"{k}:{i}": f"value {i}" for i in range(10)}
        assert r.mset(pairs) is True
        assert r.mget([*pairs, f"{k}:missing"]) == [v.encode() for v in pairs.values()] + [None]
        assert r.exists(k, f"{k}:0", f"{k}:missing") == 2
        assert r.delete(f"{k}:0", f"{k}:1", f"{k}:missing") == 2
        assert r.unlink(f"{k}:2") == 1
        assert r.exists(f"{k}:0", f"{k}:1", f"{k}:2") == 0 and r.type(f"{k}:0") == b"none"
        assert r.getdel(f"{k}:3") == b"value 3"
        assert r.getdel(f"{k}:3") is None and r.get(f"{k}:3") is None
    # Database 0 is the collection `default`: dhrt's own client reads the same keys.
    assert dhrt_db.get(k, collection="default") == b"v3"
    assert dhrt_db.get(f"{k}:4", collection="default") == b"value 4"
    assert dhrt_db.get(f"{k}:3", collection="default") is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redis_py_expiry(nodes: List[RespNode], protocol: int) -> None:
    k = unique("ttl")
    with connect(nodes[0], protocol) as r:
        assert r.set(f"{k}:ex", "soon", ex=1) is True
        assert r.set(f"{k}:px", "sooner", px=300) is True
        assert r.set(f"{k}:long", "later", px=60_000) is True
        assert r.get(f"{k}:ex") == b"soon"
        assert wait_until(lambda: r.get(f"{k}:px") is None, timeout=5), "px=300 did not expire"
        assert wait_until(lambda: r.get(f"{k}:ex") is None, timeout=5), "ex=1 did not expire"
        assert r.exists(f"{k}:ex", f"{k}:px") == 0
        assert r.get(f"{k}:long") == b"later"
        # Refused as Redis refuses them.
        with pytest.raises(redis_module().ResponseError, match="invalid expire time"):
            r.set(f"{k}:bad", "x", ex=0)
    # Expired on every replica, as seen through the other nodes at quorum.
    for node in nodes[1:]:
        with connect(node, protocol) as other:
            assert other.execute_command("DHRT.CONSISTENCY", "quorum") in (b"OK", "OK", True)
            assert other.get(f"{k}:ex") is None and other.get(f"{k}:long") == b"later"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_write_through_one_node_reads_through_the_others(nodes: List[RespNode], protocol: int) -> None:
    k = unique("shared")
    with connect(nodes[0], protocol) as writer:
        assert writer.execute_command("DHRT.CONSISTENCY") == b"default"
        assert writer.set(k, "from node 1") is True
        assert writer.mset({f"{k}:a": "A", f"{k}:b": "B"}) is True
    for node in nodes[1:]:
        with connect(node, protocol) as reader:
            assert reader.execute_command("DHRT.CONSISTENCY", "quorum") in (b"OK", "OK", True)
            assert reader.execute_command("DHRT.CONSISTENCY") == b"quorum"
            assert reader.get(k) == b"from node 1", f"via node {node.addr}"
            assert reader.mget([f"{k}:a", f"{k}:b"]) == [b"A", b"B"]
    # A delete through node 3 is seen through node 1.
    with connect(nodes[2], protocol) as deleter:
        assert deleter.delete(k) == 1
    with connect(nodes[0], protocol) as reader:
        assert reader.execute_command("DHRT.CONSISTENCY", "all") in (b"OK", "OK", True)
        assert reader.get(k) is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_databases_are_collections(nodes: List[RespNode], dhrt_db: dhrt.Client, protocol: int) -> None:
    k = unique("db")
    with connect(nodes[0], protocol) as r0, connect(nodes[1], protocol, db=1) as r1:
        assert r0.set(k, "in db 0") is True
        assert r1.get(k) is None, "db 1 is separate from db 0"
        assert r1.set(k, "in db 1") is True
        assert r1.execute_command("DHRT.COLLECTION") == b"db1"
        assert r0.get(k) == b"in db 0"
        assert r0.select(1) is True
        assert r0.execute_command("DHRT.COLLECTION") == b"db1"
        assert r0.get(k) == b"in db 1"
        assert r0.select(0) is True
        assert r0.get(k) == b"in db 0"
        with pytest.raises(redis_module().ResponseError, match="DB index is out of range"):
            r0.select(16)
        # DHRT.COLLECTION picks any collection by name.
        assert r0.execute_command("DHRT.COLLECTION", "orders") in (b"OK", "OK", True)
        assert r0.set(k, "in orders") is True
    assert dhrt_db.get(k, collection="default") == b"in db 0"
    assert dhrt_db.get(k, collection="db1") == b"in db 1"
    assert dhrt_db.get(k, collection="orders") == b"in orders"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_say_why_and_the_connection_goes_on(nodes: List[RespNode], protocol: int) -> None:
    r_mod = redis_module()
    k = unique("err")
    with connect(nodes[0], protocol) as r:
        assert r.set(k, "5") is True
        before = r.client_id()
        with pytest.raises(r_mod.ResponseError) as incr:
            r.incr(k)
        message = str(incr.value)
        assert "read-modify-write" in message and "newest write wins" in message, message
        with pytest.raises(r_mod.ResponseError, match="unknown command 'FOOBAR'") as unknown:
            r.execute_command("FOOBAR", "x", "y")
        assert str(unknown.value) == "unknown command 'FOOBAR', with args beginning with: 'x' 'y' "
        with pytest.raises(r_mod.ResponseError, match="transactions"):
            r.execute_command("MULTI")
        with pytest.raises(r_mod.ResponseError, match="conditional"):
            r.setnx(k, "6")
        with pytest.raises(r_mod.ResponseError, match="wrong number of arguments for 'get' command"):
            r.execute_command("GET", k, "extra")
        # The same connection, still in step.
        assert r.client_id() == before
        assert r.get(k) == b"5"
        assert r.set(k, "6") is True and r.get(k) == b"6"
        assert r.echo("still here") == b"still here"


def test_resp3_hello(nodes: List[RespNode]) -> None:
    """redis-py's RESP3 handshake (HELLO 3) and a map-shaped answer to it."""
    with connect(nodes[0], 3) as r:
        hello = r.execute_command("HELLO", 3)
        assert isinstance(hello, dict), hello
        assert hello.get(b"proto", hello.get("proto")) == 3
        k = unique("resp3")
        assert r.set(k, "v") is True and r.get(k) == b"v"


OK = (b"OK", "OK", True)
"""What redis-py answers for ``+OK`` to a command it has no reply callback for."""


def quorum(r: Any) -> Any:
    """``r``, its reads at quorum from now on (so they see every acknowledged write)."""
    assert r.execute_command("DHRT.CONSISTENCY", "quorum") in OK
    return r


def assert_ttl(r: Any, key: str, seconds: int) -> None:
    """TTL and PTTL of ``key`` say it expires in ``seconds``, set moments ago."""
    ttl, pttl = r.ttl(key), r.pttl(key)
    assert seconds - 5 <= ttl <= seconds, (key, ttl, seconds)
    assert (seconds - 5) * 1000 <= pttl <= seconds * 1000, (key, pttl, seconds)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redis_py_ttl_and_the_expire_family(nodes: List[RespNode], protocol: int) -> None:
    k = unique("exp")
    missing = f"{k}:missing"
    kept, at, gone, pgone, negative = (f"{k}:{s}" for s in ("kept", "at", "gone", "pgone", "negative"))
    with connect(nodes[0], protocol) as r:
        assert r.set(k, "v") is True
        assert (r.ttl(k), r.pttl(k)) == (-1, -1), "a key without expiry"
        assert (r.ttl(missing), r.pttl(missing)) == (-2, -2), "no key"
        assert r.expire(k, 100) is True
        assert_ttl(r, k, 100)
        # NX, XX, GT, LT on a key with an expiry.
        assert r.expire(k, 200, nx=True) is False, "NX: it has one"
        assert_ttl(r, k, 100)
        assert r.expire(k, 200, xx=True) is True, "XX: it has one"
        assert_ttl(r, k, 200)
        assert r.expire(k, 150, gt=True) is False, "GT: 150 s is not later"
        assert r.expire(k, 300, gt=True) is True
        assert_ttl(r, k, 300)
        assert r.expire(k, 400, lt=True) is False, "LT: 400 s is not earlier"
        assert r.expire(k, 250, lt=True) is True
        assert_ttl(r, k, 250)
        assert r.pexpire(k, 120_000) is True
        assert_ttl(r, k, 120)
        # A missing key: 0, and EXPIRE does not create it.
        assert r.expire(missing, 100) is False and r.pexpire(missing, 100) is False
        assert r.expireat(missing, int(time.time()) + 100) is False
        assert r.exists(missing) == 0
        # PERSIST takes the expiry off, once.
        assert r.persist(k) is True
        assert r.ttl(k) == -1 and r.get(k) == b"v"
        assert r.persist(k) is False, "nothing to take off"
        assert r.persist(missing) is False
        # Without an expiry (forever): XX and GT refuse, LT and NX set one.
        assert r.expire(k, 100, xx=True) is False
        assert r.expire(k, 100, gt=True) is False
        assert r.ttl(k) == -1
        assert r.expire(k, 100, lt=True) is True
        assert_ttl(r, k, 100)
        assert r.persist(k) is True
        assert r.expire(k, 100, nx=True) is True
        assert_ttl(r, k, 100)
        # GETEX answers the value; with an option it changes the expiry too.
        assert r.getex(k) == b"v"
        assert_ttl(r, k, 100)
        assert r.getex(k, ex=500) == b"v"
        assert_ttl(r, k, 500)
        assert r.getex(k, px=60_000) == b"v"
        assert_ttl(r, k, 60)
        assert r.getex(k, exat=int(time.time()) + 700) == b"v"
        assert_ttl(r, k, 700)
        assert r.getex(k, persist=True) == b"v"
        assert r.ttl(k) == -1
        assert r.getex(missing, ex=10) is None and r.exists(missing) == 0
        # SET ... KEEPTTL keeps the expiry; a plain SET drops it.
        assert r.expire(k, 300) is True
        assert r.set(k, "kept", keepttl=True) is True
        assert r.get(k) == b"kept"
        assert_ttl(r, k, 300)
        assert r.set(kept, "first", ex=400) is True
        assert r.set(kept, "second", keepttl=True) is True
        assert_ttl(r, kept, 400)
        assert r.set(k, "plain") is True
        assert r.ttl(k) == -1
        # An absolute time to come is an expiry; one past (or a negative time) deletes.
        assert r.mset({at: "a", gone: "g", pgone: "p", negative: "n"}) is True
        assert r.expireat(at, int(time.time()) + 1000) is True
        assert_ttl(r, at, 1000)
        assert r.expireat(gone, int(time.time()) - 10) is True
        assert r.pexpireat(pgone, int(time.time() * 1000) - 10_000) is True
        assert r.expire(negative, -1) is True
        assert r.get(gone) is None and r.exists(gone, pgone, negative) == 0
        assert (r.ttl(gone), r.pttl(pgone), r.ttl(negative)) == (-2, -2, -2)
    # The same through the other nodes, at quorum: expiries are the values', not a node's.
    for node in nodes[1:]:
        with quorum(connect(node, protocol)) as other:
            assert other.get(k) == b"plain" and other.ttl(k) == -1, f"via node {node.addr}"
            assert other.get(kept) == b"second"
            assert_ttl(other, kept, 400)
            assert_ttl(other, at, 1000)
            assert other.exists(gone, pgone, negative) == 0
            assert (other.ttl(gone), other.pttl(pgone), other.ttl(missing)) == (-2, -2, -2)


def test_expire_xx_combines_with_gt_and_lt(nodes: List[RespNode]) -> None:
    k = unique("xxgt")
    with connect(nodes[0], 2) as r:
        assert r.set(k, "v", ex=100) is True
        assert r.expire(k, 200, xx=True, gt=True) is True
        assert r.expire(k, 150, xx=True, lt=True) is True
        assert_ttl(r, k, 150)
        assert r.persist(k) is True
        assert r.expire(k, 100, xx=True, lt=True) is False, "XX: no expiry to lower"
        assert r.ttl(k) == -1


def test_expire_gt_with_lt_is_refused_as_redis_refuses_it(nodes: List[RespNode]) -> None:
    r_mod = redis_module()
    k = unique("gtlt")
    with connect(nodes[0], 2) as r:
        assert r.set(k, "v", ex=100) is True
        with pytest.raises(r_mod.ResponseError, match="^GT and LT options at the same time are not compatible"):
            r.expire(k, 200, gt=True, lt=True)


def collection_name(ordered: bool) -> str:
    """A collection no other test writes to (DBSIZE and FLUSHDB take all of it)."""
    name = f"scan{uuid.uuid4().hex[:12]}"
    return f"ordered.{name}" if ordered else name


@pytest.mark.parametrize("ordered", [pytest.param(False, id="hashed"), pytest.param(True, id="ordered")])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scan_keys_dbsize_and_flushdb_walk_the_collection(
    nodes: List[RespNode], dhrt_db: dhrt.Client, protocol: int, ordered: bool
) -> None:
    collection = collection_name(ordered)
    tag = unique("p")
    matching = sorted(f"{tag}:{i:04d}" for i in range(300))
    others = sorted(f"other:{i:03d}" for i in range(20))
    everything = sorted(matching + others)
    expired = f"{tag}:expired"
    with connect(nodes[0], protocol) as writer:
        assert writer.execute_command("DHRT.COLLECTION", collection) in OK
        assert writer.set(expired, "briefly", px=1) is True
        for start in range(0, len(everything), 100):
            assert writer.mset({key: f"value of {key}" for key in everything[start : start + 100]}) is True
        assert wait_until(lambda: writer.get(expired) is None, timeout=5)
    # Walked through another node: every live key once (not the expired one), in key
    # order in an ordered collection.
    with quorum(connect(nodes[1], protocol)) as r:
        assert r.execute_command("DHRT.COLLECTION", collection) in OK
        found = [key.decode() for key in r.scan_iter(match=f"{tag}:*", count=50)]
        assert len(found) == len(set(found)), "a key twice"
        assert set(found) == set(matching)
        if ordered:
            assert found == matching, "an ordered collection scans in key order"
        # Page by page: more than one page, each cursor taken back as handed out.
        cursor, pages = 0, 0
        paged: List[str] = []
        while True:
            cursor, page = r.scan(cursor, match=f"{tag}:*", count=50)
            pages += 1
            if not ordered:
                assert 0 <= cursor < 2**64, "a hashed collection's cursors are 64-bit numbers"
            paged += [key.decode() for key in page]
            assert pages <= 1000, "SCAN does not end"
            if cursor == 0:
                break
        assert pages > 1 and sorted(paged) == matching, (pages, len(paged))
        assert sorted(key.decode() for key in r.scan_iter(count=5000)) == everything
        # A pattern with no literal start, and a class: the whole collection, filtered.
        expected = {key for key in everything if fnmatch.fnmatchcase(key, "*0[5-6]")}
        assert len(expected) == 8, expected
        assert {key.decode() for key in r.scan_iter(match="*0[5-6]", count=50, _type="string")} == expected
        assert list(r.scan_iter(_type="hash")) == [], "only strings here"
        keys = [key.decode() for key in r.keys(f"{tag}:*")]
        assert sorted(keys) == matching
        assert r.keys("nothing:*") == []
        assert r.dbsize() == len(everything)
    # dhrt's own client reads the same collection.
    assert dhrt_db.get(matching[0], collection=collection) == f"value of {matching[0]}".encode()
    # FLUSHDB through the third node empties it, for every node.
    with connect(nodes[2], protocol) as flusher:
        assert flusher.execute_command("DHRT.COLLECTION", collection) in OK
        assert flusher.flushdb() is True
    with quorum(connect(nodes[1], protocol)) as r:
        assert r.execute_command("DHRT.COLLECTION", collection) in OK
        assert r.dbsize() == 0
        assert list(r.scan_iter(count=50)) == [] and r.keys("*") == []
        assert r.get(matching[0]) is None
    assert dhrt_db.get(matching[0], collection=collection) is None


NOTIFY = "notify-keyspace-events"

Message = Tuple[str, Optional[str], str, str]
"""A pub/sub message as redis-py hands it: (type, pattern, channel, data)."""


def as_message(m: Dict[str, Any]) -> Message:
    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    pattern = m.get("pattern")
    return (text(m["type"]), None if pattern is None else text(pattern), text(m["channel"]), text(m["data"]))


def receive(pubsub: Any, enough: Callable[[List[Message]], bool], timeout: float = 10.0) -> List[Message]:
    """The messages ``pubsub`` receives until ``enough`` of them came, or ``timeout``
    seconds passed."""
    got: List[Message] = []
    deadline = time.monotonic() + timeout
    while not enough(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        m = pubsub.get_message(timeout=min(left, 0.5))
        if m is not None:
            got.append(as_message(m))
    return got


@pytest.fixture
def notify_restored(nodes: List[RespNode]) -> Iterator[None]:
    """Every node's notify-keyspace-events as it was before the test: the setting is the
    node's, for all its connections."""
    before: List[str] = []
    for node in nodes:
        with connect(node, 2) as r:
            before.append(r.config_get(NOTIFY)[NOTIFY])
    yield
    for node, value in zip(nodes, before):
        with connect(node, 2) as r:
            assert r.config_set(NOTIFY, value) is True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keyspace_notifications_of_writes_through_another_node(
    nodes: List[RespNode], notify_restored: None, protocol: int
) -> None:
    r_mod = redis_module()
    tag = unique("ks")
    a, b, c, d, e = (f"{tag}:{s}" for s in "abcde")
    pattern = f"__keyspace@0__:{tag}*"

    def space(key: str, event: str) -> Message:
        return ("pmessage", pattern, f"__keyspace@0__:{key}", event)

    def mine(got: List[Message]) -> List[Message]:
        """This test's messages (the keyevent channel hears every key's deletes)."""
        return [m for m in got if m[2].startswith(f"__keyspace@0__:{tag}") or m[3].startswith(tag)]

    with connect(nodes[0], protocol) as admin, connect(nodes[1], protocol) as writer:
        assert admin.config_set(NOTIFY, "KEA") is True
        assert set(admin.config_get(NOTIFY)[NOTIFY]) == set("KEA")
        p = admin.pubsub()
        news = admin.pubsub()
        try:
            p.psubscribe(pattern)
            p.subscribe("__keyevent@0__:del")
            confirmed = receive(p, lambda got: len(got) >= 2)
            assert confirmed == [
                ("psubscribe", None, pattern, "1"),
                ("subscribe", None, "__keyevent@0__:del", "2"),
            ], confirmed
            # Writes through node 2 reach the subscriber on node 1, once each.
            assert writer.set(a, "1") is True
            assert writer.delete(a) == 1
            assert writer.set(b, "2", ex=100) is True
            expected = [
                space(a, "set"),
                space(a, "del"),
                ("message", None, "__keyevent@0__:del", a),
                space(b, "set"),
                space(b, "expire"),
            ]
            got = mine(receive(p, lambda got: all(m in got for m in expected)))
            assert sorted(got, key=repr) == sorted(expected, key=repr), got
            # A key's events in the order of its writes.
            assert [m for m in got if m[2].endswith(a)] == [space(a, "set"), space(a, "del")]
            assert [m for m in got if m[2].endswith(b)] == [space(b, "set"), space(b, "expire")]

            # Only the subscriber's node's setting counts: off there, nothing arrives,
            # though the writer's node has them on.
            assert admin.config_set(NOTIFY, "") is True
            assert writer.config_set(NOTIFY, "KEA") is True
            assert writer.set(c, "3") is True and writer.delete(c) == 1
            assert receive(p, lambda got: False, timeout=1.5) == []
            # On again, but for keyspace `set` events only (K$): d's set, not its del.
            assert admin.config_set(NOTIFY, "K$") is True
            assert writer.set(d, "4") is True and writer.delete(d) == 1
            assert writer.set(c, "5") is True
            got = mine(receive(p, lambda got: space(c, "set") in got))
            got += mine(receive(p, lambda got: False, timeout=1))
            assert sorted(got, key=repr) == sorted([space(d, "set"), space(c, "set")], key=repr), got

            # Unsubscribed from the pattern, the keyevent channel alone still hears: a
            # key's del comes after its set, so once the del is here the set is not coming.
            assert admin.config_set(NOTIFY, "KEA") is True
            p.punsubscribe(pattern)
            assert receive(p, lambda got: len(got) >= 1) == [("punsubscribe", None, pattern, "1")]
            assert writer.set(e, "6") is True and writer.delete(e) == 1
            deleted = ("message", None, "__keyevent@0__:del", e)
            assert mine(receive(p, lambda got: deleted in got)) == [deleted]
            p.unsubscribe()
            assert receive(p, lambda got: len(got) >= 1) == [("unsubscribe", None, "__keyevent@0__:del", "0")]

            # Only keyspace channels: dhrt has no PUBLISH.
            with pytest.raises(r_mod.ResponseError, match="PUBLISH"):
                news.subscribe("news")
                news.get_message(timeout=5)
        finally:
            p.close()
            news.close()
        # The connection that asked goes on.
        assert admin.ping() is True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_info_and_config(nodes: List[RespNode], protocol: int) -> None:
    r_mod = redis_module()
    ids: Set[Any] = set()
    for node in nodes:
        with connect(node, protocol) as r:
            k = unique("info")
            assert r.set(k, "v") is True
            info = r.info()
            assert isinstance(info["redis_version"], str) and info["redis_version"].count(".") == 2, info
            assert info["connected_clients"] >= 1 and info["tcp_port"] == node.resp_port
            for field in ("redis_mode", "used_memory", "total_commands_processed", "members"):
                assert field in info, field
            ring = r.info("dhrt")
            assert (ring["members"], ring["members_alive"], ring["replicas"]) == (3, 3, 3), ring
            assert ring["node_addr"] == node.addr and ring["node_status"] == "alive"
            assert {ring[f"member{i}"]["addr"] for i in range(3)} == {n.addr for n in nodes}
            assert ring["node_id"] in [ring[f"member{i}"]["id"] for i in range(3)]
            assert "redis_version" not in ring, "only the section asked for"
            ids.add(ring["node_id"])
            assert r.info("keyspace")["db0"]["keys"] >= 1
            # CONFIG: what clients ask for; the nodes keep their data in memory.
            assert r.config_get("databases") == {"databases": "16"}
            assert r.config_get("appendonly") == {"appendonly": "no"}
            assert r.config_get("save") == {"save": ""}
            assert set(r.config_get("*")) == {"databases", "save", "appendonly", "appendfsync", NOTIFY}
            assert r.config_get("maxmemory") == {}
            with pytest.raises(r_mod.ResponseError, match="^Unsupported CONFIG parameter"):
                r.config_set("maxmemory", "100mb")
            with pytest.raises(r_mod.ResponseError, match="Invalid argument"):
                r.config_set(NOTIFY, "Kq")
            assert r.get(k) == b"v", "the connection goes on"
    assert len(ids) == 3, ids


# --- redis-cli ---------------------------------------------------------------------------


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is missing (Debian's redis-tools); {SETUP}")
    return path


def redis_cli(node: RespNode, *args: str) -> subprocess.CompletedProcess[str]:
    cli = need_tool("redis-cli")
    return subprocess.run(
        [cli, "-h", "127.0.0.1", "-p", str(node.resp_port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_redis_cli(nodes: List[RespNode], dhrt_db: dhrt.Client) -> None:
    k = unique("cli")
    done = redis_cli(nodes[0], "set", k, "v")
    assert (done.returncode, done.stdout.strip()) == (0, "OK"), done
    done = redis_cli(nodes[1], "get", k)
    assert (done.returncode, done.stdout.strip()) == (0, "v"), done
    # -n 1: database 1, the collection db1.
    done = redis_cli(nodes[0], "-n", "1", "set", k, "one")
    assert done.stdout.strip() == "OK", done
    assert redis_cli(nodes[2], "-n", "1", "get", k).stdout.strip() == "one"
    assert redis_cli(nodes[2], "get", k).stdout.strip() == "v"
    assert dhrt_db.get(k, collection="db1") == b"one"
    # An error reply is printed as such.
    done = redis_cli(nodes[0], "incr", k)
    printed = done.stdout + done.stderr
    assert "ERR dhrt cannot run read-modify-write commands" in printed, done
    done = redis_cli(nodes[0], "nosuchcommand", "a")
    assert "ERR unknown command 'nosuchcommand', with args beginning with: 'a'" in done.stdout + done.stderr
    done = redis_cli(nodes[0], "--no-raw", "ping")
    assert (done.returncode, done.stdout.strip()) == (0, "PONG"), done


# --- redis-benchmark ---------------------------------------------------------------------


def test_redis_benchmark(nodes: List[RespNode]) -> None:
    bench = need_tool("redis-benchmark")
    cmd = [bench, "-h", "127.0.0.1", "-p", str(nodes[0].resp_port), "-t", "ping,set,get,mset", "-n", "2000", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    # -q rewrites a progress line with \r; the last piece of each line is the result.
    lines = [part.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() for part in line.split("\r")]
    lines = [line for line in lines if line]
    print("redis-benchmark:", *lines, sep="\n  ")
    assert done.returncode == 0, done
    errors = [line for line in lines if "error from server" in line.lower()]
    assert not errors, errors
    # Every test it ran reported a rate.
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "MSET (10 keys)"):
        assert any(line.startswith(f"{test}: ") and "requests per second" in line for line in lines), (
            test,
            lines,
        )
    # Nothing else: no "WARNING: Could not fetch server CONFIG" either, now that CONFIG
    # GET answers what redis-benchmark asks (save, appendonly).
    others = [line for line in lines if "requests per second" not in line and "rps=" not in line]
    assert not others, others


# --- TLS ------------------------------------------------------------------------------


def test_redis_clients_speak_tls_to_a_tls_node(certs: Dict[str, Any]) -> None:
    """A node with a certificate serves its Redis port over TLS only: redis-py with
    ``ssl=True`` and ``redis-cli --tls`` trusting the CA work; a plain client gets no
    reply."""
    r = redis_module()
    program = cargo_serve()
    if program is None:
        pytest.skip("no cargo-built dhrt binary ($DHRT_BIN, target/release/dhrt); cargo build --release -p dhrt")
    node = RespNode(
        "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]), "--tls-ca", str(certs["ca"]),
        program=program,
    )
    try:
        tls = r.Redis(
            host="127.0.0.1", port=node.resp_port, ssl=True, ssl_ca_certs=str(certs["ca"]), socket_timeout=10
        )
        assert tls.set("tls:k", "over tls") is True
        assert tls.get("tls:k") == b"over tls"
        pipe = tls.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"tls:{i}", str(i))
            pipe.get(f"tls:{i}")
        assert pipe.execute() == [x for i in range(500) for x in (True, str(i).encode())]
        cli = need_tool("redis-cli")
        out = subprocess.run(
            [cli, "--tls", "--cacert", str(certs["ca"]), "-h", "127.0.0.1", "-p", str(node.resp_port), "get", "tls:k"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        assert out.stdout.strip() == "over tls", out
        plain = r.Redis(host="127.0.0.1", port=node.resp_port, socket_timeout=5)
        with pytest.raises((r.exceptions.ConnectionError, r.exceptions.TimeoutError)):
            plain.ping()
    finally:
        node.kill()
