"""The async PostgreSQL runner: asyncpg over its own pool, created inside the running loop.

asyncpg has no implicit transactions, so a single-statement operation is one
round trip; an operation that yields Begin holds one connection for its transaction.

On the connections of its own pool the runner prepares each statement once and runs it
through asyncpg's protocol directly (``_Prepared``): the same Bind/Execute messages as
``Connection.fetch``, without the five Python frames and the statement-cache lookup
that surround them there (a fifth of a cache get's client instructions).

Each operation is bounded as a whole by the runner's ``Deadlines`` (one event-loop
timer for every operation in flight), not by asyncpg's per-statement timeout: that
one schedules and cancels a timer handle for every statement, which cost as much as
the rest of the runner's work, and bounded each statement of a transaction, not the
operation. A statement the deadline interrupts is cancelled by asyncpg as its own
timeout would; the connection is then dropped (the server may be gone), and the
operation fails with ``BackendUnavailableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from authstore.adapters.common.deadlines import Deadlines
from authstore.adapters.common.ops import Op
from authstore.adapters.postgres.runner import HOT_TURNOVER, PostgresRunnerBase
from authstore.adapters.postgres.settings import PostgresSettings
from authstore.adapters.sql.program import Statement, run_async
from authstore.contracts.errors import BackendError, BackendUnavailableError
from authstore.registry import require_module

if TYPE_CHECKING:
    from asyncpg.connection import Connection
    from asyncpg.pool import Pool

__all__ = ["AsyncPostgresRunner", "connect_kwargs"]

T = TypeVar("T")


def connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """asyncpg's connection parameters; the password travels as a keyword, and a DSN
    (only for TLS files, which asyncpg reads nowhere else) never holds it.

    No ``command_timeout``: the runner's deadline bounds each operation (see the module
    docstring), and a connection given back after an interrupted statement waits at most
    the timeout for asyncpg's cancellation (``_release``)."""
    kwargs: dict[str, Any] = {
        "timeout": settings.connect_timeout,
        "server_settings": {
            "application_name": settings.application_name,
            "default_transaction_isolation": "read committed",
        },
    }
    if settings.hosts:
        kwargs["host"] = [host for host, _ in settings.hosts]
        kwargs["port"] = [5432 if port is None else port for _, port in settings.hosts]
    if settings.target_session_attrs is not None:
        kwargs["target_session_attrs"] = settings.target_session_attrs
    kwargs.update(settings.credentials("database"))
    if settings.ssl:
        kwargs["dsn"] = "postgresql://?" + urlencode(settings.ssl)
    return kwargs


async def _no_reset(connection: Any) -> None:
    """Our operations leave no session state (transaction-scoped locks only; asyncpg
    rolls back an open transaction itself), so skip the default reset query: it would
    cost a round trip on every release."""


def _rowcount(status: str | bytes) -> int:
    """``DELETE 3``, ``INSERT 0 1``, ``UPDATE 0``: the last word (``Connection.execute``
    gives the status as text, the protocol as bytes)."""
    return int(status.split()[-1])


PREPARED_PER_CONNECTION = 256
"""Statements kept prepared on one connection at most; past it they all go (asyncpg
deallocates them on the server at the connection's next prepare) and are prepared again
as they are used. An application's stores use a few dozen."""


class _Prepared:
    """The statements prepared on one connection of the runner's own pool, by text.

    ``Connection.fetch`` finds the statement in asyncpg's statement cache and calls the
    protocol's ``bind_execute`` through five Python frames (guards, the query-logger
    check, the retry wrapper); here a dict lookup finds the statement's state, and the
    call goes to ``bind_execute`` directly. The state belongs to a ``PreparedStatement``
    (asyncpg's public API), kept here: it deallocates the statement when collected.

    What ``Connection.fetch`` does around the call and this does not: custom type codecs'
    reloading (the tables use built-in types only), and re-preparing a statement
    the server says is stale after a schema change, which ``_Lease.execute`` does by
    leaving it to ``Connection.fetch`` (``forget``). A connection with query loggers (a
    user debugging) is left to ``Connection.fetch`` too, which calls them."""

    __slots__ = ("protocol", "statements", "states")

    def __init__(self, driver: Any) -> None:
        self.protocol: Any = driver._protocol
        self.states: dict[str, Any] = {}
        """Statement text -> its ``PreparedStatementState`` (what ``bind_execute`` takes)."""
        self.statements: list[Any] = []
        """The ``PreparedStatement`` objects that own those states."""

    async def prepare(self, driver: Any, text: str) -> Any:
        if len(self.states) >= PREPARED_PER_CONNECTION:
            self.forget()
        statement = await driver.prepare(text)
        self.statements.append(statement)
        state = self.states[text] = statement._state
        return state

    def forget(self) -> None:
        self.states.clear()
        self.statements.clear()


class _Lease:
    """The connection one operation runs on: taken at its first statement (so bad
    arguments never touch the server) and given back once, when it ends."""

    __slots__ = (
        "broken",
        "connection",
        "driver",
        "hot",
        "interrupted",
        "lost",
        "prepared",
        "runner",
    )

    def __init__(self, runner: AsyncPostgresRunner) -> None:
        self.runner = runner
        self.connection: Any = None
        """What was taken: a pool's connection proxy, or the caller's connection."""
        self.driver: Any = None
        """The asyncpg connection behind it, which the statements go to directly (a
        pool's proxy forwards every call through a Python wrapper)."""
        self.prepared: _Prepared | None = None
        """Its prepared statements, on a connection of the runner's own pool."""
        self.hot = False
        self.broken = False
        """A statement failed for want of the server (timed out, cancelled, lost)."""
        self.lost = False
        """The connection itself failed: asyncpg may not know yet."""
        self.interrupted = False
        """A statement was cancelled midway (the deadline, or the caller's task): asyncpg
        is cancelling it on the server, and the connection takes no other statement."""

    async def execute(self, statement: Statement) -> Any:
        driver = self.driver
        if self.interrupted:
            # The rollback after an interruption: the server rolls back when the
            # connection is reset or closed, and asyncpg would first wait for its
            # cancellation (a frozen server never answers it); or no connection was
            # taken, and there is nothing to roll back.
            raise BackendUnavailableError("the operation was interrupted")
        if driver is None:
            driver = self.runner._take_hot(self) or await self._take()
        prepared = self.prepared
        try:
            fetch = statement.fetch  # Statement.result's shaping, inlined: once per statement
            if prepared is not None and statement.args and not driver._query_loggers:
                state = prepared.states.get(statement.text)
                if state is None:
                    state = await prepared.prepare(driver, statement.text)
                rows, status, _ = await prepared.protocol.bind_execute(
                    state, statement.args, "", 0, True, None
                )
                if fetch == "one":
                    return rows[0] if rows else None
                if fetch == "all":
                    return rows
                return _rowcount(status) if fetch == "rowcount" else None
            if fetch == "one":
                rows = await driver.fetch(statement.text, *statement.args)
                return rows[0] if rows else None
            if fetch == "all":
                return await driver.fetch(statement.text, *statement.args)
            status = await driver.execute(statement.text, *statement.args)
            return _rowcount(status) if fetch == "rowcount" else None
        except BaseException as error:
            runner = self.runner
            if prepared is not None and isinstance(error, runner._stale_statement):
                # A schema change made a prepared statement stale: the server refused it
                # before running it. Every connection prepares again; outside a
                # transaction this statement runs again now (asyncpg's own path, which
                # prepares it), inside one the error goes on (the transaction is aborted),
                # as Connection.fetch does with its own cache.
                runner._forget_prepared()
                if not driver.is_in_transaction():
                    self.prepared = None
                    return await self.execute(statement)
            if not isinstance(error, runner.driver_errors):
                self.broken = True
                self.interrupted = not isinstance(error, Exception)  # cancelled
                raise
            translated = runner._translate(error)
            self.broken = isinstance(translated, BackendUnavailableError)
            self.lost = runner._is_lost(error)
            raise translated from error

    async def _take(self) -> Any:
        try:
            return await self.runner._take(self)
        except BaseException as error:
            self.interrupted = not isinstance(error, Exception)  # cancelled while waiting
            raise


class AsyncPostgresRunner(PostgresRunnerBase):
    """Concurrent operations each take their own connection (the hot one, a pooled one,
    or the caller's single connection under a lock)."""

    def __init__(self, settings: PostgresSettings, *, auto_migrate: bool = True) -> None:
        asyncpg = require_module("asyncpg", "PostgreSQL async", "postgres")
        super().__init__(settings, "numeric", auto_migrate=auto_migrate)
        self._asyncpg = asyncpg
        self.driver_errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            asyncpg.pgproto.pgproto.BufferError,  # a malformed message from the server
            OSError,
            TimeoutError,
        )
        exceptions = asyncpg.exceptions
        self._misconfigured = (exceptions.ClientConfigurationError,)
        self._unreachable = (OSError, TimeoutError, asyncpg.InterfaceError)
        self._unreachable += (exceptions.InternalClientError,)
        self._lost = (asyncpg.InterfaceError, exceptions.InternalClientError, OSError)
        self._not_connection = (exceptions.DataError, exceptions.ClientConfigurationError)
        self._stale_statement = exceptions.InvalidCachedStatementError
        self._prepared_on: dict[Any, _Prepared] = {}
        """Each connection of the runner's own pool -> its prepared statements (entries of
        closed connections go when a new connection comes: ``_prepared_for``)."""
        self._hot_prepared: _Prepared | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines = Deadlines(settings.timeout)
        self._starting: asyncio.Task[Pool[Any]] | None = None
        self._hot: Any = None
        """The hot connection as taken from the pool (its proxy)."""
        self._hot_driver: Any = None
        """The asyncpg connection behind it."""
        self._hot_busy = False
        self._pool: Pool[Any] | None
        self._connection: Connection | None
        self._connection_lock: asyncio.Lock | None
        self._pool, self._connection, self._connection_lock = self._client(
            asyncpg.Pool,
            asyncpg.Connection,
            "an asyncpg.Pool or an asyncpg.Connection",
            asyncio.Lock,
        )

    @property
    def pool(self) -> Pool[Any] | None:
        """The pool in use, None before first use or with a single connection."""
        return self._pool

    async def run(self, op: Op[T]) -> T:
        deadlines = self._deadlines
        started = deadlines.start()
        lease = _Lease(self)
        try:
            try:
                return await run_async(
                    op, self.dialect if self._prepared else None, self._program, lease.execute
                )
            finally:
                if lease.connection is not None and not self._keep_hot(lease):
                    if lease.interrupted and deadlines.expired(started):
                        # as a timeout always was: the server may be gone (frozen,
                        # unreachable), so no waiting for asyncpg's cancellation
                        lease.lost = True
                    await self._give_back(lease)
        except asyncio.CancelledError as error:
            if deadlines.finish(started, error):
                raise self._late() from None
            raise
        finally:
            deadlines.finish(started, None)

    def _late(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            self._message(TimeoutError(f"no answer within {self.settings.timeout:g} s"))
        )

    # --- connections ------------------------------------------------------------------

    def _take_hot(self, lease: _Lease) -> Any:
        """The hot connection if it is free and sound, else None: no await, no pool."""
        driver = self._hot_driver
        if (
            driver is None
            or self._hot_busy
            or self._closed
            or self._loop is not self._deadlines.loop
            or driver.is_closed()
        ):
            return None
        self._hot_busy = lease.hot = True
        lease.connection, lease.driver, lease.prepared = self._hot, driver, self._hot_prepared
        return driver

    def _keep_hot(self, lease: _Lease) -> bool:
        """After an operation on the hot connection: free it for the next operation, or
        say it must go back to the pool (False)."""
        driver = lease.driver
        if not lease.hot or lease.broken or self._hot_driver is not driver:
            return False
        # A connection closed since is kept all the same: the next operation's _take_hot
        # finds it closed and passes it over, and _take replaces it.
        if driver.is_in_transaction():
            return False
        # _hot_stays, inlined (once per operation)
        if self._waiting or self._closed or time.monotonic() - self._hot_since >= HOT_TURNOVER:
            return False
        self._hot_busy, lease.connection, lease.driver = False, None, None
        return True

    async def _take(self, lease: _Lease) -> Any:
        """A connection for ``lease`` (the wait is bounded by the operation's deadline);
        the asyncpg connection behind it."""
        self._check_open()
        hot = self._hot
        if hot is not None and not self._hot_busy and self._loop is asyncio.get_running_loop():
            # the server dropped it (_take_hot passed it over): replace it
            self._hot = self._hot_driver = None
            await self._release(hot)
        try:
            if self._connection is not None:
                assert self._connection_lock is not None
                await self._connection_lock.acquire()
                lease.connection = lease.driver = self._connection
                return self._connection
            # Counted as waiting before any await: the hot operation, ending meanwhile,
            # then hands its connection to the pool for us.
            self._waiting += 1
            try:
                pool = await self._ready_pool()
                lease.connection = await pool.acquire()
            finally:
                self._waiting -= 1
        except self.driver_errors as error:
            raise self._translate(error, connecting=True) from error
        # The asyncpg connection behind the pool's proxy: the statements skip the
        # proxy's forwarding wrapper (the proxy is what goes back to the pool).
        lease.driver = driver = lease.connection._con
        if self.owns_client:
            lease.prepared = self._prepared_for(driver)
            if self._hot is None and not self._closed:
                self._hot, self._hot_driver = lease.connection, driver
                self._hot_prepared = lease.prepared
                self._hot_busy = lease.hot = True
                self._hot_since = time.monotonic()
        return driver

    def _prepared_for(self, driver: Any) -> _Prepared:
        prepared = self._prepared_on.get(driver)
        if prepared is None:
            # a new connection: forget the closed ones (the pool replaced them)
            self._prepared_on = {
                known: kept for known, kept in self._prepared_on.items() if not known.is_closed()
            }
            prepared = self._prepared_on[driver] = _Prepared(driver)
        return prepared

    def _forget_prepared(self) -> None:
        """After a schema change (a stale statement): every connection prepares again."""
        for prepared in self._prepared_on.values():
            prepared.forget()

    async def _give_back(self, lease: _Lease) -> None:
        connection, lease.connection, lease.driver = lease.connection, None, None
        if self._connection is not None:
            assert self._connection_lock is not None
            if lease.lost:
                with contextlib.suppress(*self.driver_errors):
                    connection.terminate()
            self._connection_lock.release()
            return
        if lease.lost:
            # asyncpg may not know yet: a connection whose server went away while it
            # was idle still says it is open, and fails its next two operations.
            with contextlib.suppress(*self.driver_errors):
                connection.terminate()
            await self._expire()
        if lease.hot:
            # not kept (see _keep_hot): an operation waits for the pool, or it needs a reset
            self._hot_busy = False
            if self._hot is connection:
                self._hot = self._hot_driver = None
        await self._release(connection, interrupted=lease.interrupted)

    async def _expire(self) -> None:
        """The server dropped a connection, so probably its idle siblings too (a restart,
        a failover): the pool replaces them on their next use instead of failing it."""
        if not self.owns_client or self._pool is None:
            return
        hot = self._hot
        if hot is not None and not self._hot_busy:
            self._hot = self._hot_driver = None
            await self._release(hot)
        with contextlib.suppress(*self.driver_errors):
            await self._pool.expire_connections()

    async def _release(self, connection: Any, *, interrupted: bool = False) -> None:
        """Back to the pool, which resets (rolls back) a connection, or terminates and
        replaces one it cannot reset. After an interrupted statement the pool first
        waits for asyncpg's cancellation: at most the timeout, then it terminates the
        connection (and the cancellation with it)."""
        assert self._pool is not None
        timeout = self.settings.timeout if interrupted else None
        with contextlib.suppress(*self.driver_errors):
            await self._pool.release(connection, timeout=timeout)

    async def _ready_pool(self) -> Pool[Any]:
        """The pool of the running loop, created on first use (asyncpg pools belong to
        one loop; a store whose loop has closed starts over in the new one)."""
        if self.settings.client is not None:
            assert self._pool is not None
            return self._pool
        loop = asyncio.get_running_loop()
        starting = self._starting
        if starting is None or self._loop is not loop:
            if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
                raise BackendError(
                    "this async PostgreSQL store is in use by another event loop; "
                    "open one store per loop"
                )
            if self._pool is not None and self.owns_client:
                _abandon(self._pool)
            self._loop, self._pool, self._hot, self._hot_busy = loop, None, None, False
            self._hot_driver = None
            starting = self._starting = loop.create_task(self._start_pool())
        if not starting.done():
            await asyncio.shield(starting)
        return starting.result()

    async def _start_pool(self) -> Pool[Any]:
        settings = self.settings
        pool: Pool[Any] = self._asyncpg.create_pool(
            min_size=settings.pool_min,
            max_size=settings.pool_size,
            reset=_no_reset,
            **connect_kwargs(settings),
        )
        try:
            await pool
        except BaseException as error:
            self._starting = None  # the next operation tries again
            pool.terminate()
            if isinstance(error, self.driver_errors):
                raise self._translate(error, connecting=True) from error
            raise
        if self._closed:
            pool.terminate()
            self._check_open()
        self._pool = pool
        return pool

    async def close(self) -> None:
        self._closed = True
        hot, self._hot, self._hot_driver = self._hot, None, None
        self._prepared_on, self._hot_prepared = {}, None
        starting, pool = self._starting, self._pool
        if not self.owns_client or pool is None:
            if starting is not None and not starting.done():
                starting.cancel()
            return
        if self._loop is not asyncio.get_running_loop():
            _abandon(pool)  # its loop has ended: nothing can be awaited there any more
            return
        if hot is not None and not self._hot_busy:
            await self._release(hot)  # a busy one goes back when its operation ends
        try:
            await asyncio.wait_for(pool.close(), self.settings.timeout)
        except self.driver_errors:
            pool.terminate()


def _abandon(pool: Pool[Any]) -> None:
    """Close the sockets of a pool whose event loop is gone (asyncpg may still try to
    schedule callbacks there, which a closed loop refuses)."""
    with contextlib.suppress(Exception):
        pool.terminate()
