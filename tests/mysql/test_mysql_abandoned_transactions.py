"""A capped session create that times out or is cancelled inside its transaction leaves
nothing open: its connection is closed (the server rolls back), the pool gets a fresh
one, and the same user's next create goes through at once.

The create's eviction waits for a session row another connection holds, past the
store's timeout (0.5 s; InnoDB's lock wait is at least 1 s, so the socket gives up
first). This is how a sync MongoDB create once left its transaction open for 25 s.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pymysql
import pytest

from authstore.adapters.common.ops import Op
from authstore.adapters.sql import Query
from tests.abandoned import abandon_then_create
from tests.backends import with_options


def _connection_id() -> Op[Any]:
    row = yield Query("SELECT CONNECTION_ID()", {}, "one")
    return int(row[0])


def _open_transactions(admin: pymysql.Connection[Any], thread_ids: list[int]) -> list[Any]:
    with admin.cursor() as cursor:
        listed = ", ".join(str(int(thread_id)) for thread_id in thread_ids)
        cursor.execute(
            "SELECT trx_mysql_thread_id, trx_state FROM information_schema.innodb_trx "
            f"WHERE trx_mysql_thread_id IN ({listed})"
        )
        return list(cursor.fetchall())


def _settled(admin: pymysql.Connection[Any], thread_ids: list[int]) -> list[Any]:
    """The transactions of these server threads still open after at most 1 s (a closed
    connection's transaction ends when its statement does: InnoDB reads these tables
    from a cache refreshed after 0.1 s without reads)."""
    deadline = time.monotonic() + 1.0
    while True:
        time.sleep(0.15)
        found = _open_transactions(admin, thread_ids)
        if not found or time.monotonic() > deadline:
            return found


@pytest.mark.parametrize("mode", ["sync", "async", "cancelled"])
def test_an_abandoned_transaction_is_aborted(
    mysql_url: str, table_prefix: str, admin: pymysql.Connection[Any], mode: str
) -> None:
    namespace = f"abandoned-{uuid.uuid4().hex[:8]}"
    url = with_options(mysql_url, namespace=namespace, timeout=0.5, pool_size=1)
    sessions_table = f"{table_prefix}sessions"

    def hold() -> None:
        with admin.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                f"SELECT id FROM {sessions_table} WHERE namespace = %s AND user_id = 'u' "
                "FOR UPDATE",
                (namespace,),
            )

    def release() -> None:
        with admin.cursor() as cursor:
            cursor.execute("ROLLBACK")

    first, second = abandon_then_create(url, mode, hold, release, _connection_id)
    assert first != second  # the abandoned connection was closed, not pooled
    assert _settled(admin, [first, second]) == []
