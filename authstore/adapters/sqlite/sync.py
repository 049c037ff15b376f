"""The sync SQLite runner: stdlib sqlite3, one connection shared by threads under a lock."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.program import Statement, run
from authstore.adapters.sqlite.runner import SQLITE_ERRORS, SQLiteRunnerBase, translate_error
from authstore.adapters.sqlite.settings import SQLiteSettings

__all__ = ["SyncSQLiteRunner", "execute"]

T = TypeVar("T")


def execute(
    connection: sqlite3.Connection, statement: Statement, cursor: sqlite3.Cursor | None = None
) -> Any:
    """Run one statement on ``connection``, its errors translated: on a cursor of its
    own, or on ``cursor``, one of ``connection``'s reused from statement to statement
    (the async worker's: making one per statement is 8% of a cheap SELECT).

    Every row is read, which resets the statement: nothing stays open after the call.
    A statement that fails closes its cursor (which resets it, whatever step it failed
    at): the caller of a reused one needs a new one then."""
    text, args, fetch = statement
    try:
        try:
            # connection.execute makes a cursor; cursor.execute returns the cursor
            cursor = (connection if cursor is None else cursor).execute(text, args)
            rows = cursor.fetchall()
        except BaseException:
            if cursor is not None:
                with contextlib.suppress(*SQLITE_ERRORS):
                    cursor.close()  # never raises past the error that got us here
            raise
    except SQLITE_ERRORS as error:
        raise translate_error(error) from error
    if fetch == "one":
        return rows[0] if rows else None
    return statement.result(rows, cursor.rowcount)


def _close(connection: sqlite3.Connection) -> None:
    try:
        connection.close()
    except SQLITE_ERRORS as error:
        raise translate_error(error) from error


class SyncSQLiteRunner(SQLiteRunnerBase[sqlite3.Connection]):
    """Thread-safe: one operation at a time, so a transaction's statements never interleave."""

    def __init__(self, settings: SQLiteSettings, *, auto_migrate: bool = True) -> None:
        super().__init__(
            settings, sqlite3.Connection, "a sqlite3.Connection", auto_migrate=auto_migrate
        )
        self._lock = self._new_lock(threading.Lock)

    def run(self, op: Op[T]) -> T:
        """Through ``program.run``'s fast path (PostgreSQL's too): an operation of one
        SELECT or one UPSERT (most of them) goes straight to ``_execute``, without
        ``statements`` and the driver loop (cache get: 57k to 51k instructions)."""
        with self._lock:
            try:
                return run(
                    op, self.dialect if self._prepared else None, self._program, self._execute
                )
            except BaseException:
                self._recover()
                raise

    def _recover(self) -> None:
        """After a failed operation: close the connection if it is still inside a
        transaction (its rollback failed)."""
        broken = self._take_broken()
        if broken is not None:
            _close(broken)

    def _execute(self, statement: Statement) -> Any:
        """Connects on the first statement, so bad arguments never open a file."""
        return execute(self._connection or self._connect(), statement)

    def _connect(self) -> sqlite3.Connection:
        self._check_open()
        try:
            connection = sqlite3.connect(
                self.settings.database,
                timeout=self.settings.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except SQLITE_ERRORS as error:
            raise translate_error(error, connecting=True) from error
        self._connection = connection
        return connection

    def close(self) -> None:
        with self._lock:
            connection = self._take_for_close()
            if connection is not None:
                _close(connection)
