"""The async SQLite runner over aiosqlite; an asyncio lock keeps transactions whole."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.execution import Statement, drive_async
from authstore.adapters.sqlite.runner import SQLiteRunnerBase, translate_error
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.registry import require_module

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["AsyncSQLiteRunner"]

T = TypeVar("T")


# aiosqlite raises the sqlite3 exceptions themselves.
async def _execute(connection: aiosqlite.Connection, statement: Statement) -> Any:
    try:
        async with connection.execute(statement.text, statement.args) as cursor:
            return statement.result(list(await cursor.fetchall()), cursor.rowcount)
    except sqlite3.Error as error:
        raise translate_error(error) from error


async def _close(connection: aiosqlite.Connection) -> None:
    try:
        await connection.close()
    except sqlite3.Error as error:
        raise translate_error(error) from error


class AsyncSQLiteRunner(SQLiteRunnerBase["aiosqlite.Connection"]):
    """One operation at a time per runner: a transaction never interleaves with another."""

    def __init__(self, settings: SQLiteSettings, *, auto_migrate: bool = True) -> None:
        driver = require_module("aiosqlite", "SQLite async", "sqlite")
        super().__init__(
            settings, driver.Connection, "an aiosqlite.Connection", auto_migrate=auto_migrate
        )
        self._connect_driver = driver.connect
        self._lock = self._new_lock(asyncio.Lock)

    async def run(self, op: Op[T]) -> T:
        async with self._lock:
            try:
                return await drive_async(self._program(op), self._execute)
            except BaseException:
                broken = self._take_broken()
                if broken is not None:
                    await _close(broken)
                raise

    async def _execute(self, statement: Statement) -> Any:
        return await _execute(self._connection or await self._connect(), statement)

    async def _connect(self) -> aiosqlite.Connection:
        self._check_open()
        try:
            connection: aiosqlite.Connection = await self._connect_driver(
                self.settings.database, timeout=self.settings.timeout, isolation_level=None
            )
        except sqlite3.Error as error:
            raise translate_error(error, connecting=True) from error
        self._connection = connection
        return connection

    async def close(self) -> None:
        async with self._lock:
            connection = self._take_for_close()
            if connection is not None:
                await _close(connection)
