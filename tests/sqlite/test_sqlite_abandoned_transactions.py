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
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import authstore
from tests.abandoned import abandon_then_create, cancel_while_waiting


def _hold(db_path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _release(holder: sqlite3.Connection) -> None:
    holder.rollback()
    holder.close()


def _no_transaction_open(sessions: Any) -> None:
    connection = sessions._runner.connection
    assert connection is not None and not connection.in_transaction


@pytest.mark.parametrize("mode", ["sync", "async", "cancelled"])
def test_a_create_that_times_out_or_is_cancelled_leaves_nothing_open(
    db_url: str, db_path: Path, mode: str
) -> None:
    holders: list[sqlite3.Connection] = []
    abandon_then_create(
        f"{db_url}?timeout=0.5",
        mode,
        hold=lambda: holders.append(_hold(db_path)),
        release=lambda: _release(holders.pop()),
        check_store=_no_transaction_open,
    )


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
                try:  # cancelled while waiting in BEGIN IMMEDIATE
                    await cancel_while_waiting(sessions.create("u", ttl=60, max_sessions=2))
                finally:
                    _release(holder)
                await sessions.create("u", ttl=60, max_sessions=2)
                assert not connection.in_transaction
                assert await sessions.count("u") == 2
        finally:
            await connection.close()

    asyncio.run(scenario())
