"""``--pin`` (benchmarks/suite/placement.py): the benchmark on one CPU, the local
server's processes (its children too) on the others while a section runs, and every
mask as it was afterwards, threads started meanwhile included. A real listening process
with a child stands in for a server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from benchmarks.suite.placement import pinned, server_pids

SERVER = """
import socket, subprocess, sys, time
listener = socket.create_server(("127.0.0.1", 0))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(listener.getsockname()[1], child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def server() -> Iterator[tuple[int, int, int]]:
    """A process listening on a local port and its child: (port, pid, child's pid)."""
    with subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            port, child = map(int, process.stdout.readline().split())
            yield port, process.pid, child
        finally:
            subprocess.run(["pkill", "-P", str(process.pid)], check=False)
            process.kill()


def test_the_server_is_found_by_its_port_with_its_children(server: tuple[int, int, int]) -> None:
    port, pid, child = server
    found = server_pids([("127.0.0.1", port)])
    assert {pid, child} <= found, found
    assert os.getpid() not in found
    assert not server_pids([("192.0.2.1", port)])  # not a local address: left alone


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="placement needs two CPUs",
)
def test_a_pinned_section_and_everything_restored(server: tuple[int, int, int]) -> None:
    port, pid, child = server
    cpus = sorted(os.sched_getaffinity(0))
    before = {who: os.sched_getaffinity(who) for who in (0, pid, child)}
    started: list[int] = []
    go_on = threading.Event()

    def thread() -> None:
        started.append(threading.get_native_id())
        go_on.wait(10)

    worker = threading.Thread(target=thread)
    with pinned([("127.0.0.1", port)]) as where:
        assert os.sched_getaffinity(0) == {cpus[0]}, where
        assert os.sched_getaffinity(pid) == set(cpus[1:]), where
        assert os.sched_getaffinity(child) == set(cpus[1:]), where
        assert "2 server processes" in where, where
        worker.start()  # a driver's pool thread, say: it inherits the pin
        while not started:
            threading.Event().wait(0.01)
        assert os.sched_getaffinity(started[0]) == {cpus[0]}
    try:
        assert {who: os.sched_getaffinity(who) for who in (0, pid, child)} == before
        assert os.sched_getaffinity(started[0]) == before[0]
    finally:
        go_on.set()
        worker.join()
