"""A capped session create that times out or is cancelled inside its transaction leaves
nothing open: the transaction is rolled back (PostgreSQL's statement_timeout, or the
connection closed), and the same user's next create goes through at once.

The create's eviction waits for a session row another connection holds, past the
store's timeout (0.5 s). This is how a sync MongoDB create once left its transaction
open for 25 s.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from authstore.adapters.common.ops import Op
from authstore.adapters.sql import Query
from tests.abandoned import abandon_then_create


def _backend_pid() -> Op[Any]:
    row = yield Query("SELECT pg_backend_pid()", {}, "one")
    return int(row[0])


def _in_transaction(admin: psycopg.Connection[Any], pids: list[int]) -> list[Any]:
    """The store's server processes that are not idle (in a transaction, or running)."""
    return admin.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE pid = ANY(%s) AND state <> 'idle'",
        (pids,),
    ).fetchall()


@pytest.mark.parametrize("mode", ["sync", "async", "cancelled"])
def test_an_abandoned_transaction_is_aborted(
    pg_url: str, table_prefix: str, admin: psycopg.Connection[Any], mode: str
) -> None:
    namespace = f"abandoned-{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&namespace={namespace}&timeout=0.5&pool_size=1"
    sessions_table = f"{table_prefix}sessions"

    def hold() -> None:
        admin.execute("BEGIN")
        admin.execute(
            f"SELECT id FROM {sessions_table} WHERE namespace = %s AND user_id = 'u' FOR UPDATE",
            (namespace,),
        )

    def release() -> None:
        admin.execute("ROLLBACK")

    first, second = abandon_then_create(url, mode, hold, release, _backend_pid)
    assert _in_transaction(admin, [first, second]) == []
