"""A client-side deadline for blocking drivers that have none (psycopg 3).

A statement waits for its answer in a blocking read. A server that is down refuses or
resets the connection, but a frozen one (SIGSTOP, a hung host, a black-holed network
whose kernel still acknowledges) never answers, and the server-side statement_timeout
cannot fire in a process that does not run. The watchdog arms a deadline per
statement; past it, it shuts the connection's socket down, the blocked read returns
at once with an error, and the runner reports a timeout and discards the connection.

A deadline can also run a callable instead (``arm(key, seconds, action)``): the sync
MongoDB runner wakes pymongo's server selection, which otherwise sleeps in 0.5 s steps
past the operation's deadline.

One thread per process (``WATCHDOG``), started on first use and asleep until the
earliest deadline: arming and disarming is a dict update under a lock, and a wake-up
only when a deadline comes before the one it sleeps until.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["WATCHDOG", "Watchdog", "shutdown_socket", "watchdog_margin"]


def watchdog_margin(timeout: float) -> float:
    """How long after ``timeout`` the watchdog acts: 0.1 s plus a tenth of the timeout,
    so a server that is alive reports its own statement timeout first."""
    return 0.1 + timeout / 10


def shutdown_socket(fd: int) -> None:
    """Shut down the socket behind ``fd`` both ways; its owner's blocked read returns.

    Works on a duplicate of the descriptor, so the owner's descriptor stays valid
    (closing it under a blocked reader could hand its number to another socket).
    """
    with contextlib.suppress(OSError, ValueError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


class Watchdog:
    """Deadlines on sockets: ``arm`` before a blocking call, ``disarm`` after it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._armed: dict[Hashable, tuple[float, int | Callable[[], object]]] = {}
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf
        """When the thread wakes next (inf: asleep until armed)."""
        self._closed = False
        self.fired = 0
        """How many sockets it shut down (for tests and diagnostics)."""

    def arm(self, key: Hashable, seconds: float, fd: int | Callable[[], object]) -> None:
        """Shut ``fd`` down unless ``disarm(key)`` comes within ``seconds``; a callable
        is called instead (under the watchdog's lock: it must return at once)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._closed:
                return
            self._armed[key] = (deadline, fd)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name=f"authstore-watchdog-{self._name}", daemon=True
                )
                self._thread.start()
            elif deadline < self._wake_at:
                # Only then is a notify needed: usually the thread already sleeps until
                # an earlier deadline (runners of one timeout arm in increasing order).
                self._condition.notify()

    def disarm(self, key: Hashable) -> bool:
        """False when the deadline passed and the socket was shut down."""
        with self._lock:
            return self._armed.pop(key, None) is not None or self._closed

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._armed.clear()
            self._condition.notify()

    def _watch(self) -> None:
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                earliest = min((deadline for deadline, _ in self._armed.values()), default=None)
                if earliest is None or earliest > now:
                    self._wake_at = math.inf if earliest is None else earliest
                    self._condition.wait(None if earliest is None else earliest - now)
                    self._wake_at = -math.inf  # awake: arm() need not notify
                    continue
                for key, (deadline, target) in list(self._armed.items()):
                    if deadline <= now:
                        # Under the lock: the owner cannot disarm and give the
                        # connection to another operation while its socket goes down.
                        del self._armed[key]
                        if callable(target):
                            with contextlib.suppress(Exception):
                                target()
                        else:
                            shutdown_socket(target)
                        self.fired += 1


WATCHDOG = Watchdog("shared")
"""One thread for the whole process, whatever the number of stores and timeouts."""
