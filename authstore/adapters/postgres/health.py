"""When an operation may wait for a pooled PostgreSQL connection, and for how long.

psycopg_pool connects in its worker threads and only logs a failure: an operation
asking for a connection would wait out its whole timeout while the server refuses
every attempt. The runner's pool makes its connections with a class from
``tracked_connection``, which reports each attempt to a ``PoolHealth``; the operation
then waits in ``looks``:

- while the latest attempt failed: one brief look for an idle connection, then that
  failure (fail fast, with the reason);
- while no connection was ever made: short looks, checking between them whether the
  first attempt failed;
- otherwise: the rest of the timeout.

A connection the server dropped makes its idle siblings suspect (a restart, a
failover): ``PoolHealth`` also admits one background check of the pool at a time,
which operations wait for (within their timeout) instead of taking a dead connection.

Asyncpg's pool connects in the operation that acquires and raises its failure there:
the async runner needs no tracking and does not use this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "FAIL_FAST_WAIT",
    "FIRST_CONNECT_SLICE",
    "POOL_PREFIX",
    "PoolHealth",
    "quiet_pool_connect_failures",
    "tracked_connection",
]

FIRST_CONNECT_SLICE = 0.05
"""While no connection was ever made, how often a waiting operation looks whether the
pool's attempt failed (the pool itself would keep it waiting for the whole timeout)."""
FAIL_FAST_WAIT = 0.01
"""While the latest attempt failed: a brief look for an idle connection, then the error."""
SHORTEST_WAIT = 0.001
"""psycopg_pool takes no wait of zero or less."""


class PoolHealth:
    """The outcome of the pool's latest connection attempt (set by its worker threads),
    and whether a check of its idle connections is running."""

    __slots__ = ("_check_lock", "_checked", "_checking", "clock", "connected", "error", "tracked")

    def __init__(self, *, tracked: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracked = tracked
        """False for a caller's pool: its connects are not ours to watch."""
        self.clock = clock
        self.error: BaseException | None = None
        self.connected = False
        self._check_lock = threading.Lock()
        self._checking = False
        self._checked = threading.Event()
        self._checked.set()

    # --- connection attempts (the pool's threads) -----------------------------------

    def failed(self, error: BaseException) -> None:
        self.error = error

    def succeeded(self) -> None:
        self.error, self.connected = None, True

    def looks(self, timeout: float) -> Iterator[tuple[float, BaseException | None]]:
        """One operation's looks for a connection within ``timeout`` (counted from this
        call): each is how long it may wait, and the failure to raise if it finds none
        (None: look again). The iteration ends once the timeout has passed."""
        return self._looks(self.clock() + timeout)

    def _looks(self, deadline: float) -> Iterator[tuple[float, BaseException | None]]:
        while True:
            failure = self.error if self.tracked else None
            remaining = deadline - self.clock()
            if failure is not None:
                wait = FAIL_FAST_WAIT
            elif self.tracked and not self.connected:
                wait = min(FIRST_CONNECT_SLICE, remaining)
            else:
                wait = remaining
            yield max(wait, SHORTEST_WAIT), failure
            if self.clock() >= deadline:
                return

    # --- checks of the idle connections ---------------------------------------------

    def begin_check(self) -> bool:
        """Whether the caller should check the pool now (no check is running)."""
        with self._check_lock:
            if self._checking:
                return False
            self._checking = True
            self._checked.clear()
            return True

    def end_check(self) -> None:
        with self._check_lock:
            self._checking = False
            self._checked.set()

    def wait_checked(self, timeout: float) -> bool:
        """Wait for a running check to end; False if it outlasted ``timeout``."""
        return self._checked.wait(timeout)


def tracked_connection(connection_class: type, health: PoolHealth) -> Any:
    """A subclass of psycopg's ``connection_class`` whose connects report to ``health``:
    psycopg_pool only logs their failures."""

    class TrackedConnection(connection_class):  # type: ignore[misc]
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                connection = super().connect(*args, **kwargs)
            except BaseException as error:
                health.failed(error)
                raise
            health.succeeded()
            return connection

    TrackedConnection.__qualname__ = "TrackedConnection"  # for the pool's log lines
    return TrackedConnection


POOL_PREFIX = "authstore-"
"""How the names of authstore's own pools begin."""
_POOL_CONNECT_LINES = frozenset(
    {"error connecting in %r: %s", "reconnection attempt in pool %r failed after %s sec"}
)


class _OwnConnectFailures(logging.Filter):
    """Drops psycopg_pool's lines about a failed connect of authstore's own pools: the
    runner raises that failure to the operation (a refused configuration is also logged
    once on ``authstore.postgres``), so the pool's two lines per attempt only repeat
    it. Other pools' lines, and the pool's other lines, pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg in _POOL_CONNECT_LINES
            and isinstance(args, tuple)
            and str(args[0]).startswith(POOL_PREFIX)
        )


_POOL_FILTER = _OwnConnectFailures()


def quiet_pool_connect_failures() -> None:
    """Install the filter on psycopg_pool's logger once (adding it twice is a no-op)."""
    logging.getLogger("psycopg.pool").addFilter(_POOL_FILTER)
