"""Deadlocks on MariaDB/MySQL: a transaction InnoDB rolled back whole is replayed.

A 200-way ``issue(token=same)`` race once gave 16 deadlock errors (1213) instead of
``TokenInUseError``: a link issue is a transaction (the user's lock row, the revocation
of their links, the claiming insert), and a deadlock at its third statement went to
the caller. The deadlock is forced here with a second connection that holds the token's
row and then asks for the user's lock row, which the store's transaction holds: InnoDB
rolls back the lighter transaction, the store's. The store then replays its transaction
(each earlier statement must return what it returned before) and gives the true answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymysql
import pytest

import authstore
from authstore.adapters.sql.program import Statement
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.values import hash_token

from .conftest import admin_connection, with_options

TOKEN = "deadlock-token-" + "x" * 40


@pytest.fixture
def blocker(mysql_url: str) -> Iterator[pymysql.Connection[Any]]:
    connection = admin_connection(mysql_url.partition("?")[0])
    try:
        yield connection
    finally:
        connection.close()


def _waiting_on(blocker: pymysql.Connection[Any], deadline: float, outcome: list[Any]) -> None:
    """Until a transaction waits for one of the blocker's locks."""
    with blocker.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.innodb_lock_waits w "
                "JOIN information_schema.innodb_trx t ON t.trx_id = w.blocking_trx_id "
                "WHERE t.trx_mysql_thread_id = CONNECTION_ID()"
            )
            row = cursor.fetchone()
            if row is not None and row[0]:
                return
            # InnoDB refreshes these tables only after 0.1 s without a read of them
            time.sleep(0.15)
    raise AssertionError(f"the store's transaction never waited for the blocker: {outcome}")


def deadlock(
    blocker: pymysql.Connection[Any], prefix: str, namespace: str, issue: Callable[[], Any]
) -> tuple[Any, str]:
    """Runs ``issue`` (user "u", token TOKEN) into a deadlock; the blocker then rolls
    back. Returns what ``issue`` returned or raised, and what the blocker saw."""
    links, cache = f"{prefix}magic_links", f"{prefix}cache"
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(issue())
        except BaseException as error:
            outcome.append(error)

    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        # Weight: InnoDB rolls back the transaction that changed fewer rows.
        for index in range(20):
            cursor.execute(
                f"INSERT INTO {cache} (cache_key, value, epoch, expires_at) "
                "VALUES (%s, NULL, NULL, 0)",
                (f"deadlock-weight-{uuid.uuid4().hex}-{index}",),
            )
        cursor.execute(
            f"INSERT INTO {links} (namespace, token_hash, id, user_id, email, created_at, "
            "expires_at) VALUES (%s, %s, %s, 'v', 'v@example.com', UNIX_TIMESTAMP(), "
            "UNIX_TIMESTAMP() + 60)",
            (namespace, hash_token(TOKEN), uuid.uuid4().hex),
        )
        thread = threading.Thread(target=run)
        thread.start()
        try:
            _waiting_on(blocker, time.monotonic() + 5, outcome)
            seen = "no deadlock"
            try:
                # the store's lock row: a deadlock, of which the store is the victim
                cursor.execute(
                    f"INSERT INTO {cache} (cache_key, value, epoch, expires_at) "
                    "VALUES (%s, NULL, NULL, 0) ON DUPLICATE KEY UPDATE expires_at = 0",
                    (f"authstore:magic_links:{namespace}:u",),
                )
            except pymysql.MySQLError as error:
                seen = f"blocker failed: {error}"
            time.sleep(0.1)  # the store's replay now waits for the lock row
        finally:
            cursor.execute("ROLLBACK")
            thread.join(10)
    assert not thread.is_alive()
    return outcome[0], seen


def test_a_deadlocked_link_issue_is_replayed(
    mysql_url: str, table_prefix: str, blocker: pymysql.Connection[Any]
) -> None:
    namespace = f"dl-{uuid.uuid4().hex[:8]}"
    with authstore.open_magic_links(mysql_url, namespace=namespace) as links:
        links.issue("u", "u@example.com", ttl=60)  # migrated; a link to revoke
        result, seen = deadlock(
            blocker,
            table_prefix,
            namespace,
            lambda: links.issue("u", "u@example.com", ttl=60, token=TOKEN),
        )
        assert seen == "no deadlock"
        assert not isinstance(result, BaseException), repr(result)
        assert links.consume(TOKEN) is not None
        assert links.consume(TOKEN) is None


def test_a_deadlocked_async_link_issue_is_replayed(
    mysql_url: str, table_prefix: str, blocker: pymysql.Connection[Any]
) -> None:
    namespace = f"dl-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with authstore.open_async_magic_links(mysql_url, namespace=namespace) as links:
            await links.issue("u", "u@example.com", ttl=60)
            loop = asyncio.get_running_loop()

            def issue() -> Any:
                call = links.issue("u", "u@example.com", ttl=60, token=TOKEN)
                return asyncio.run_coroutine_threadsafe(call, loop).result(10)

            result, seen = await asyncio.to_thread(
                deadlock, blocker, table_prefix, namespace, issue
            )
            assert seen == "no deadlock"
            assert not isinstance(result, BaseException), repr(result)
            assert await links.consume(TOKEN) is not None

    asyncio.run(scenario())


def test_a_replay_that_reads_something_else_fails_closed(mysql_url: str) -> None:
    """A capped session create reads back the row it wrote: when another writer took
    the token meanwhile, the replayed write changes nothing (a row count of 0, not 1),
    and the deadlock goes to the caller rather than the other writer's session."""
    from authstore.adapters.mysql import sync

    namespace = f"dl-{uuid.uuid4().hex[:8]}"
    token = "replayed-token-" + "y" * 40
    with authstore.open_sessions(mysql_url, namespace=namespace) as sessions:
        sessions.create("u", ttl=60)
        real = sync._send
        reads: list[str] = []

        def send(connection: Any, statement: Any, multi: bool) -> Any:
            if statement.text.startswith("SELECT") and not reads:
                reads.append(statement.text)  # the read-back of the capped create's write
                real(connection, Statement("ROLLBACK", (), "none"), multi)  # as InnoDB does
                sessions.create("other", ttl=60, token=token)  # on another connection
                raise pymysql.err.OperationalError(1213, "Deadlock found (forced)")
            return real(connection, statement, multi)

        sync._send = send
        try:
            with pytest.raises(authstore.BackendUnavailableError, match="Deadlock"):
                sessions.create("u", ttl=60, max_sessions=5, token=token)
        finally:
            sync._send = real
        assert reads
        assert sessions.count("u") == 1
        assert sessions.count("other") == 1


RACERS = 200


def _classify(results: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        if isinstance(result, TokenInUseError):
            name = "in use"
        elif isinstance(result, BaseException):
            name = f"{type(result).__name__}: {result}"
        else:
            name = "issued"
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_two_hundred_threads_issue_one_token(mysql_url: str) -> None:
    token = uuid.uuid4().hex * 2
    url = with_options(mysql_url, pool_size=20)
    with authstore.open_magic_links(url, namespace=f"race-{uuid.uuid4().hex[:8]}") as links:
        links.peek(token)
        barrier = threading.Barrier(RACERS)

        def one(user: int) -> Any:
            barrier.wait()
            try:
                return links.issue(
                    f"u{user % 7}",
                    "u@example.com",
                    ttl=60,
                    token=token,
                    revoke_previous=user % 3 > 0,  # also the one-command issue
                )
            except BaseException as error:
                return error

        with ThreadPoolExecutor(RACERS) as pool:
            results = list(pool.map(one, range(RACERS)))
    assert _classify(results) == {"issued": 1, "in use": RACERS - 1}


def test_two_hundred_tasks_issue_one_token(mysql_url: str) -> None:
    token = uuid.uuid4().hex * 2

    async def scenario() -> list[Any]:
        namespace = f"race-{uuid.uuid4().hex[:8]}"
        async with authstore.open_async_magic_links(mysql_url, namespace=namespace) as links:
            await links.peek(token)
            return await asyncio.gather(
                *(
                    links.issue(
                        f"u{user % 7}",
                        "u@example.com",
                        ttl=60,
                        token=token,
                        revoke_previous=user % 3 > 0,
                    )
                    for user in range(RACERS)
                ),
                return_exceptions=True,
            )

    assert _classify(asyncio.run(scenario())) == {"issued": 1, "in use": RACERS - 1}
