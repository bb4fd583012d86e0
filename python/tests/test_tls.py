"""TLS: nodes started with a test certificate speak only TLS; clients connect with
``wss://`` and the CA (``ca=``), sync and async; without the CA the node's certificate
is not trusted. The certificates come from conftest's ``certs`` (the ``openssl``
command, a temporary directory, valid for a day)."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import ssl
import urllib.request
from typing import Dict, Iterator, List

import pytest
from conftest import ServeProcess, start_serve

import dhrt

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def tls_cluster(certs: Dict[str, pathlib.Path]) -> Iterator[dhrt.LocalCluster]:
    """Three TLS nodes whose links to each other are mutual TLS."""
    with dhrt.LocalCluster(
        nodes=3, tls_cert=certs["cert"], tls_key=certs["key"], tls_ca=certs["ca"], tls_client_auth=True
    ) as c:
        yield c


def test_a_tls_cluster_serves_wss_clients_with_the_ca(
    tls_cluster: dhrt.LocalCluster, certs: Dict[str, pathlib.Path]
) -> None:
    assert all(u.startswith("wss://") for u in tls_cluster.urls)
    with dhrt.connect(tls_cluster.urls[0], ca=certs["ca"], timeout=10) as db:
        db.set("k", "v", consistency="all")
        assert db.get("k") == b"v"
    # A bare host:port with a CA speaks TLS too.
    with dhrt.connect(tls_cluster.addrs[1], ca=str(certs["ca"]), timeout=10) as db:
        assert db.get("k", consistency="all") == b"v"
    # https for the HTTP API, verified with the same CA.
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    body = urllib.request.urlopen(f"https://{tls_cluster.addrs[2]}/v1/health", timeout=10, context=context).read()
    assert b"alive" in body


def test_the_async_client_speaks_tls(tls_cluster: dhrt.LocalCluster, certs: Dict[str, pathlib.Path]) -> None:
    async def run() -> None:
        async with dhrt.AsyncClient(tls_cluster.urls, ca=certs["ca"], timeout=10) as db:
            await db.set("async", "yes")
            assert await db.get("async") == b"yes"

    asyncio.run(run())


def test_without_the_ca_or_without_tls_the_connection_fails(tls_cluster: dhrt.LocalCluster) -> None:
    # The public roots do not include the test CA.
    with pytest.raises(dhrt.ConnectionError, match="certificate"):
        dhrt.connect(tls_cluster.urls[0], timeout=10)
    # Plain ws:// to a TLS port.
    with pytest.raises(dhrt.ConnectionError):
        dhrt.connect(tls_cluster.urls[0].replace("wss://", "ws://"), timeout=10)


def test_python_m_dhrt_serve_takes_the_tls_flags(
    serve: List[ServeProcess], certs: Dict[str, pathlib.Path]
) -> None:
    node = start_serve(serve, "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]))
    with dhrt.connect(f"wss://{node.addr}", ca=certs["ca"], timeout=10) as db:
        db.set("served", "over tls")
        assert db.get("served") == b"over tls"
