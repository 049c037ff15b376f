"""``authstore ping URL``, the readiness probe, as a script sees it: one line, exit 0
when the backend answers, 4 when it does not, 3 when the URL is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.outages import free_port


def _ping(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authstore", "ping", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert len(output.strip().splitlines()) == 1, output
    return output.strip()


def test_an_answering_backend_exits_0(tmp_path: Path) -> None:
    result = _ping(f"sqlite:///{tmp_path / 'ping.db'}")
    assert result.returncode == 0, result.stderr
    assert "answered in" in _one_line(result)


@pytest.mark.parametrize("server", ["postgres", "redis", "memcached"])
def test_a_server_that_answers_exits_0(server: str, server_url: Callable[[str], str]) -> None:
    result = _ping(server_url(server), "--timeout", "5")
    assert result.returncode == 0, result.stderr
    _one_line(result)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0",
        "postgresql://user:hunter2@127.0.0.1:{port}/db",
        "mysql://root:hunter2@127.0.0.1:{port}/db",
        "memcached://127.0.0.1:{port}",
    ],
)
def test_a_dead_port_exits_4_on_one_line(url: str) -> None:
    started = time.perf_counter()
    result = _ping(url.format(port=free_port()), "--timeout", "0.5")
    elapsed = time.perf_counter() - started
    assert result.returncode == 4, result.stdout + result.stderr
    line = _one_line(result)
    assert line.startswith("authstore: backend unavailable:")
    assert "hunter2" not in line
    print(f"{url.split(':')[0]}: exit 4 after {elapsed:.2f} s (interpreter start included)")


@pytest.mark.parametrize(
    "url",
    ["bogus://x", "redis://127.0.0.1:6379/0?pool_size=lots", "sqlite:///x.db?no_such=1"],
)
def test_a_configuration_error_exits_3(url: str) -> None:
    result = _ping(url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert _one_line(result).startswith("authstore: configuration error:")


def test_a_timeout_must_be_a_number() -> None:
    result = _ping("memory://", "--timeout", "soon")
    assert result.returncode == 2
