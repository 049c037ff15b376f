"""Fixtures for the memcached tests: one real memcached, and two behind the hashing.

The URLs come from ``tests/servers.py`` (``AUTHSTORE_TEST_MEMCACHED_URL`` and
``AUTHSTORE_TEST_MEMCACHED_MULTI_URL``, else testcontainers); every test works in a
namespace of its own, so runs on a shared server never see each other's keys.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from authstore.contracts.testing import unavailable
from tests.outages import stopped


@pytest.fixture(scope="session")
def memcached_url(server_url: Callable[[str], str]) -> str:
    return server_url("memcached")


@pytest.fixture(scope="session")
def memcached_multi_url(server_url: Callable[[str], str]) -> str:
    return server_url("memcached_multi")


@pytest.fixture(scope="session")
def memcached_servers(memcached_multi_url: str) -> list[tuple[str, int]]:
    """The (host, port) of each server of the two-server URL."""
    hosts = memcached_multi_url.partition("://")[2].split("?")[0].split(",")
    return [(host.rpartition(":")[0], int(host.rpartition(":")[2])) for host in hosts]


class PrivateMemcached:
    """A memcached of this test alone, on a free port: the test may kill or freeze it."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            unavailable(
                "a private memcached needs the memcached binary (apt-get install memcached)"
            )
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
        self.port = port
        self.process = subprocess.Popen(
            [binary, "-u", "root", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        )
        self.url = f"memcached://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as ping:
                    ping.sendall(b"version\r\n")
                    if ping.recv(100).startswith(b"VERSION"):
                        return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    @classmethod
    def on_port(cls, port: int) -> PrivateMemcached:
        return cls(port)

    def freeze(self) -> None:
        """SIGSTOP, and wait until every thread has stopped: a signal is delivered
        asynchronously, and a thread still running could answer one more request."""
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not stopped(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stopped(self.process.pid), "memcached did not stop"

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def private_memcached() -> Iterator[PrivateMemcached]:
    server = PrivateMemcached()
    yield server
    server.stop()
