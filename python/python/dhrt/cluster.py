"""``LocalCluster``: real dhrt nodes inside the Python process.

The default way to try dhrt from Python, and to test code against a real cluster
without installing anything else::

    with dhrt.LocalCluster(nodes=3) as cluster:
        db = cluster.client()
        db.set("alice", "admin", collection="users", consistency="all")
        cluster.kill(2)                      # a crash: the others must notice
        db.get("alice", collection="users")  # b'admin', from the replicas left
        cluster.restart(2)                   # the same node id, on the same port

Each node is the node ``dhrt serve`` runs — the same engine, storage, WebSocket
protocol and HTTP API — listening on 127.0.0.1 on a free port, in memory by default
or, with ``persist=True`` (or ``data_dir=``), on a data dir of its own. Leaving the
``with`` block (or :meth:`LocalCluster.stop`, or the interpreter exiting) stops every
node and removes the temporary data.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from dhrt import _dhrt
from dhrt._options import DEFAULT_MAX_VALUE_BYTES
from dhrt.aio import AsyncClient
from dhrt.client import Client
from dhrt.errors import Error, InvalidInputError, NodeError

__all__ = ["LocalCluster"]

_RUNNING: "weakref.WeakSet[LocalCluster]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_RUNNING):
        cluster.stop()


class _Slot:
    """One node of the cluster across restarts: its id, port and data dir."""

    __slots__ = ("node", "id", "port", "data_dir")

    def __init__(self, node: _dhrt.Node, data_dir: Optional[Path]) -> None:
        self.node: Optional[_dhrt.Node] = node
        self.id = node.id
        self.port = int(node.addr.rsplit(":", 1)[1])
        self.data_dir = data_dir


class LocalCluster:
    """A cluster of ``nodes`` real dhrt nodes running in this process.

    ``replicas`` is the copies kept of each key (3, as ``dhrt serve``). ``persist=True``
    gives each node a data dir under a temporary directory, removed at :meth:`stop`;
    ``data_dir=PATH`` puts them under ``PATH`` instead (kept). ``ready_timeout`` bounds
    how long starting, restarting and adding nodes wait for the cluster to agree on its
    members. ``log`` (``"info"``, ``"debug"``...; default: the ``DHRT_LOG`` environment
    variable) sends the nodes' logs to stderr.

    Nodes are numbered from 0 in the order they were started; a killed node keeps its
    number (and its URL: it restarts on the same port).

    ``tls_cert`` and ``tls_key`` (PEM files; one certificate for ``127.0.0.1`` serves
    every node) make every node speak only TLS: :attr:`urls` are then ``wss://`` and
    :meth:`client` verifies the nodes against ``tls_ca``, the CA that signed the
    certificate. ``tls_client_auth=True`` makes the nodes' links to each other mutual
    TLS (the certificate must then also allow client use).
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        replicas: int = 3,
        persist: bool = False,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        vnodes: Optional[int] = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        ready_timeout: float = 30.0,
        log: Optional[str] = None,
        tls_cert: Union[str, "os.PathLike[str]", None] = None,
        tls_key: Union[str, "os.PathLike[str]", None] = None,
        tls_ca: Union[str, "os.PathLike[str]", None] = None,
        tls_client_auth: bool = False,
    ) -> None:
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise InvalidInputError(f"nodes must be an int >= 1, not {nodes!r}")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise InvalidInputError(f"replicas must be an int >= 1, not {replicas!r}")
        self._size = nodes
        self._replicas = replicas
        self._vnodes = vnodes
        self._max_value = max_value_bytes
        self._ready_timeout = ready_timeout
        self._root: Optional[Path] = None
        self._own_root = False
        if data_dir is not None:
            self._root = Path(data_dir)
        elif persist:
            self._root = Path(tempfile.mkdtemp(prefix="dhrt-cluster-"))
            self._own_root = True
        if (tls_cert is None) != (tls_key is None):
            raise InvalidInputError("TLS needs both tls_cert and tls_key")
        self._tls: Dict[str, Any] = {}
        if tls_cert is not None and tls_key is not None:
            self._tls = {
                "tls_cert": os.fspath(tls_cert),
                "tls_key": os.fspath(tls_key),
                "tls_ca": os.fspath(tls_ca) if tls_ca is not None else None,
                "tls_client_auth": tls_client_auth,
            }
        self._ca: Optional[str] = os.fspath(tls_ca) if tls_ca is not None else None
        self._slots: List[_Slot] = []
        self._probe: Optional[Client] = None
        log = log if log is not None else os.environ.get("DHRT_LOG")
        if log:
            _dhrt.init_logs(log)

    # -- lifetime -------------------------------------------------------------------

    def start(self) -> "LocalCluster":
        """Starts the nodes (the first, then the others joining it) and waits until
        every node sees all of them alive. Called by ``with``."""
        if self._slots:
            return self
        _RUNNING.add(self)
        try:
            for _ in range(self._size):
                self._launch(len(self._slots))
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops every node at once and removes the temporary data dir. Idempotent."""
        _RUNNING.discard(self)
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        for slot in self._slots:
            if slot.node is not None:
                slot.node.kill()
                slot.node = None
        if self._own_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._own_root = False

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what it offers -------------------------------------------------------------

    @property
    def urls(self) -> List[str]:
        """``ws://127.0.0.1:PORT`` (``wss://`` with TLS) of every node, by number
        (killed ones included)."""
        scheme = "wss" if self._tls else "ws"
        return [f"{scheme}://127.0.0.1:{s.port}" for s in self._slots]

    @property
    def addrs(self) -> List[str]:
        """``127.0.0.1:PORT`` of every node, by number."""
        return [f"127.0.0.1:{s.port}" for s in self._slots]

    @property
    def running(self) -> List[int]:
        """The numbers of the nodes running now."""
        return [i for i, s in enumerate(self._slots) if s.node is not None]

    @property
    def node_ids(self) -> List[int]:
        """Every node's id, by number."""
        return [s.id for s in self._slots]

    @property
    def data_dir(self) -> Optional[Path]:
        """The directory holding the nodes' data dirs (``None`` in memory)."""
        return self._root

    def client(self, **options: Any) -> Client:
        """A :class:`dhrt.Client` connected through the running nodes; ``options`` are
        those of :func:`dhrt.connect` (``ca`` defaults to the cluster's ``tls_ca``)."""
        options.setdefault("ca", self._ca)
        return Client(self._seeds(), **options)

    def async_client(self, **options: Any) -> AsyncClient:
        """A :class:`dhrt.AsyncClient` for the running nodes (connects on first use)."""
        options.setdefault("ca", self._ca)
        return AsyncClient(self._seeds(), **options)

    # -- changing it ----------------------------------------------------------------

    def kill(self, i: int) -> None:
        """Stops node ``i`` at once, as a crash would: no hand-off, no goodbye, so the
        other nodes must notice by failure detection (a few seconds). What it had
        committed to its data dir stays there for :meth:`restart`."""
        slot = self._slot(i)
        if slot.node is None:
            raise NodeError(f"node {i} is not running")
        slot.node.kill()
        slot.node = None

    def leave(self, i: int) -> bool:
        """Makes node ``i`` leave gracefully (hand its ranges off, say goodbye) and stop.
        Returns whether every range was handed off."""
        slot = self._slot(i)
        if slot.node is None:
            raise NodeError(f"node {i} is not running")
        node, slot.node = slot.node, None
        return node.leave()

    def restart(self, i: int, *, wait: bool = True) -> None:
        """Starts node ``i`` again: the same node id on the same port, with its data when
        persisted (an in-memory node comes back empty and catches up from its
        replicas). With ``wait``, returns once every node sees it alive."""
        slot = self._slot(i)
        if slot.node is not None:
            raise NodeError(f"node {i} is running: kill it first")
        self._launch(i)
        if wait:
            self.wait_ready()

    def add_node(self, *, wait: bool = True) -> int:
        """Starts a new node that joins the ring; returns its number. With ``wait``,
        returns once every node sees it alive (its ranges are handed to it first)."""
        i = len(self._slots)
        self._launch(i)
        if wait:
            self.wait_ready()
        return i

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Waits until every running node is serving and sees exactly the running nodes
        alive; raises :class:`dhrt.NodeError` after ``timeout`` seconds (default: the
        cluster's ``ready_timeout``)."""
        limit = self._ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        want = len(self.running)
        last = "no answer yet"
        while True:
            try:
                probe = self._probe_client()
                views = [probe.stats(self.addrs[i], timeout=2.0) for i in self.running]
                if all(v["status"] == "alive" and v["members"]["alive"] == want for v in views):
                    return
                last = ", ".join(
                    f"{v['status']} seeing {v['members']['alive']} alive" for v in views
                )
            except Error as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise NodeError(
                    f"the cluster did not settle within {limit} s: want {want} nodes alive, "
                    f"the nodes say: {last}"
                )
            time.sleep(0.1)

    # -- inside ---------------------------------------------------------------------

    def _slot(self, i: int) -> _Slot:
        if not isinstance(i, int) or not 0 <= i < len(self._slots):
            raise InvalidInputError(f"no node {i!r}: nodes are numbered 0 to {len(self._slots) - 1}")
        return self._slots[i]

    def _seeds(self) -> List[str]:
        seeds = [self.urls[i] for i in self.running]
        if not seeds:
            raise NodeError("no node is running")
        return seeds

    def _probe_client(self) -> Client:
        if self._probe is None:
            self._probe = Client(self._seeds(), timeout=5.0, ca=self._ca)
        return self._probe

    def _launch(self, i: int) -> None:
        """Starts node ``i`` (a new one when ``i`` is the next number), joining through
        the running nodes."""
        join = [self.addrs[j] for j in self.running if j != i]
        restart = i < len(self._slots)
        data_dir = self._root / f"node-{i}" if self._root is not None else None
        options: Dict[str, Any] = {
            "port": self._slots[i].port if restart else 0,
            "data_dir": str(data_dir) if data_dir is not None else None,
            "join": join,
            "replicas": self._replicas,
            "max_value": self._max_value,
            "id": self._slots[i].id if restart else None,
            "leave_timeout": 10.0,
            **self._tls,
        }
        if self._vnodes is not None:
            options["vnodes"] = self._vnodes
        node = _dhrt.Node.start(**options)
        if restart:
            self._slots[i].node = node
        else:
            self._slots.append(_Slot(node, data_dir))

    def __repr__(self) -> str:
        nodes = ", ".join(
            f"{i}:{s.port}{'' if s.node is not None else ' (down)'}" for i, s in enumerate(self._slots)
        )
        return f"<dhrt.LocalCluster [{nodes}]>"
