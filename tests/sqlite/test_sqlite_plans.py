"""Token-hash lookups use the token-hash key on tables whose statistics are stale.

``migrate`` runs ANALYZE while the tables are empty: ``sqlite_stat1`` then describes
empty tables while several thousand sessions of one namespace are in. SQLite counts
an equality on every column of a unique key as one row whatever ``sqlite_stat1``
says: each lookup must SEARCH by the token-hash key, never scan the namespace.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import authstore
from authstore.adapters.sql.schema import Tables
from authstore.adapters.sqlite.dialect import SQLiteDialect
from tests.sql.plans import (
    NAMESPACE,
    ROWS,
    TOKEN,
    at_version_2,
    fill_rows,
    link_insert,
    lookups,
    session_insert,
)


def test_token_lookups_search_the_token_key_with_stale_statistics(
    db_url: str, db_path: Path
) -> None:
    authstore.migrate(db_url)
    tables = Tables()
    rows = list(fill_rows(time.time()))
    with sqlite3.connect(db_path) as connection:
        connection.executemany(session_insert(tables, "?"), rows)
        connection.executemany(link_insert(tables, "?"), rows)
        for lookup in lookups(SQLiteDialect(), tables):
            plan = connection.execute(f"EXPLAIN QUERY PLAN {lookup.text}", lookup.args).fetchall()
            details = [detail for *_, detail in plan]
            assert details, lookup.name
            for detail in details:
                assert detail.startswith(f"SEARCH {lookup.table} USING INDEX"), (lookup, details)
                assert re.search(rf"\b{lookup.key}=\?", detail), (lookup.name, details)
    connection.close()


def test_migrate_upgrades_a_filled_database_and_analyzes_it(db_url: str, db_path: Path) -> None:
    tables = Tables()
    now = time.time()
    with sqlite3.connect(db_path) as connection:
        for statement in at_version_2(SQLiteDialect(), tables):
            connection.execute(statement)
        connection.executemany(session_insert(tables, "?"), fill_rows(now))
        connection.executemany(link_insert(tables, "?"), fill_rows(now))
    connection.close()

    assert authstore.migrate(db_url) == ["sqlite: schema at version 3 (applied 1)"]

    with sqlite3.connect(db_path) as connection:
        analyzed = dict(connection.execute("SELECT idx, stat FROM sqlite_stat1").fetchall())
    connection.close()
    for table in (tables.sessions, tables.magic_links):
        # the unique token-hash key: ROWS rows, one per value
        assert analyzed.get(f"sqlite_autoindex_{table}_1") == f"{ROWS} {ROWS} 1", analyzed
    with authstore.open_sessions(f"{db_url}?namespace={NAMESPACE}") as sessions:
        found = sessions.get(TOKEN)
        assert found is not None and found.id == "id-17"
