"""A capped session create that times out or is cancelled leaves no transaction open:
the same user's next create goes through at once.

Another connection holds the database's write lock past the store's timeout, so the
create's ``BEGIN IMMEDIATE`` waits. On a caller's aiosqlite connection a cancelled
caller leaves that BEGIN running on aiosqlite's thread: it begins once the lock is
free, and the ROLLBACK queued behind it must end it (else every later operation on
the connection would run inside a transaction nobody commits).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiosqlite
import pytest

import authstore
from authstore.contracts.errors import BackendUnavailableError


def _hold(db_path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_sync_create_that_times_out_leaves_nothing_open(db_url: str, db_path: Path) -> None:
    with authstore.open_sessions(f"{db_url}?timeout=0.3") as sessions:
        sessions.create("u", ttl=60, max_sessions=2)
        holder = _hold(db_path)
        try:
            with pytest.raises(BackendUnavailableError):
                sessions.create("u", ttl=60, max_sessions=2)
        finally:
            holder.rollback()
            holder.close()
        started = time.monotonic()
        sessions.create("u", ttl=60, max_sessions=2)
        assert time.monotonic() - started < 0.3
        connection = sessions._runner.connection
        assert connection is not None and not connection.in_transaction
        assert sessions.count("u") == 2


@pytest.mark.parametrize("cancelled", [False, True])
def test_an_async_create_that_times_out_or_is_cancelled_leaves_nothing_open(
    db_url: str, db_path: Path, cancelled: bool
) -> None:
    async def scenario() -> None:
        async with authstore.open_async_sessions(f"{db_url}?timeout=0.3") as sessions:
            await sessions.create("u", ttl=60, max_sessions=2)
            holder = _hold(db_path)
            try:
                if cancelled:
                    task = asyncio.ensure_future(sessions.create("u", ttl=60, max_sessions=2))
                    await asyncio.sleep(0.1)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    with pytest.raises(BackendUnavailableError):
                        await sessions.create("u", ttl=60, max_sessions=2)
            finally:
                holder.rollback()
                holder.close()
            await sessions.create("u", ttl=60, max_sessions=2)
            connection = sessions._runner.connection
            assert connection is not None and not connection.in_transaction
            assert await sessions.count("u") == 2

    asyncio.run(scenario())


def test_a_create_cancelled_in_begin_on_a_given_connection_leaves_nothing_open(
    db_path: Path,
) -> None:
    async def scenario() -> None:
        connection = await aiosqlite.connect(db_path, isolation_level=None, timeout=0.5)
        try:
            async with authstore.open_async_sessions(
                "sqlite://", connection=connection
            ) as sessions:
                await sessions.create("u", ttl=60, max_sessions=2)
                holder = _hold(db_path)
                try:
                    task = asyncio.ensure_future(sessions.create("u", ttl=60, max_sessions=2))
                    await asyncio.sleep(0.1)  # waiting in BEGIN IMMEDIATE
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                finally:
                    holder.rollback()
                    holder.close()
                await sessions.create("u", ttl=60, max_sessions=2)
                assert not connection.in_transaction
                assert await sessions.count("u") == 2
        finally:
            await connection.close()

    asyncio.run(scenario())
