"""The async PostgreSQL runner: asyncpg over its own pool, created inside the running loop.

asyncpg has no implicit transactions, so a single-statement operation is one
round trip (its prepared statement is cached per connection); an operation that
yields Begin holds one connection for its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from authstore.adapters.common.ops import Op
from authstore.adapters.postgres.runner import ROWS, PostgresRunnerBase
from authstore.adapters.postgres.settings import PostgresSettings
from authstore.adapters.sql.program import Statement, drive_async
from authstore.contracts.errors import BackendError, BackendUnavailableError
from authstore.registry import require_module

if TYPE_CHECKING:
    from asyncpg.connection import Connection
    from asyncpg.pool import Pool

__all__ = ["AsyncPostgresRunner", "connect_kwargs"]

T = TypeVar("T")


def connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """asyncpg's connection parameters; the password travels as a keyword, and a DSN
    (only for TLS files, which asyncpg reads nowhere else) never holds it."""
    kwargs: dict[str, Any] = {
        "timeout": settings.connect_timeout,
        "command_timeout": settings.timeout,
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


def _rowcount(status: str) -> int:
    """``DELETE 3``, ``INSERT 0 1``, ``UPDATE 0``: the last word."""
    return int(status.rpartition(" ")[2])


class _Lease:
    """The connection one operation runs on: taken at its first statement (so bad
    arguments never touch the server) and given back once, when it ends."""

    __slots__ = ("broken", "connection", "hot", "lost", "runner")

    def __init__(self, runner: AsyncPostgresRunner) -> None:
        self.runner = runner
        self.connection: Any = None
        self.hot = False
        self.broken = False
        """A statement failed for want of the server (timed out, cancelled, lost)."""
        self.lost = False
        """The connection itself failed: asyncpg may not know yet."""

    async def execute(self, statement: Statement) -> Any:
        runner = self.runner
        connection = self.connection or runner._take_hot(self) or await runner._take(self)
        timeout = runner.settings.timeout
        try:
            if statement.fetch in ROWS:
                rows = await connection.fetch(statement.text, *statement.args, timeout=timeout)
                return statement.result(rows, 0)
            status = await connection.execute(statement.text, *statement.args, timeout=timeout)
            return _rowcount(status) if statement.fetch == "rowcount" else None
        except runner.driver_errors as error:
            translated = runner._translate(error)
            self.broken = isinstance(translated, BackendUnavailableError)
            self.lost = runner._is_lost(error)
            raise translated from error
        except BaseException:
            # Cancelled mid-statement: asyncpg is still cancelling it on the server, and
            # only the pool's release waits for that to finish.
            self.broken = True
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[Pool[Any]] | None = None
        self._hot: Any = None
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
        lease = _Lease(self)
        try:
            return await drive_async(self._program(op), lease.execute)
        finally:
            if lease.connection is not None and not self._keep_hot(lease):
                await self._give_back(lease)

    # --- connections ------------------------------------------------------------------

    def _take_hot(self, lease: _Lease) -> Any:
        """The hot connection if it is free and sound, else None: no await, no pool."""
        hot = self._hot
        if (
            hot is None
            or self._hot_busy
            or self._closed
            or self._loop is not asyncio.get_running_loop()
            or self._ask(hot.is_closed)
        ):
            return None
        self._hot_busy = lease.hot = True
        lease.connection = hot
        return hot

    def _keep_hot(self, lease: _Lease) -> bool:
        """After an operation on the hot connection: free it for the next operation, or
        say it must go back to the pool (False)."""
        connection = lease.connection
        if not lease.hot or lease.broken or self._hot is not connection:
            return False
        if self._ask(connection.is_in_transaction) or not self._hot_stays():
            return False
        self._hot_busy, lease.connection = False, None
        return True

    async def _take(self, lease: _Lease) -> Any:
        self._check_open()
        hot = self._hot
        if hot is not None and not self._hot_busy and self._loop is asyncio.get_running_loop():
            self._hot = None  # the server dropped it (_take_hot passed it over): replace it
            await self._release(hot)
        timeout = self.settings.timeout
        try:
            if self._connection is not None:
                assert self._connection_lock is not None
                async with asyncio.timeout(timeout):
                    await self._connection_lock.acquire()
                lease.connection = self._connection
                return lease.connection
            # Counted as waiting before any await: the hot operation, ending meanwhile,
            # then hands its connection to the pool for us.
            self._waiting += 1
            try:
                pool = await self._ready_pool()
                # asyncio.timeout, not acquire(timeout=): no extra task per operation.
                async with asyncio.timeout(timeout):
                    lease.connection = await pool.acquire()
            finally:
                self._waiting -= 1
        except self.driver_errors as error:
            raise self._translate(error, connecting=True) from error
        if self._hot is None and self.owns_client and not self._closed:
            self._hot, self._hot_busy, lease.hot = lease.connection, True, True
            self._hot_since = time.monotonic()
        return lease.connection

    async def _give_back(self, lease: _Lease) -> None:
        connection, lease.connection = lease.connection, None
        if self._connection is not None:
            assert self._connection_lock is not None
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
                self._hot = None
        await self._release(connection)

    async def _expire(self) -> None:
        """The server dropped a connection, so probably its idle siblings too (a restart,
        a failover): the pool replaces them on their next use instead of failing it."""
        if not self.owns_client or self._pool is None:
            return
        hot = self._hot
        if hot is not None and not self._hot_busy:
            self._hot = None
            await self._release(hot)
        with contextlib.suppress(*self.driver_errors):
            await self._pool.expire_connections()

    def _ask(self, question: Callable[[], bool]) -> bool:
        """A connection's answer to ``is_closed`` or ``is_in_transaction``; yes when it
        cannot answer: a connection the server dropped may have been handed back to the
        pool by asyncpg already, and its proxy then refuses every call."""
        try:
            return question()
        except self._asyncpg.InterfaceError:
            return True

    async def _release(self, connection: Any) -> None:
        assert self._pool is not None
        # The pool resets (rolls back) a connection, or terminates and replaces one it
        # cannot reset.
        with contextlib.suppress(*self.driver_errors):
            await self._pool.release(connection)

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
        hot, self._hot = self._hot, None
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
