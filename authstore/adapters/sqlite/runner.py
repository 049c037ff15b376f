"""What the sync and async SQLite runners share: setup, error mapping, state.

The two runners differ only in how they open a connection and run one statement;
how an operation becomes statements and transactions is ``sql.program``'s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Query
from authstore.adapters.sql.runner import SqlRunnerBase
from authstore.adapters.sql.schema import migrate
from authstore.adapters.sqlite.dialect import SQLiteDialect
from authstore.adapters.sqlite.settings import MEMORY, SQLiteSettings
from authstore.contracts.errors import BackendError, BackendUnavailableError, ConfigurationError

__all__ = ["SQLiteRunnerBase", "translate_error"]


class _Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...


C = TypeVar("C", bound=_Connection)
L = TypeVar("L")


class _SharedLocks:
    """One lock per caller-owned connection, shared by every store it was given to.

    Stores that share a connection must not interleave statements: another store's
    write inside this store's transaction would vanish with its rollback.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, tuple[object, Any, int]] = {}  # id -> connection, lock, users

    def take(self, connection: object, new_lock: Callable[[], L]) -> L:
        with self._guard:
            _, lock, users = self._locks.get(id(connection), (connection, None, 0))
            if lock is None:
                lock = new_lock()
            self._locks[id(connection)] = (connection, lock, users + 1)
            return cast(L, lock)

    def give_back(self, connection: object) -> None:
        with self._guard:
            _, lock, users = self._locks.pop(id(connection), (None, None, 0))
            if users > 1:
                self._locks[id(connection)] = (connection, lock, users - 1)


_SHARED_LOCKS = _SharedLocks()

# Primary result codes (the low byte of extended ones) that mean "not reachable now".
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN = 5, 6, 14
_UNAVAILABLE = {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN}


SQLITE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sqlite3.Warning)
"""What sqlite3 (and aiosqlite, which raises sqlite3's own) raises: the DB-API
``Warning`` (e.g. two statements in one execute) is an error too, not a warning."""


def translate_error(error: BaseException, *, connecting: bool = False) -> BackendError:
    """A sqlite3 error as authstore's: locked, busy or unopenable means unavailable."""
    code = getattr(error, "sqlite_errorcode", None)
    locked = "database is locked" in str(error)
    if connecting or locked or (isinstance(code, int) and code & 0xFF in _UNAVAILABLE):
        return BackendUnavailableError(f"sqlite: {error}")
    return BackendError(f"sqlite: {error}")


class SQLiteRunnerBase(SqlRunnerBase[SQLiteSettings, SQLiteDialect], Generic[C]):
    """A runner connects on first use, sets the connection up and migrates the schema."""

    database = "SQLite"

    def __init__(
        self,
        settings: SQLiteSettings,
        connection_type: type,
        connection_name: str,
        *,
        auto_migrate: bool = True,
    ) -> None:
        # prepared on every new connection, migrating or not: see setup
        super().__init__(settings, SQLiteDialect(), auto_migrate=True)
        self._auto_migrate = auto_migrate
        self._connection: C | None = None
        if settings.connection is not None:
            self._check_connection(settings.connection, connection_type, connection_name)
            self._connection = settings.connection

    @property
    def connection(self) -> C | None:
        """The open connection, None before first use (for tracing and diagnostics)."""
        return self._connection

    def _check_connection(self, connection: object, expected: type, what: str) -> None:
        if not isinstance(connection, expected):
            raise ConfigurationError(f"connection must be {what}, not {type(connection).__name__}")
        if getattr(connection, "isolation_level", None) is not None:
            raise ConfigurationError(
                "connection must be opened with isolation_level=None: authstore begins and "
                "commits its own transactions"
            )

    def setup(self) -> Op[None]:
        if self.owns_client:
            # WAL: readers never wait for the writer; NORMAL: no fsync per commit in WAL,
            # still crash-safe (a power loss may drop the last commits, never corrupt).
            if self.settings.database != MEMORY:
                yield from self._switch_to_wal()
            yield Query("PRAGMA synchronous = NORMAL")
        if self._auto_migrate:
            yield from migrate(self.dialect, self.settings.tables)

    def _switch_to_wal(self) -> Op[None]:
        """Connections opening a fresh file race to switch it to WAL, and SQLite answers the
        loser 'database is locked' at once instead of waiting: retry within the busy timeout.

        The driver error is thrown back in here (the runner drives this generator), so the
        retry is written once for both runners; the short sleep only happens in that race.
        """
        deadline = time.monotonic() + self.settings.timeout
        while True:
            mode = yield Query("PRAGMA journal_mode", fetch="one")
            if mode is not None and str(mode[0]).lower() == "wal":
                return
            try:
                yield Query("PRAGMA journal_mode = WAL", fetch="all")
                return
            except BackendUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _take_broken(self) -> C | None:
        """After a failure: a connection still inside a transaction (its rollback failed)
        is never reused; returns it for the runner to close."""
        connection = self._connection
        if connection is None or not self.owns_client or not connection.in_transaction:
            return None
        self._connection, self._prepared = None, False
        return connection

    def _new_lock(self, new_lock: Callable[[], L]) -> L:
        """The lock serializing this runner's operations (shared for a given connection)."""
        if self.owns_client:
            return new_lock()
        return _SHARED_LOCKS.take(self.settings.connection, new_lock)

    def _take_for_close(self) -> C | None:
        """Mark the runner closed; returns the connection if it is the runner's to close."""
        if not self._closed and not self.owns_client:
            _SHARED_LOCKS.give_back(self.settings.connection)
        self._closed = True
        connection, self._connection = self._connection, None
        return connection if self.owns_client else None
