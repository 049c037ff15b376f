"""Deadlocks on PostgreSQL: a transaction the server aborted as a deadlock's victim
(SQLSTATE 40P01; 40001, a serialization failure, alike) is replayed.

The deadlock is forced with a second connection that holds the token's row and then
asks for the user's advisory lock, which the store's transaction holds. PostgreSQL
aborts the transaction whose deadlock_timeout (1 s) runs out first, the store's: it
waited first. The store replays its transaction and gives the true answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

import authstore
from authstore.contracts.values import hash_token

TOKEN = "deadlock-token-" + "x" * 40


def deadlock(url: str, prefix: str, namespace: str, issue: Callable[[], Any]) -> tuple[Any, str]:
    """Runs ``issue`` (user "u", token TOKEN) into a deadlock; the blocker then rolls
    back. Returns what ``issue`` returned or raised, and what the blocker saw."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(issue())
        except BaseException as error:
            outcome.append(error)

    with psycopg.connect(url.partition("?")[0], autocommit=True) as blocker:
        blocker.execute("BEGIN")
        blocker.execute(
            f"INSERT INTO {prefix}magic_links (namespace, token_hash, id, user_id, email, "
            "created_at, expires_at) VALUES (%s, %s, %s, 'v', 'v@example.com', "
            "extract(epoch FROM now()), extract(epoch FROM now()) + 60)",
            (namespace, hash_token(TOKEN), uuid.uuid4().hex),
        )
        thread = threading.Thread(target=run)
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                row = blocker.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                ).fetchone()
                if row is not None and row[0]:
                    break
                time.sleep(0.01)
            else:
                raise AssertionError(f"the store never waited for the blocker: {outcome}")
            seen = "no deadlock"
            try:
                blocker.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"authstore:magic_links:{namespace}:u",),
                )
            except psycopg.Error as error:
                seen = f"blocker failed: {error}"
            time.sleep(0.1)  # the store's replay now waits for the advisory lock
        finally:
            blocker.execute("ROLLBACK")
            thread.join(10)
    assert not thread.is_alive()
    return outcome[0], seen


def test_a_deadlocked_link_issue_is_replayed(pg_url: str, table_prefix: str) -> None:
    namespace = f"dl-{uuid.uuid4().hex[:8]}"
    with authstore.open_magic_links(pg_url, namespace=namespace) as links:
        links.issue("u", "u@example.com", ttl=60)  # migrated; a link to revoke
        result, seen = deadlock(
            pg_url,
            table_prefix,
            namespace,
            lambda: links.issue("u", "u@example.com", ttl=60, token=TOKEN),
        )
        assert seen == "no deadlock"
        assert not isinstance(result, BaseException), repr(result)
        assert links.consume(TOKEN) is not None
        assert links.consume(TOKEN) is None


def test_a_deadlocked_async_link_issue_is_replayed(pg_url: str, table_prefix: str) -> None:
    namespace = f"dl-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with authstore.open_async_magic_links(pg_url, namespace=namespace) as links:
            await links.issue("u", "u@example.com", ttl=60)
            loop = asyncio.get_running_loop()

            def issue() -> Any:
                call = links.issue("u", "u@example.com", ttl=60, token=TOKEN)
                return asyncio.run_coroutine_threadsafe(call, loop).result(10)

            result, seen = await asyncio.to_thread(deadlock, pg_url, table_prefix, namespace, issue)
            assert seen == "no deadlock"
            assert not isinstance(result, BaseException), repr(result)
            assert await links.consume(TOKEN) is not None

    asyncio.run(scenario())
