"""Client tokens: a node started with an admin token file refuses a client without a
token (``UnauthorizedError``), serves one with it, and refuses what a token does not
allow (``ForbiddenError``), synchronously and with asyncio."""

from __future__ import annotations

import asyncio
import json
import pathlib
import urllib.request
from typing import Iterator

import pytest

import dhrt

ADMIN = "python-admin-token-0123456789abcdef-xyz"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dhrt._dhrt.Node]:
    path: pathlib.Path = tmp_path_factory.mktemp("tokens") / "admin.token"
    path.write_text(ADMIN + "\n")
    n = dhrt._dhrt.Node.start(replicas=1, admin_token_file=str(path))
    yield n
    n.kill()


def create_token(addr: str, body: dict[str, object]) -> str:
    """A token made with ``POST /v1/tokens`` and the admin token."""
    req = urllib.request.Request(
        f"http://{addr}/v1/tokens",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        token: str = json.load(resp)["token"]
        return token


def test_a_client_without_a_token_is_refused(node: dhrt._dhrt.Node) -> None:
    with dhrt.connect(node.addr) as db:
        with pytest.raises(dhrt.UnauthorizedError) as info:
            db.set("k", "v")
    assert info.value.code == "unauthorized"
    assert isinstance(info.value, PermissionError) and isinstance(info.value, dhrt.AuthError)
    # An unknown token is refused when the client connects (it is presented first).
    with pytest.raises(dhrt.UnauthorizedError, match="unknown or was revoked"):
        with dhrt.connect(node.addr, token="dhrt_0123456789abcdef_" + "A" * 43) as db:
            db.get("k")


def test_a_token_is_presented_and_its_grant_enforced(node: dhrt._dhrt.Node) -> None:
    with dhrt.connect(node.addr, token=ADMIN) as admin:
        admin.set("k", "v", collection="a")
    reader = create_token(node.addr, {"role": "read", "collections": ["a"]})
    with dhrt.connect(node.addr, token=reader) as db:
        assert db.get("k", collection="a") == b"v"
        with pytest.raises(dhrt.ForbiddenError, match="write role") as info:
            db.set("k", "changed", collection="a")
        assert info.value.code == "forbidden"
        with pytest.raises(dhrt.ForbiddenError, match="does not cover"):
            db.get("k", collection="b")
        assert db.get("k", collection="a") == b"v"


def test_the_async_client_presents_its_token(node: dhrt._dhrt.Node) -> None:
    writer = create_token(node.addr, {"role": "write"})

    async def main() -> None:
        db = await dhrt.connect_async(node.addr, token=writer)
        try:
            await db.set("k2", "v2")
            assert await db.get("k2") == b"v2"
        finally:
            db.close()
        anon = await dhrt.connect_async(node.addr)
        try:
            with pytest.raises(dhrt.UnauthorizedError):
                await anon.get("k2")
        finally:
            anon.close()

    asyncio.run(main())
