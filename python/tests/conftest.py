"""Shared fixtures: a three-node ``LocalCluster`` per test module, clients of it, and a
separate ``python -m dhrt serve`` process.

Every node listens on 127.0.0.1 on a port the OS picks; every wait is bounded; every
process a test starts is stopped by the fixture that started it, also when the test
fails.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional

import pytest

import dhrt

REPO = pathlib.Path(__file__).resolve().parents[2]
"""The repository's root."""

PYTHON_SERVE = [sys.executable, "-m", "dhrt", "serve"]
"""The node of the Python package: ``python -m dhrt serve``."""


def cargo_serve() -> Optional[List[str]]:
    """``dhrt serve`` of a cargo-built binary (``$DHRT_BIN``, else ``target/release`` or
    ``target/debug``), when there is one."""
    candidates = [os.environ.get("DHRT_BIN", "")] + [str(REPO / "target" / p / "dhrt") for p in ("release", "debug")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return [c, "serve"]
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[dhrt.LocalCluster]:
    """Three in-memory nodes in this process, shared by a test module."""
    with dhrt.LocalCluster(nodes=3) as c:
        yield c


@pytest.fixture
def db(cluster: dhrt.LocalCluster) -> Iterator[dhrt.Client]:
    """A client of the module's cluster."""
    with cluster.client() as client:
        yield client


class ServeProcess:
    """A ``python -m dhrt serve`` process: started with ``--port 0``, its address read
    from its ``listening on`` line."""

    def __init__(
        self, *args: str, data_dir: Optional[pathlib.Path] = None, program: Optional[List[str]] = None
    ) -> None:
        storage = ["--data-dir", str(data_dir)] if data_dir is not None else ["--memory"]
        program = program or PYTHON_SERVE
        cmd = [*program, "--port", "0", *storage, *args]
        env = {**os.environ, "DHRT_LOG": "warn"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.addr = self._await_listening()

    def _await_listening(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"python -m dhrt serve did not start: {self.stderr()}")

    @property
    def url(self) -> str:
        return f"ws://{self.addr}"

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit status (killed after ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stderr(self) -> str:
        self.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@pytest.fixture
def serve() -> Iterator[List[ServeProcess]]:
    """Starts ``python -m dhrt serve`` processes on demand (``serve.append(...)`` is
    done by :func:`start_serve`); every one is killed at the end."""
    procs: List[ServeProcess] = []
    yield procs
    for p in procs:
        p.kill()


def start_serve(
    procs: List[ServeProcess], *args: str, data_dir: Optional[pathlib.Path] = None, program: Optional[List[str]] = None
) -> ServeProcess:
    """Starts a ``serve`` process (``python -m dhrt serve`` unless ``program`` says
    otherwise) and registers it for clean-up."""
    p = ServeProcess(*args, data_dir=data_dir, program=program)
    procs.append(p)
    return p


def wait_until(check, timeout: float = 20.0, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    """Polls ``check`` until it returns true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, pathlib.Path]:
    """A test CA and a node certificate for 127.0.0.1 and localhost (server and client
    use), made with the ``openssl`` command: ``{"ca", "cert", "key"}``."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=dhrt test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "node.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n"
    )
    _openssl("req", *ec, "-subj", "/CN=dhrt test node", "-keyout", "node.key", "-out", "node.csr", cwd=d)
    _openssl(
        "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "node.ext", "-out", "node.pem", cwd=d,
    )
    return {"ca": d / "ca.pem", "cert": d / "node.pem", "key": d / "node.key"}
