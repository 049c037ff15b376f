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
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymysql
import pytest

import authstore
from authstore.adapters.sql.program import Statement
from authstore.contracts.errors import TokenInUseError
from tests.backends import with_options
from tests.deadlocks import check_a_deadlocked_link_issue_is_replayed

from .conftest import admin_connection


class InnoDBBlocker:
    """The deadlock's second connection: InnoDB rolls back the transaction that changed
    fewer rows, so the blocker first writes 20 rows of weight."""

    error: type[BaseException] = pymysql.MySQLError
    poll_interval = 0.15
    """InnoDB refreshes its lock tables only after 0.1 s without a read of them."""

    def __init__(self, connection: pymysql.Connection[Any], prefix: str) -> None:
        self.connection = connection
        self.links, self.cache = f"{prefix}magic_links", f"{prefix}cache"

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchone()

    def hold_token(self, namespace: str, token_hash: str) -> None:
        self._execute("BEGIN")
        for index in range(20):
            self._execute(
                f"INSERT INTO {self.cache} (cache_key, value, epoch, expires_at) "
                "VALUES (%s, NULL, NULL, 0)",
                (f"deadlock-weight-{uuid.uuid4().hex}-{index}",),
            )
        self._execute(
            f"INSERT INTO {self.links} (namespace, token_hash, id, user_id, email, "
            "created_at, expires_at) VALUES (%s, %s, %s, 'v', 'v@example.com', "
            "UNIX_TIMESTAMP(), UNIX_TIMESTAMP() + 60)",
            (namespace, token_hash, uuid.uuid4().hex),
        )

    def store_waits(self) -> bool:
        row = self._execute(
            "SELECT COUNT(*) FROM information_schema.innodb_lock_waits w "
            "JOIN information_schema.innodb_trx t ON t.trx_id = w.blocking_trx_id "
            "WHERE t.trx_mysql_thread_id = CONNECTION_ID()"
        )
        return row is not None and bool(row[0])

    def take_user_lock(self, key: str) -> None:
        self._execute(
            f"INSERT INTO {self.cache} (cache_key, value, epoch, expires_at) "
            "VALUES (%s, NULL, NULL, 0) ON DUPLICATE KEY UPDATE expires_at = 0",
            (key,),
        )

    def rollback(self) -> None:
        self._execute("ROLLBACK")


@pytest.fixture
def blocker(mysql_url: str, table_prefix: str) -> Iterator[InnoDBBlocker]:
    connection = admin_connection(mysql_url.partition("?")[0])
    try:
        yield InnoDBBlocker(connection, table_prefix)
    finally:
        connection.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_deadlocked_link_issue_is_replayed(
    mysql_url: str, blocker: InnoDBBlocker, mode: str
) -> None:
    check_a_deadlocked_link_issue_is_replayed(mysql_url, blocker, mode)


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
