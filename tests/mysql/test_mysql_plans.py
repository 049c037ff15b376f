"""Token-hash lookups use the token-hash key on tables whose statistics are stale.

``migrate`` analyzes the tables while they are empty; with InnoDB's automatic
recalculation off for the sessions and links tables (as after a bulk import whose
statistics nobody refreshed) the server still believes them empty when several
thousand sessions of one namespace are in. An equality on every column of the unique
``(namespace, token_hash)`` key is a const (or one-row range) lookup whatever the
statistics say: each lookup must examine one row, never the namespace's rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pymysql
from pymysql.constants import CLIENT

import authstore
from authstore.adapters.mysql.dialect import MySQLDialect
from authstore.adapters.mysql.settings import DEFAULT_TIMEOUT
from authstore.adapters.sql.schema import Tables
from tests.mysql.conftest import admin_connection
from tests.sql.plans import (
    NAMESPACE,
    READS,
    TOKEN,
    at_version_2,
    fill_rows,
    link_insert,
    lookups,
    session_insert,
)


def _tables(document: Any) -> Iterator[dict[str, Any]]:
    """Every table access of an EXPLAIN / ANALYZE FORMAT=JSON document."""
    if isinstance(document, dict):
        if "table_name" in document:
            yield document
        for value in document.values():
            yield from _tables(value)
    elif isinstance(document, list):
        for value in document:
            yield from _tables(value)


def test_token_lookups_examine_one_row_with_stale_statistics(
    mysql_server: str, fresh_prefix: str, admin: pymysql.Connection[Any]
) -> None:
    authstore.migrate(f"{mysql_server}?table_prefix={fresh_prefix}")
    tables = Tables(fresh_prefix)
    rows = list(fill_rows(time.time()))
    with admin.cursor() as cursor:
        for table in (tables.sessions, tables.magic_links):
            cursor.execute(f"ALTER TABLE {table} STATS_AUTO_RECALC = 0")
        admin.begin()
        cursor.executemany(session_insert(tables, "%s"), rows)
        cursor.executemany(link_insert(tables, "%s"), rows)
        admin.commit()
        believed = _believed_rows(cursor, tables)
        assert max(believed) < len(rows) / 10, f"statistics of {believed} rows: proves nothing"
        for lookup in lookups(MySQLDialect(tables, DEFAULT_TIMEOUT), tables):
            explains = ["EXPLAIN FORMAT=JSON "]
            if lookup.name in READS:
                explains.append("ANALYZE FORMAT=JSON ")  # runs the statement: reads only
            # A write-then-read's read asks ROW_COUNT() whether the write applied: alone
            # it would be the "Impossible WHERE" of a write that changed nothing.
            text = lookup.text.replace("ROW_COUNT()", "1")
            for explain in explains:
                cursor.execute(explain + text, lookup.args)
                (document,) = cursor.fetchone()
                plan = json.loads(document)
                accesses = list(_tables(plan))
                described = f"{lookup.name}: {explain}{json.dumps(plan)}"
                assert accesses, described
                for access in accesses:
                    assert access["table_name"] == lookup.table, described
                    assert lookup.key in access.get("used_key_parts", ()), described
                    assert access["rows"] <= lookup.rows, described
                    # a const table is read while planning: no r_rows then
                    assert (access.get("r_rows") or 0) <= lookup.rows, described


def test_migrate_upgrades_filled_tables_and_analyzes_them(
    mysql_server: str, fresh_prefix: str
) -> None:
    tables = Tables(fresh_prefix)
    rows = list(fill_rows(time.time()))
    admin = admin_connection(mysql_server, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        with admin.cursor() as cursor:
            for statement in at_version_2(MySQLDialect(tables, DEFAULT_TIMEOUT), tables):
                cursor.execute(statement)
                while cursor.nextset():
                    pass
            for table in (tables.sessions, tables.magic_links):
                cursor.execute(f"ALTER TABLE {table} STATS_AUTO_RECALC = 0")
            admin.begin()
            cursor.executemany(session_insert(tables, "%s"), rows)
            cursor.executemany(link_insert(tables, "%s"), rows)
            admin.commit()
            believed = _believed_rows(cursor, tables)
            assert max(believed) < len(rows) / 10, believed

            url = f"{mysql_server}?table_prefix={fresh_prefix}&namespace={NAMESPACE}"
            assert authstore.migrate(url) == ["mysql: schema at version 3 (applied 1)"]

            # InnoDB samples pages: an estimate, not a count
            believed = _believed_rows(cursor, tables)
            assert min(believed) > len(rows) / 2, believed
        with authstore.open_sessions(url) as sessions:
            found = sessions.get(TOKEN)
            assert found is not None and found.id == "id-17"
    finally:
        admin.close()


def _believed_rows(cursor: Any, tables: Tables) -> list[int]:
    """The row counts of the persistent statistics of the sessions and links tables."""
    cursor.execute(
        "SELECT n_rows FROM mysql.innodb_table_stats "
        "WHERE database_name = DATABASE() AND table_name IN (%s, %s)",
        (tables.sessions, tables.magic_links),
    )
    believed = [n for (n,) in cursor.fetchall()]
    assert len(believed) == 2, believed
    return believed
