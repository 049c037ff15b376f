"""Deadlocks on PostgreSQL: a transaction the server aborted as a deadlock's victim
(SQLSTATE 40P01; 40001, a serialization failure, alike) is replayed.

The deadlock is forced with a second connection that holds the token's row and then
asks for the user's advisory lock, which the store's transaction holds. PostgreSQL
aborts the transaction whose deadlock_timeout (1 s) runs out first, the store's: it
waited first. The store replays its transaction and gives the true answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.deadlocks import check_a_deadlocked_link_issue_is_replayed


class PostgresBlocker:
    """The deadlock's second connection, an autocommit one that runs its own BEGIN."""

    error: type[BaseException] = psycopg.Error
    poll_interval = 0.01

    def __init__(self, connection: psycopg.Connection[Any], prefix: str) -> None:
        self.connection = connection
        self.links = f"{prefix}magic_links"

    def hold_token(self, namespace: str, token_hash: str) -> None:
        self.connection.execute("BEGIN")
        self.connection.execute(
            f"INSERT INTO {self.links} (namespace, token_hash, id, user_id, email, "
            "created_at, expires_at) VALUES (%s, %s, %s, 'v', 'v@example.com', "
            "extract(epoch FROM now()), extract(epoch FROM now()) + 60)",
            (namespace, token_hash, uuid.uuid4().hex),
        )

    def store_waits(self) -> bool:
        row = self.connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        ).fetchone()
        return row is not None and bool(row[0])

    def take_user_lock(self, key: str) -> None:
        self.connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def rollback(self) -> None:
        self.connection.execute("ROLLBACK")


@pytest.fixture
def blocker(pg_url: str, table_prefix: str) -> Iterator[PostgresBlocker]:
    with psycopg.connect(pg_url.partition("?")[0], autocommit=True) as connection:
        yield PostgresBlocker(connection, table_prefix)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_deadlocked_link_issue_is_replayed(
    pg_url: str, blocker: PostgresBlocker, mode: str
) -> None:
    check_a_deadlocked_link_issue_is_replayed(pg_url, blocker, mode)
