"""Every server the backends need answers here: under strict mode a missing one fails
this run with a message naming it (a later backend test would fail too, less clearly).
And the command that starts them (``python -m tests.servers``, behind scripts/services)
starts, reuses and stops its own servers only, on a private home and port offset."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import SERVERS
from tests.servers.defaults import NAMES, Layout, env_var
from tests.servers.processes import alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_answers(name: str, server_url: Callable[[str], str]) -> None:
    url = server_url(name)
    SERVERS[name].probe(url)  # a protocol-level round trip, not only an open port


def test_every_command_server_is_in_the_registry_and_an_offset_moves_every_port() -> None:
    assert {name.replace("-", "_") for name in NAMES} <= set(SERVERS)
    base, moved = Layout(Path("/h"), 0), Layout(Path("/h"), 1000)
    for name in NAMES:
        assert env_var(name) == SERVERS[name.replace("-", "_")].env
        if name == "redis-unix":
            assert moved.url(name) == base.url(name) == "redis+unix:///h/redis.sock?db=0"
            continue
        hosts = [item.rpartition(":") for item in urlsplit(base.url(name)).netloc.split(",")]
        shifted = [f"{host}:{int(port) + 1000}" for host, _, port in hosts]
        assert urlsplit(moved.url(name)).netloc.rpartition("@")[2] == ",".join(
            item.rpartition("@")[2] for item in shifted
        )


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def private_layout() -> Iterator[Layout]:
    """A home of its own (short: a unix socket lives in it) and an offset whose ports
    are free, never the shared servers'."""
    home = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    layout = next(
        (
            candidate
            for candidate in (Layout(home, random.randrange(20000, 40000)) for _ in range(50))
            if all(_free(candidate.port(n)) for n in ("redis", "memcached", "memcached-multi"))
        ),
        None,
    )
    if layout is None:
        pytest.fail("no free port offset")
    try:
        yield layout
    finally:
        _command(layout, "stop")
        shutil.rmtree(home, ignore_errors=True)


def _command(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSTORE_TEST_")}
    env["AUTHSTORE_SERVICES_HOME"] = str(layout.home)
    env["AUTHSTORE_SERVICES_PORT_OFFSET"] = str(layout.offset)
    command = [sys.executable, "-m", "tests.servers", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _exports(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = value.strip("'")
    return found


@pytest.mark.serial
@pytest.mark.timeout(180)
def test_the_command_starts_reuses_and_stops_only_what_it_started(
    private_layout: Layout,
) -> None:
    layout, names = private_layout, ["redis", "redis-unix", "memcached-multi"]
    assert _command(layout, "status", *names).returncode == 1

    first = _command(layout, "up", *names)
    assert first.returncode == 0, first.stderr
    assert _exports(first.stdout) == {env_var(name): layout.url(name) for name in names}
    again = _command(layout, "up", *names)  # idempotent: the same servers, reused
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already running") == len(names), again.stderr
    assert "starting" not in again.stderr
    assert _command(layout, "status", *names).returncode == 0
    assert _exports(_command(layout, "env", *names).stdout) == _exports(first.stdout)

    # A server this command did not start (no pid file of its own) is left alone.
    pid_file = layout.home / "redis" / "redis.pid"
    foreign = int(pid_file.read_text())
    pid_file.unlink()
    try:
        stopped = _command(layout, "stop", "redis", "redis-unix", "memcached", "memcached-multi")
        assert stopped.returncode == 0, stopped.stderr
        assert "redis: running on" in stopped.stderr and "left alone" in stopped.stderr
        assert stopped.stderr.count(": stopped") == 3, stopped.stderr
        assert alive(foreign)
        assert _command(layout, "status", "redis").returncode == 0
        assert _command(layout, "status", "redis-unix", "memcached-multi").returncode == 1
    finally:
        os.kill(foreign, signal.SIGKILL)


def test_docker_compose_publishes_the_default_ports() -> None:
    """docker-compose.yml (for people with Docker) serves the same addresses."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services) <= set(NAMES)
    for name, service in services.items():
        address, _, _ = service["ports"][0].rpartition(":")
        assert address == f"127.0.0.1:{Layout(Path('/h')).port(name)}", name
