"""``python -m dhrt``: run a dhrt node from the Python package.

``python -m dhrt serve`` runs the node ``dhrt serve`` runs (the same Rust code, inside
this Python process), so a ``pip install dhrt`` gives you a server too. It prints the
``listening on`` line, serves until SIGINT, SIGTERM, SIGHUP or SIGQUIT, then leaves
the cluster gracefully (hand-off, goodbye, flush)::

    python -m dhrt serve --memory                    # 127.0.0.1:7453, in RAM
    python -m dhrt serve --port 7454 --join 127.0.0.1:7453 --data-dir ./node2
    python -m dhrt serve --memory --tls-cert node.pem --tls-key node.key --tls-ca ca.pem

``python -m dhrt version`` prints the version.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from dhrt import _dhrt
from dhrt.errors import Error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dhrt",
        description="dhrt: a masterless, real-time key/value database.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a node until a signal, then leave gracefully",
        description="Run a node: one port serves clients (WebSocket, HTTP) and peers. "
        "Persisted in --data-dir unless --memory. Ctrl-C (or SIGTERM/SIGHUP/SIGQUIT) "
        "leaves gracefully.",
    )
    serve.add_argument("-p", "--port", type=int, default=7453, help="port for everything (0 picks a free one; default 7453)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--advertise", help="HOST:PORT other nodes and clients use (required with --host 0.0.0.0)")
    serve.add_argument("--data-dir", default="./dhrt-data", help="where the data lives (default ./dhrt-data)")
    serve.add_argument("--memory", action="store_true", help="keep everything in memory (lost on exit)")
    serve.add_argument("--join", action="append", default=[], metavar="ADDR", help="join the cluster of the node at HOST:PORT (repeatable)")
    serve.add_argument("--replicas", type=int, default=3, help="replicas per key (default 3)")
    serve.add_argument("--vnodes", type=int, default=None, help="virtual nodes (ring tokens) of this node")
    serve.add_argument("--max-value", type=int, default=_dhrt.DEFAULT_MAX_VALUE_BYTES, help="largest value accepted, in bytes (default 16 MiB)")
    serve.add_argument("--leave-timeout", type=float, default=30.0, help="seconds a graceful leave may take (default 30)")
    serve.add_argument("--min-free-mb", type=int, default=64, help="refuse writes when less than this many MiB would stay free (default 64)")
    serve.add_argument("--tls-cert", metavar="FILE", help="speak only TLS (https, wss) with this certificate chain (PEM); needs --tls-key")
    serve.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    serve.add_argument("--tls-ca", metavar="FILE", help="the cluster CA (PEM) peers' certificates are verified against")
    serve.add_argument("--tls-client-auth", action="store_true", help="mutual TLS: peer links must present a certificate signed by --tls-ca")
    serve.add_argument("--log", default=None, help="log filter for stderr (default: $DHRT_LOG, else info)")
    commands.add_parser("version", help="print the version")
    return parser


def serve(args: argparse.Namespace) -> int:
    """Runs a node until a signal, then leaves gracefully; returns the exit status."""
    import os

    _dhrt.init_logs(args.log or os.environ.get("DHRT_LOG") or "info")
    options = {
        "host": args.host,
        "port": args.port,
        "advertise": args.advertise,
        "data_dir": None if args.memory else args.data_dir,
        "join": args.join,
        "replicas": args.replicas,
        "max_value": args.max_value,
        "leave_timeout": args.leave_timeout,
        "min_free_mb": args.min_free_mb,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
        "tls_client_auth": args.tls_client_auth,
    }
    if args.vnodes is not None:
        options["vnodes"] = args.vnodes
    stop = threading.Event()
    received: List[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, on_signal)
    node = _dhrt.Node.start(**options)
    print(
        f"dhrt node {node.id:016x} listening on {node.addr} (reach it at {node.addr}; data {node.storage})",
        flush=True,
    )
    print(f"try: python -c \"import dhrt; print(dhrt.connect('ws://{node.addr}').stats())\"", flush=True)
    while not stop.wait(0.5):
        pass
    print(f"{received[0]}: leaving the cluster (hand-off, then exit)", file=sys.stderr, flush=True)
    handed_off = node.leave()
    print("left" + (" after handing off every range" if handed_off else " (hand-off incomplete)"), file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """The entry point of ``python -m dhrt``."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(_dhrt.__version__)
        return 0
    try:
        return serve(args)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
