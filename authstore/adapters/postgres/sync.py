"""The sync PostgreSQL runner: psycopg 3 over a psycopg_pool.ConnectionPool.

Connections are in autocommit: a single-statement operation is one round trip
with no BEGIN; an operation that yields Begin runs its transaction on the one
connection it took.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.common.watchdog import WATCHDOG, watchdog_margin
from authstore.adapters.postgres.health import (
    POOL_PREFIX,
    PoolHealth,
    quiet_pool_connect_failures,
    tracked_connection,
)
from authstore.adapters.postgres.runner import ROWS, PostgresRunnerBase
from authstore.adapters.postgres.settings import PostgresSettings
from authstore.adapters.sql.program import Statement, run
from authstore.contracts.errors import BackendError
from authstore.registry import require_module

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["SyncPostgresRunner", "connect_kwargs"]

T = TypeVar("T")
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing psycopg here


def connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """psycopg's connection parameters; the password travels as a keyword, never in a
    conninfo string a driver could echo."""
    statement_ms = max(1, round(settings.timeout * 1000))
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": max(1, math.ceil(settings.connect_timeout)),
        "application_name": settings.application_name,
        # The server cancels a statement (a lock wait included) after `timeout`; the
        # isolation level is the one the operations' reasoning assumes.
        "options": f"-c statement_timeout={statement_ms} "
        "-c default_transaction_isolation=read\\ committed",
        # Unacknowledged writes to a vanished host fail after `timeout`, not minutes.
        "tcp_user_timeout": statement_ms,
        **dict(settings.ssl),
    }
    if settings.hosts:
        kwargs["host"] = ",".join(host for host, _ in settings.hosts)
        if any(port is not None for _, port in settings.hosts):
            kwargs["port"] = ",".join(
                "" if port is None else str(port) for _, port in settings.hosts
            )
    if settings.target_session_attrs is not None:
        kwargs["target_session_attrs"] = settings.target_session_attrs
    kwargs.update(settings.credentials("dbname"))
    return kwargs


class _Lease:
    """The connection one operation runs on: taken at its first statement (so bad
    arguments never touch the server) and given back once, when it ends."""

    __slots__ = ("connection", "cursor", "hot", "lost", "restore_autocommit", "runner")

    def __init__(self, runner: SyncPostgresRunner) -> None:
        self.runner = runner
        self.connection: psycopg.Connection[Any] | None = None
        self.cursor: psycopg.Cursor[Any] | None = None
        self.hot = False
        self.restore_autocommit = False
        self.lost = False
        """The connection itself failed (psycopg may not have seen it close yet)."""

    def execute(self, statement: Statement) -> Any:
        runner = self.runner
        cursor = self.cursor or runner._take(self)
        watchdog = runner.watchdog
        in_time = True
        try:
            assert self.connection is not None
            # psycopg waits for an answer with no client-side limit: a frozen server
            # would hold this thread for as long as it stays frozen.
            watchdog.arm(self, runner.statement_deadline, self.connection.pgconn.socket)
            try:
                cursor.execute(statement.text, statement.args)
                rows = cursor.fetchall() if statement.fetch in ROWS else []
            finally:
                in_time = watchdog.disarm(self)
            if not in_time:
                self.lost = True  # answered at the last moment, but its socket is gone
            return statement.result(rows, cursor.rowcount)
        except runner.driver_errors as error:
            if not in_time:
                self.lost = True
                raise runner._no_answer(error) from error
            self.lost = runner._is_lost(error)
            raise runner._translate(error) from error


class SyncPostgresRunner(PostgresRunnerBase):
    """Thread-safe: each operation has a connection to itself (the hot one, a pooled
    one, or the caller's single connection under a lock)."""

    def __init__(self, settings: PostgresSettings, *, auto_migrate: bool = True) -> None:
        driver = require_module("psycopg", "PostgreSQL", "postgres")
        pool_module = require_module("psycopg_pool", "PostgreSQL", "postgres")
        # Raw cursors take the server's own $1 placeholders: psycopg neither parses nor
        # rewrites the statement text (it re-parsed every statement past its query cache's
        # 4,096 characters and 50 parameters, the rate limiters among them), and a
        # parameter used several times is sent once.
        super().__init__(settings, "numeric", auto_migrate=auto_migrate)
        self._psycopg = driver
        self._pool_module = pool_module
        # the DB-API Warning is raised, not warned: an error like the rest
        self.driver_errors: tuple[type[BaseException], ...] = (driver.Error, driver.Warning)
        self._unreachable = (driver.OperationalError, OSError, TimeoutError)
        self._lost = (driver.OperationalError,)  # no answer at all
        self.watchdog = WATCHDOG
        self.statement_deadline = settings.timeout + watchdog_margin(settings.timeout)
        """Seconds a statement may wait for its answer: the server's statement_timeout
        (``timeout``) reports a slow statement first; past this, the server is not
        running (frozen) or unreachable, and the watchdog cuts the connection."""
        self._health = PoolHealth(tracked=self.owns_client)
        self._pool_lock = threading.Lock()
        self._hot: psycopg.Connection[Any] | None = None
        self._hot_cursor: psycopg.Cursor[Any] | None = None
        self._hot_lock = threading.Lock()
        """Held by the operation using the hot connection; changes to it happen under it."""
        self._pool: psycopg_pool.ConnectionPool[Any] | None
        self._connection: psycopg.Connection[Any] | None
        self._connection_lock: threading.Lock | None
        self._pool, self._connection, self._connection_lock = self._client(
            pool_module.ConnectionPool,
            driver.Connection,
            "a psycopg_pool.ConnectionPool or a psycopg.Connection",
            threading.Lock,
        )

    @property
    def pool(self) -> psycopg_pool.ConnectionPool[Any] | None:
        """The pool in use, None before first use or with a single connection."""
        return self._pool

    def run(self, op: Op[T]) -> T:
        lease = _Lease(self)
        try:
            return run(op, self.dialect if self._prepared else None, self._program, lease.execute)
        finally:
            if lease.connection is not None:
                self._give_back(lease)

    # --- connections ------------------------------------------------------------------

    def _take(self, lease: _Lease) -> psycopg.Cursor[Any]:
        self._check_open()
        hot = self._take_hot(lease)
        if hot is not None:
            return hot
        if self._connection is not None:
            connection = self._take_single()
        else:
            with self._pool_lock:
                self._waiting += 1
            try:
                # Again, now that we count as waiting: the hot operation may have ended
                # after our first look, seeing no one waiting (see _give_back).
                hot = self._take_hot(lease)
                if hot is not None:
                    return hot
                connection = self._take_pooled()
            finally:
                with self._pool_lock:
                    self._waiting -= 1
        lease.connection = connection
        if self.owns_client and self._hot is None and self._hot_lock.acquire(blocking=False):
            if self._hot is None:
                self._hot, self._hot_since, lease.hot = connection, time.monotonic(), True
                self._hot_cursor = self._cursor(connection)
            else:
                self._hot_lock.release()
        lease.cursor = self._hot_cursor if lease.hot else self._cursor(connection)
        if not connection.autocommit:
            # A caller's connection: autocommit for this operation only (psycopg would
            # otherwise open a transaction, one more round trip, and leave it open).
            try:
                connection.autocommit = True
            except self.driver_errors as error:
                self._give_back(lease)
                raise self._translate(error) from error
            lease.restore_autocommit = True
        assert lease.cursor is not None
        return lease.cursor

    def _cursor(self, connection: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        """A raw cursor (the dialect's $1 placeholders) returning tuples, whatever row or
        cursor factory a caller's connection was given."""
        cursor: psycopg.Cursor[Any] = self._psycopg.RawCursor(
            connection, row_factory=self._psycopg.rows.tuple_row
        )
        return cursor

    def _take_hot(self, lease: _Lease) -> psycopg.Cursor[Any] | None:
        """The hot connection's cursor if it is free (never waits), else None."""
        if self._hot is None or not self._hot_lock.acquire(blocking=False):
            return None
        if self._hot is None:
            self._hot_lock.release()
            return None
        lease.connection, lease.cursor, lease.hot = self._hot, self._hot_cursor, True
        return self._hot_cursor

    def _take_single(self) -> psycopg.Connection[Any]:
        assert self._connection is not None and self._connection_lock is not None
        if not self._connection_lock.acquire(timeout=self.settings.timeout):
            raise self._error(
                TimeoutError(f"the connection stayed busy for {self.settings.timeout:g} s"),
                unavailable=True,
            )
        return self._connection

    def _take_pooled(self) -> psycopg.Connection[Any]:
        pool = self._pool or self._open_pool()
        timeout = self.settings.timeout
        looks = self._health.looks(timeout)
        timed_out: BaseException | None = None
        if not self._health.wait_checked(timeout):
            raise self._error(
                TimeoutError(f"the pool check after a lost connection took over {timeout:g} s"),
                unavailable=True,
            )
        for wait, failure in looks:
            try:
                connection: psycopg.Connection[Any] = pool.getconn(timeout=wait)
                return connection
            except self._pool_module.PoolTimeout as error:
                if failure is not None:
                    raise self._error(failure, unavailable=True) from failure
                timed_out = error
            except self.driver_errors as error:
                raise self._error(error, unavailable=True) from error
        busy = TimeoutError(
            f"no pooled connection free within {timeout:g} s (pool_size={pool.max_size})"
        )
        raise self._error(busy, unavailable=True) from timed_out

    def _open_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._pool_lock:
            self._check_open()
            if self._pool is None:
                settings = self.settings
                pool = self._pool_module.ConnectionPool(
                    connection_class=tracked_connection(self._psycopg.Connection, self._health),
                    kwargs=connect_kwargs(settings),
                    min_size=settings.pool_min,
                    max_size=settings.pool_size,
                    timeout=settings.timeout,
                    # Short, so retries after an outage stay frequent: once it gives up,
                    # the next operation starts a fresh attempt.
                    reconnect_timeout=max(10.0, 2 * settings.connect_timeout),
                    name=f"{POOL_PREFIX}{id(self):x}",
                    open=False,
                )
                quiet_pool_connect_failures()
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _give_back(self, lease: _Lease) -> None:
        connection, cursor, lease.connection, lease.cursor = (
            lease.connection,
            lease.cursor,
            None,
            None,
        )
        assert connection is not None
        lost = lease.lost or connection.broken
        if lease.hot:
            idle = connection.pgconn.transaction_status == _IDLE
            if not lost and idle and self._hot_stays():
                self._hot_lock.release()  # kept for the next operation
                # An operation that began waiting for the pool after that look at
                # _waiting may have missed the release: look again, and if one waits
                # (and did not take it itself), hand the connection over through the pool.
                if not self._waiting or not self._hot_lock.acquire(blocking=False):
                    return
                if self._hot is not connection:
                    self._hot_lock.release()
                    return
            self._hot = self._hot_cursor = None
            self._hot_lock.release()
        if cursor is not None:
            with contextlib.suppress(*self.driver_errors):
                cursor.close()
        if lease.restore_autocommit and not connection.closed:
            # on failure, the pool or the caller sees a bad connection as such
            with contextlib.suppress(*self.driver_errors):
                connection.autocommit = False
        if self._connection is not None:
            assert self._connection_lock is not None
            self._connection_lock.release()
            return
        assert self._pool is not None
        if lost:
            connection.close()  # the pool replaces a closed connection
        self._pool.putconn(connection)
        if lost:
            # The server dropped this connection, so probably its idle siblings too (a
            # restart, a failover): test them now rather than fail the next operations.
            # In the background: a check waits on a frozen server as long as it is frozen.
            self._check_pool_soon()

    def _check_pool_soon(self) -> None:
        pool, health = self._pool, self._health
        if pool is None or not health.begin_check():
            return

        def check() -> None:
            try:
                # Only a clean-up: the operation's own error is what counts.
                with contextlib.suppress(Exception):
                    pool.check()
            finally:
                health.end_check()

        threading.Thread(target=check, name="authstore-pool-check", daemon=True).start()

    # --- errors -----------------------------------------------------------------------

    def _no_answer(self, error: BaseException) -> BackendError:
        timeout = self.settings.timeout
        late = TimeoutError(
            f"no answer within {timeout:g} s (timeout={timeout:g}): the server is frozen, "
            f"overloaded or unreachable; the connection was closed ({error})"
        )
        return self._error(late, unavailable=True)

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            pool = self._pool
        if self._hot_lock.acquire(blocking=False):
            # a busy hot connection goes back when its operation ends
            hot, self._hot, self._hot_cursor = self._hot, None, None
            self._hot_lock.release()
            if hot is not None and pool is not None:
                pool.putconn(hot)
        if pool is not None and self.owns_client:
            pool.close(timeout=self.settings.timeout)
