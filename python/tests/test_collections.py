"""Collection settings (the catalogue): ``create_collection``, ``alter_collection``,
``describe_collection``, ``collections`` and ``drop_collection`` on the blocking and the
asyncio client, against real nodes.

Settings are written and read at quorum, so the round trips run on the module's
three-node cluster (keys written at ``all``, so every node's count is exact). A write
applies the settings of the coordinating node's own copy of the catalogue, which the
other nodes reach within a sync round: the tests of what settings *do* to writes
(quotas, the default TTL) run on one node, where the copy is the catalogue itself and
the size estimates are exact.

The package has no call that reads a value's expiry (nor do the CLI or the HTTP API),
so the default TTL is checked by the value disappearing when it should and, when a
cargo-built ``dhrt`` and redis-py are at hand, by the expiry Redis's ``PTTL`` reads.
"""

from __future__ import annotations

import asyncio
import datetime
import pickle
import re
import subprocess
import sys
import time
import types
import urllib.request
from typing import Iterator, List

import pytest
from conftest import REPO, ServeProcess, cargo_serve, wait_until

import dhrt


@pytest.fixture(scope="module")
def solo() -> Iterator[dhrt.LocalCluster]:
    """One node: its catalogue is the cluster's, its sizes exact."""
    with dhrt.LocalCluster(nodes=1) as c:
        yield c


@pytest.fixture
def one(solo: dhrt.LocalCluster) -> Iterator[dhrt.Client]:
    with solo.client() as client:
        yield client


def requests_seen(addr: str) -> int:
    """Client requests the node at ``addr`` has counted (``/metrics``), but for the ring
    and stats reads a client makes by itself."""
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    total = 0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("dhrt_requests_total") and not any(f'op="{op}"' in name for op in ("ring", "stats")):
            total += int(value)
    return total


# -- the error ----------------------------------------------------------------------


def test_quota_exceeded_error_is_a_storage_full_error_with_its_code() -> None:
    assert "QuotaExceededError" in dhrt.errors.__all__
    assert dhrt.QuotaExceededError is dhrt.errors.QuotaExceededError
    assert issubclass(dhrt.QuotaExceededError, dhrt.StorageFullError)
    assert issubclass(dhrt.QuotaExceededError, dhrt.UnavailableError)
    e = dhrt.QuotaExceededError("over the quota")
    assert (e.code, e.acks, e.required, str(e)) == ("quota_exceeded", None, None, "over the quota")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is dhrt.QuotaExceededError and str(back) == "over the quota"
    assert "CollectionInfo" in dhrt.__all__


# -- create, alter, describe, list, drop ---------------------------------------------


def test_create_alter_describe_list_and_drop_round_trip(db: dhrt.Client) -> None:
    name = "rt-sessions"
    made = db.create_collection(
        name, consistency="all", ttl=datetime.timedelta(hours=1), max_keys=100, max_bytes=10_000
    )
    assert made == dhrt.CollectionInfo(
        name=name,
        defined=True,
        placement="hashed",
        replicas=3,
        keys=0,
        bytes=0,
        consistency="all",
        ttl=3600.0,
        max_keys=100,
        max_bytes=10_000,
    )
    with pytest.raises(AttributeError):
        made.keys = 5  # type: ignore[misc]  # a frozen description

    db.mset({"a": "1", "b": "22", "c": "333"}, collection=name, consistency="all")
    shown = db.describe_collection(name)
    assert (shown.keys, shown.defined, shown.max_keys) == (3, True, 100)
    assert shown.bytes >= len("a1b22c333")

    # Only what is given changes; an int level comes back as an int.
    altered = db.alter_collection(name, ttl=7200, consistency=2)
    assert (altered.ttl, altered.consistency, altered.max_keys, altered.max_bytes) == (7200.0, 2, 100, 10_000)
    assert db.describe_collection(name) == altered
    listed = {c.name: c for c in db.collections()}
    assert listed[name] == altered
    assert all(isinstance(c, dhrt.CollectionInfo) for c in listed.values())

    ordered = db.create_collection("ordered.rt-events")
    assert (ordered.placement, ordered.defined, ordered.consistency, ordered.ttl) == ("ordered", True, None, None)

    assert db.drop_collection(name, consistency="all") == 3
    gone = db.describe_collection(name)
    assert (gone.defined, gone.keys, gone.consistency, gone.ttl, gone.max_keys, gone.max_bytes) == (
        False, 0, None, None, None, None,
    )
    assert db.get("a", collection=name) is None
    # The settings went with the drop: the name can be created afresh.
    assert db.create_collection(name, max_keys=5).max_keys == 5
    assert db.drop_collection(name, consistency="all") == 0


def test_alter_with_none_returns_settings_to_the_cluster_default(db: dhrt.Client) -> None:
    name = "rt-reset"
    db.create_collection(name, consistency="one", ttl=60, max_keys=10, max_bytes=1000)
    kept = db.alter_collection(name, ttl=None)
    assert (kept.consistency, kept.ttl, kept.max_keys, kept.max_bytes) == ("one", None, 10, 1000)
    reset = db.alter_collection(name, consistency=None, max_keys=None, max_bytes=None)
    assert reset.defined, "back to the defaults, yet still defined"
    assert (reset.consistency, reset.ttl, reset.max_keys, reset.max_bytes) == (None, None, None, None)
    assert db.describe_collection(name) == reset
    # A collection without settings is given some by an alter.
    fresh = db.alter_collection("rt-fresh", max_keys=7)
    assert (fresh.defined, fresh.max_keys, fresh.ttl) == (True, 7, None)


def test_creating_a_collection_twice_conflicts(one: dhrt.Client) -> None:
    one.create_collection("twice", max_keys=3)
    with pytest.raises(dhrt.ConflictError) as info:
        one.create_collection("twice", max_keys=9)
    e = info.value
    assert e.code == "conflict" and "has settings already" in str(e), str(e)
    assert one.describe_collection("twice").max_keys == 3, "the first settings stay"


def test_a_collection_with_neither_settings_nor_keys_is_not_found(one: dhrt.Client) -> None:
    with pytest.raises(dhrt.NotFoundError, match="there is no collection"):
        one.describe_collection("never-made")
    one.set("k", "v", collection="made-by-a-write")
    implicit = one.describe_collection("made-by-a-write")
    assert (implicit.defined, implicit.keys, implicit.max_keys) == (False, 1, None)
    assert "never-made" not in [c.name for c in one.collections()]


def test_reserved_collections_have_no_settings(one: dhrt.Client) -> None:
    with pytest.raises(dhrt.ForbiddenError, match="reserved"):
        one.create_collection("_dhrt.tokens", max_keys=1)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda db: db.alter_collection("c"), dhrt.InvalidInputError, "nothing to change"),
        (lambda db: db.create_collection("c", consistency="default"), dhrt.InvalidInputError, "must be a level"),
        (lambda db: db.create_collection("c", consistency="most"), dhrt.InvalidInputError, "invalid consistency"),
        (lambda db: db.create_collection("c", consistency=0), dhrt.InvalidInputError, "consistency 0"),
        (lambda db: db.create_collection("c", max_keys=0), dhrt.InvalidInputError, "quota of 0 keys"),
        (lambda db: db.create_collection("c", max_bytes=0), dhrt.InvalidInputError, "quota of 0 bytes"),
        (lambda db: db.create_collection("c", max_keys=-1), dhrt.InvalidInputError, "max_keys must be a positive"),
        (lambda db: db.create_collection("c", max_keys=2**64), dhrt.InvalidInputError, "max_keys must be a positive"),
        (lambda db: db.create_collection("c", max_keys=1.5), dhrt.InvalidTypeError, "max_keys must be an int"),
        (lambda db: db.create_collection("c", max_bytes=True), dhrt.InvalidTypeError, "max_bytes must be an int"),
        (lambda db: db.create_collection("c", ttl=0), dhrt.InvalidInputError, "ttl must be a positive"),
        (lambda db: db.create_collection("c", ttl="1h"), dhrt.InvalidTypeError, "ttl must be a number"),
        (lambda db: db.create_collection("c", ttl=200 * 365 * 86400), dhrt.InvalidInputError, "100 years"),
        (lambda db: db.alter_collection("c", max_keys=0), dhrt.InvalidInputError, "quota of 0 keys"),
        (lambda db: db.create_collection("c", replicas=0), dhrt.InvalidInputError, "1 to 64 replicas"),
        (lambda db: db.create_collection("c", replicas=65), dhrt.InvalidInputError, "1 to 64 replicas"),
        (lambda db: db.alter_collection("c", replicas=-1), dhrt.InvalidInputError, "1 to 64 replicas"),
        (lambda db: db.create_collection("c", replicas=True), dhrt.InvalidTypeError, "replicas must be an int"),
        (lambda db: db.alter_collection("c", replicas="3"), dhrt.InvalidTypeError, "replicas must be an int"),
        (lambda db: db.create_collection("c", select={"a b": "c"}), dhrt.InvalidInputError, "node label"),
        (lambda db: db.create_collection("c", select={"disk": ""}), dhrt.InvalidInputError, "node label"),
        (lambda db: db.create_collection("c", select="disk=ssd"), dhrt.InvalidTypeError, "select must be a dict"),
        (lambda db: db.alter_collection("c", select={"disk": 1}), dhrt.InvalidTypeError, "keys and values are str"),
        (
            lambda db: db.create_collection("c", select={f"k{i}": "v" for i in range(17)}),
            dhrt.InvalidInputError,
            "at most 16 labels",
        ),
        (lambda db: db.create_collection("c", zone_label=""), dhrt.InvalidInputError, "zone label"),
        (lambda db: db.alter_collection("c", zone_label="a zone"), dhrt.InvalidInputError, "zone label"),
        (lambda db: db.create_collection("c", zone_label=1), dhrt.InvalidTypeError, "zone_label must be a str"),
        (lambda db: db.create_collection("a b"), dhrt.InvalidInputError, "invalid collection name"),
        (lambda db: db.describe_collection(b"c"), dhrt.InvalidTypeError, "collection name must be str"),
        (lambda db: db.drop_collection("a/b"), dhrt.InvalidInputError, "invalid collection name"),
    ],
)
def test_bad_settings_are_refused_before_sending(solo: dhrt.LocalCluster, call, error, words) -> None:  # type: ignore[no-untyped-def]
    with solo.client() as db:
        before = requests_seen(solo.addrs[0])
        with pytest.raises(error, match=words) as info:
            call(db)
        assert isinstance(info.value, ValueError) and isinstance(info.value, dhrt.Error)
        assert requests_seen(solo.addrs[0]) == before, "nothing reaches the node"
        db.collections()
        assert requests_seen(solo.addrs[0]) == before + 1, "a call that is sent is counted"


def test_the_native_layer_refuses_unknown_settings_and_a_bad_selector_the_same_way() -> None:
    """The settings dict the package hands to the compiled client, checked there: an
    unknown name lists the settings there are."""
    native = dhrt._dhrt.Client(["ws://127.0.0.1:1"], 1.0, dhrt.DEFAULT_MAX_VALUE_BYTES)
    with pytest.raises(dhrt.InvalidInputError, match="replicas, select or zone_label"):
        native.collection_create("c", {"replica": 2}, 1.0)
    with pytest.raises(dhrt.InvalidInputError, match="nothing to change: .*zone_label"):
        native.collection_alter("c", {}, 1.0)
    with pytest.raises(dhrt.InvalidTypeError, match="select must be a dict"):
        native.collection_create("c", {"select": ["disk=ssd"]}, 1.0)


# -- layouts: replicas, select, zone_label -------------------------------------------

MOVE_PHASES = ("pending", "announced", "copying", "joint")


def settled(db: dhrt.Client, name: str, timeout: float = 30.0) -> dhrt.CollectionInfo:
    """The description of ``name`` once it uses the layout its settings ask for (each
    phase of a move waits the nodes' request timeout of 2 s)."""
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while True:
        info = db.describe_collection(name)
        if info.moving is None:
            return info
        assert info.moving in MOVE_PHASES, info
        if not seen or seen[-1] != info.moving:
            seen.append(info.moving)
        assert time.monotonic() < deadline, f"{name} still moving after {timeout} s: {seen}"
        time.sleep(0.1)


def test_a_collection_without_a_layout_uses_the_cluster_s(one: dhrt.Client) -> None:
    info = one.create_collection("layout-none", max_keys=5)
    assert (info.replicas, info.replicas_setting, info.select, info.zone_label, info.moving) == (
        3, None, {}, None, None,
    )
    assert one.describe_collection("layout-none") == info


def test_create_with_a_layout_gives_it_back_and_moves_to_it(one: dhrt.Client) -> None:
    made = one.create_collection("layout-made", replicas=1, select={}, zone_label="zone")
    assert (made.defined, made.replicas_setting, made.select, made.zone_label) == (True, 1, {}, "zone")
    assert made.moving in (None,) + MOVE_PHASES, made
    one.set("k", "v", collection="layout-made")  # it serves while it moves

    done = settled(one, "layout-made")
    assert (done.replicas, done.replicas_setting, done.select, done.zone_label) == (1, 1, {}, "zone")
    assert one.get("k", collection="layout-made") == b"v"
    listed = {c.name: c for c in one.collections()}
    assert listed["layout-made"] == done

    # A mapping other than a dict is taken; an empty one is "any node".
    other = one.create_collection("layout-mapping", select=types.MappingProxyType({}))
    assert (other.select, other.replicas_setting, other.moving) == ({}, None, None)


def test_altering_replicas_moves_the_data_while_it_serves(one: dhrt.Client) -> None:
    name = "layout-moves"
    one.create_collection(name, ttl=600)
    one.mset({f"k{i}": f"v{i}" for i in range(50)}, collection=name)
    before = one.describe_collection(name)
    assert (before.replicas, before.replicas_setting, before.moving) == (3, None, None)

    asked = one.alter_collection(name, replicas=2)
    assert asked.replicas_setting == 2 and asked.ttl == 600.0, "the other settings stay"
    # The number in use changes only once the move is done.
    assert asked.replicas == 3 and asked.moving in MOVE_PHASES, asked
    phases: List[str] = []
    deadline = time.monotonic() + 30
    while (info := one.describe_collection(name)).moving is not None:
        assert info.moving in MOVE_PHASES and info.replicas == 3, info
        if not phases or phases[-1] != info.moving:
            phases.append(info.moving)
        one.set("during", info.moving, collection=name)  # writes go on meanwhile
        assert time.monotonic() < deadline, f"still moving after 30 s: {phases}"
        time.sleep(0.1)
    assert (info.replicas, info.replicas_setting, info.select, info.zone_label) == (2, 2, {}, None)
    # Each phase lasts at least the 2 s request timeout: polled every 0.1 s, each shows,
    # in order.
    assert [p for p in phases if p != "pending"] == ["announced", "copying", "joint"], phases
    assert one.mget([f"k{i}" for i in range(50)], collection=name) == [f"v{i}".encode() for i in range(50)]
    assert one.get("during", collection=name) == phases[-1].encode()

    # None returns to the cluster's replicas (3), through another move.
    back = one.alter_collection(name, replicas=None, zone_label="rack")
    assert (back.replicas_setting, back.zone_label) == (None, "rack")
    done = settled(one, name)
    assert (done.replicas, done.replicas_setting, done.zone_label, done.select) == (3, None, "rack", {})
    assert one.get("k7", collection=name) == b"v7"
    reset = one.alter_collection(name, zone_label=None, select=None)
    assert (reset.zone_label, reset.select) == (None, {})
    assert settled(one, name).moving is None


def test_the_async_client_takes_and_shows_a_layout(solo: dhrt.LocalCluster) -> None:
    async def main() -> None:
        async with solo.async_client() as db:
            made = await db.create_collection("alayout", replicas=2, zone_label="zone")
            assert (made.replicas_setting, made.select, made.zone_label) == (2, {}, "zone")
            altered = await db.alter_collection("alayout", replicas=1, select={})
            assert (altered.replicas_setting, altered.select, altered.zone_label) == (1, {}, "zone")
            with pytest.raises(dhrt.InvalidInputError, match="1 to 64 replicas"):
                await db.alter_collection("alayout", replicas=0)
            deadline = time.monotonic() + 30
            while (info := await db.describe_collection("alayout")).moving is not None:
                assert time.monotonic() < deadline, info
                await asyncio.sleep(0.1)
            assert (info.replicas, info.replicas_setting) == (1, 1)

    asyncio.run(main())


# -- what settings do to writes ------------------------------------------------------


def test_a_key_quota_refuses_the_third_key_and_an_overwrite_still_works(one: dhrt.Client) -> None:
    one.create_collection("quota-keys", max_keys=2)
    one.set("a", "1", collection="quota-keys")
    one.set("b", "2", collection="quota-keys")
    with pytest.raises(dhrt.QuotaExceededError) as info:
        one.set("c", "3", collection="quota-keys")
    e = info.value
    assert e.code == "quota_exceeded" and "quota is 2" in str(e), str(e)
    assert isinstance(e, dhrt.StorageFullError) and isinstance(e, dhrt.Error)
    with pytest.raises(dhrt.QuotaExceededError):
        one.collection("quota-keys").update({"c": "3", "d": "4"})
    assert one.get("c", collection="quota-keys") is None, "nothing was written"

    one.set("a", "1 again", collection="quota-keys")  # replacing a key adds none
    assert one.get("a", collection="quota-keys") == b"1 again"
    assert one.describe_collection("quota-keys").keys == 2

    one.delete("b", collection="quota-keys")  # deletes are always accepted...
    one.set("c", "3", collection="quota-keys")  # ...and make room
    with pytest.raises(dhrt.QuotaExceededError):
        one.set("d", "4", collection="quota-keys")
    one.alter_collection("quota-keys", max_keys=None)  # no quota any more
    one.set("d", "4", collection="quota-keys")
    assert sorted(k for k, _ in one.scan(collection="quota-keys")) == [b"a", b"c", b"d"]


def test_a_byte_quota_refuses_a_write_that_would_pass_it(one: dhrt.Client) -> None:
    one.create_collection("quota-bytes", max_bytes=100)
    with pytest.raises(dhrt.QuotaExceededError, match="quota is 100"):
        one.set("big", b"x" * 200, collection="quota-bytes")
    one.set("small", b"x" * 10, collection="quota-bytes")
    assert one.get("small", collection="quota-bytes") == b"x" * 10
    assert one.get("big", collection="quota-bytes") is None


def test_a_default_ttl_expires_values_written_without_one(one: dhrt.Client) -> None:
    one.create_collection("ephemeral", ttl=1)
    one.set("plain", "v", collection="ephemeral")
    written = time.monotonic()
    one.set("own-ttl", "v", collection="ephemeral", ttl=60)  # its own TTL wins
    one.collection("ephemeral")["mapped"] = "v"  # the mapping gives none either
    one.set("plain", "v", collection="durable")  # a collection without settings
    assert one.get("plain", collection="ephemeral") == b"v"

    assert wait_until(lambda: one.get("plain", collection="ephemeral") is None, timeout=10, interval=0.05)
    lived = time.monotonic() - written
    assert lived > 0.8, f"expired after {lived:.2f} s, before its 1 s TTL"
    assert one.get("mapped", collection="ephemeral") is None
    assert one.get("own-ttl", collection="ephemeral") == b"v"
    assert one.get("plain", collection="durable") == b"v"


def test_a_default_ttl_is_the_expiry_redis_reads(serve: List[ServeProcess]) -> None:
    """The exact expiry a write without a TTL was given, read with Redis's PTTL on the
    node's Redis port (nothing else shows a value's expiry)."""
    redis = pytest.importorskip("redis", reason="needs redis-py (bash scripts/setup.sh installs it)")
    program = cargo_serve()
    if program is None:
        pytest.skip("needs the cargo-built dhrt binary (cargo build --release -p dhrt)")
    node = ServeProcess("--resp-port", "0", program=program)
    serve.append(node)
    assert node.proc.stdout is not None
    line = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not line.startswith("Redis clients:"):
        line = node.proc.stdout.readline()
    match = re.search(r" -p (\d+)", line)
    assert match, f"no Redis port printed: {line!r}"

    with dhrt.connect(node.url) as db:
        db.create_collection("sessions", ttl=3600)
        db.set("default-ttl", "v", collection="sessions")
        db.set("own-ttl", "v", collection="sessions", ttl=60)
        db.set("no-ttl", "v", collection="plain")
    r = redis.Redis(port=int(match.group(1)), single_connection_client=True, socket_timeout=10)
    try:
        assert r.execute_command("DHRT.COLLECTION", "sessions") in (b"OK", "OK", True)
        assert 3_590_000 < r.pttl("default-ttl") <= 3_600_000
        assert 50_000 < r.pttl("own-ttl") <= 60_000
        r.execute_command("DHRT.COLLECTION", "plain")
        assert r.pttl("no-ttl") == -1
    finally:
        r.close()


# -- asyncio --------------------------------------------------------------------------


def test_the_async_client_creates_alters_lists_and_drops(cluster: dhrt.LocalCluster) -> None:
    async def body(db: dhrt.AsyncClient) -> None:
        made = await db.create_collection("arc", consistency="quorum", ttl=30.5, max_keys=10)
        assert (made.defined, made.consistency, made.ttl, made.max_keys, made.keys) == (True, "quorum", 30.5, 10, 0)
        with pytest.raises(dhrt.ConflictError):
            await db.create_collection("arc")
        await db.mset({"x": "1", "y": "2"}, collection="arc", consistency="all")
        listed = {c.name: c for c in await db.collections()}
        assert listed["arc"].keys == 2 and listed["arc"].max_keys == 10
        altered = await db.alter_collection("arc", ttl=None, max_bytes=4096)
        assert (altered.ttl, altered.max_bytes, altered.max_keys) == (None, 4096, 10)
        assert await db.describe_collection("arc") == altered
        with pytest.raises(dhrt.InvalidInputError, match="nothing to change"):
            await db.alter_collection("arc")
        assert await db.drop_collection("arc", consistency="all") == 2
        assert not (await db.describe_collection("arc")).defined
        with pytest.raises(dhrt.NotFoundError):
            await db.describe_collection("anever")

    async def main() -> None:
        async with cluster.async_client() as db:
            await body(db)

    asyncio.run(main())


def test_the_async_client_meets_a_quota(solo: dhrt.LocalCluster) -> None:
    async def main() -> None:
        async with solo.async_client() as db:
            await db.create_collection("aquota", max_keys=1)
            await db.set("a", "1", collection="aquota")
            with pytest.raises(dhrt.QuotaExceededError):
                await db.set("b", "2", collection="aquota")
            await db.set("a", "2", collection="aquota")
            assert await db.get("a", collection="aquota") == b"2"

    asyncio.run(main())


# -- the docs ---------------------------------------------------------------------------


def collection_examples() -> List[str]:
    """The Python examples of docs/python.md's Collections section (its subsections too)."""
    text = (REPO / "docs" / "python.md").read_text()
    section = text.split("\n## Collections\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_docs_have_a_collections_example_and_a_placing_one() -> None:
    examples = collection_examples()
    assert len(examples) == 2, examples
    assert "replicas=1" in examples[1] and ".moving" in examples[1]


@pytest.mark.parametrize("which", [0, 1])
def test_the_example_in_the_docs_runs(which: int) -> None:
    """docs/python.md's Collections examples run and print what their comments say."""
    code = collection_examples()[which]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    promised = [c.strip() for c in re.findall(r"^\s*print\(.*#(.*)$", code, re.MULTILINE)]
    assert printed == promised, (printed, promised)
