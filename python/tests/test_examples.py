"""Every example in python/examples runs to completion (each in its own interpreter,
with a time limit); ``connect.py`` against a ``python -m dhrt serve`` process."""

from __future__ import annotations

import subprocess
import sys
from typing import List

import pytest
from conftest import REPO, ServeProcess, start_serve

EXAMPLES = sorted((REPO / "python" / "examples").glob("*.py"))


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.py", "watch_changes.py", "async_client.py", "failover.py", "connect.py"}


@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name != "connect.py"], ids=lambda p: p.name)
def test_an_example_runs(example) -> None:  # type: ignore[no-untyped-def]
    assert run(str(example)).strip()


def test_connect_runs_against_a_node(serve: List[ServeProcess]) -> None:
    node = start_serve(serve)
    out = run(str(REPO / "python" / "examples" / "connect.py"), node.url)
    assert "hello = b'world'" in out and "refused before sending" in out
