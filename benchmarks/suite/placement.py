"""Where the benchmark and the servers run (``--pin``): this process on one CPU, the
local servers' processes on the others, for the backend sections; every mask restored
after.

Why: on a small machine the scheduler decides, per connection, whether a server's
thread answers on the client's CPU or on another, and a round trip then takes about
15 µs or about 90 µs (memcached, 2 cores). The choice sticks to the connection for a
whole group, so two contenders on two connections can differ fourfold for no reason in
their code, and the next run may swap them. Pinned, every contender's round trip
crosses between the same two CPUs, as between two machines.

The servers are found by the local ports they listen on (``/proc/net/tcp``, ``tcp6``),
with every process they started (PostgreSQL's backends), every thread of each. A server
on another machine, a Unix socket or a process this user may not touch is left alone,
and the report says what was placed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["pinned", "server_pids"]

LOCAL = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
LISTEN = "0A"
"""A listening socket's state in ``/proc/net/tcp``."""


def _listening_inodes(ports: set[int]) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rpartition(":")[2], 16)
                if fields[3] == LISTEN and port in ports:
                    inodes.add(fields[9])
    return inodes


def _parents() -> dict[int, int]:
    """Every process -> its parent."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name (in parentheses) may hold spaces: the fields after it
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
    return parents


def server_pids(addresses: Iterable[tuple[str, int]]) -> set[int]:
    """The processes listening on the local ``addresses``, and their descendants."""
    ports = {port for host, port in addresses if host in LOCAL}
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(ports)}
    found: set[int] = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                found.add(int(fd.parent.parent.name))
    found.discard(os.getpid())
    parents = _parents()
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grown = bool(children)
    return found


def _tasks(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    return []


@contextlib.contextmanager
def pinned(addresses: Iterable[tuple[str, int]]) -> Iterator[str]:
    """Pin as described in the module docstring; yields what was done, for the report."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity here)"
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield "not pinned (one CPU)"
        return
    mine, others = {cpus[0]}, set(cpus[1:])
    saved: dict[int, set[int]] = {}

    def place(tid: int, where: set[int]) -> bool:
        with contextlib.suppress(OSError):
            before = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, where)
            saved.setdefault(tid, before)
            return True
        return False

    try:
        for tid in _tasks(os.getpid()):
            place(tid, mine)
        servers = sorted(server_pids(addresses))
        placed = 0
        for pid in servers:
            threads_placed = [place(tid, others) for tid in _tasks(pid)]
            placed += any(threads_placed)
        yield (
            f"this process on CPU {cpus[0]}, {placed} server processes "
            f"(of {len(servers)} found on the local ports) on CPU "
            f"{', '.join(map(str, sorted(others)))}"
        )
    finally:
        # Threads and processes started meanwhile inherited a pin: this process's (a
        # driver's pool threads) get the mask it had; the servers' (backends of the
        # benchmark's connections, still open or not yet gone) the one the machine gave
        # this process, the servers' own being the same on a machine left as it booted.
        for tid in _tasks(os.getpid()):
            saved.setdefault(tid, set(cpus))
        for pid in server_pids(addresses):
            for tid in _tasks(pid):
                saved.setdefault(tid, set(cpus))
        for tid, before in saved.items():
            with contextlib.suppress(OSError):  # a thread that has ended since
                os.sched_setaffinity(tid, before)
