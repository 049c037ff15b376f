"""Connections for the sync runner: PyMySQL has no pool of its own.

``ConnectionPool`` keeps at most ``size`` connections; an operation waits at most
``timeout`` for a free one, then fails with BackendUnavailableError (fail closed,
never queue forever). ``OneConnection`` wraps a connection the caller gave: every
store given it takes turns on it, so one store's statements never land inside
another store's transaction.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from authstore.adapters.sql.runner import connection_lock
from authstore.contracts.errors import BackendUnavailableError, StoreClosedError

__all__ = ["ConnectionPool", "OneConnection", "SyncConnections"]

C = TypeVar("C")

STALE_AFTER = 30.0
"""Seconds idle after which a connection is pinged before use: a peer that vanished
without closing (a dropped NAT entry, a failed-over host) leaves no trace on the socket."""


class SyncConnections(Protocol[C]):
    def acquire(self) -> C: ...
    def release(self, connection: C, *, reuse: bool) -> None: ...
    def close(self) -> None: ...


class ConnectionPool(Generic[C]):
    """Thread-safe; connections are made on demand, checked on the way out, and
    discarded (never reused) after a failure."""

    def __init__(
        self,
        *,
        size: int,
        timeout: float,
        connect: Callable[[], C],
        usable: Callable[[C, float], bool],
        close: Callable[[C], None],
        name: str,
    ) -> None:
        self._size = size
        self._timeout = timeout
        self._connect = connect
        self._usable = usable
        self._close_connection = close
        self._name = name
        self._idle: list[tuple[C, float]] = []
        self._open = 0
        self._closed = False
        self._ready = threading.Condition(threading.Lock())

    def acquire(self) -> C:
        deadline: float | None = None
        since: float | None
        with self._ready:
            while True:
                if self._closed:
                    raise StoreClosedError(f"{self._name}: this store is closed")
                if self._idle:
                    connection, since = self._idle.pop()
                    break
                if self._open < self._size:
                    self._open += 1
                    since = None
                    break
                if deadline is None:
                    deadline = time.monotonic() + self._timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendUnavailableError(
                        f"{self._name}: no free connection within {self._timeout:g} s "
                        f"(pool_size={self._size}, all in use)"
                    )
                self._ready.wait(remaining)
        # Outside the lock: connecting, or pinging a stale connection, is a round trip.
        if since is None:
            return self._new()
        if self._usable(connection, time.monotonic() - since):
            return connection
        with contextlib.suppress(Exception):
            self._close_connection(connection)
        return self._new()  # in the dead one's place

    def _new(self) -> C:
        try:
            return self._connect()
        except BaseException:
            with self._ready:
                self._open -= 1
                self._ready.notify()
            raise

    def release(self, connection: C, *, reuse: bool) -> None:
        with self._ready:
            if reuse and not self._closed:
                self._idle.append((connection, time.monotonic()))
                self._ready.notify()
                return
        self._discard(connection)

    def _discard(self, connection: C) -> None:
        with contextlib.suppress(Exception):
            self._close_connection(connection)
        with self._ready:
            self._open -= 1
            self._ready.notify()

    def close(self) -> None:
        """Idle connections close now; those in use close when their operation ends."""
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._ready.notify_all()
        for connection, _ in idle:
            self._discard(connection)


class OneConnection(Generic[C]):
    """A connection the caller owns: authstore never closes it. A dead one is revived
    (PyMySQL reconnects in place); after a failure, whatever transaction the failed
    operation left open is rolled back."""

    def __init__(
        self,
        connection: C,
        *,
        timeout: float,
        revive: Callable[[C], None],
        reset: Callable[[C], None],
        name: str,
    ) -> None:
        self._connection = connection
        self._timeout = timeout
        self._revive = revive
        self._reset = reset
        self._name = name
        self._lock = connection_lock(connection, threading.Lock)
        self._closed = False

    def acquire(self) -> C:
        if self._closed:
            raise StoreClosedError(f"{self._name}: this store is closed")
        if not self._lock.acquire(timeout=self._timeout):
            raise BackendUnavailableError(
                f"{self._name}: the given connection stayed busy for {self._timeout:g} s"
            )
        try:
            self._revive(self._connection)
        except BaseException:
            self._lock.release()
            raise
        return self._connection

    def release(self, connection: C, *, reuse: bool) -> None:
        try:
            if not reuse:
                with contextlib.suppress(Exception):
                    self._reset(connection)
        finally:
            self._lock.release()

    def close(self) -> None:
        self._closed = True
