"""Token-hash lookups use the token-hash key on a table PostgreSQL never analyzed.

A table filled after ``migrate`` with autovacuum off (as on the test server; in
production: right after a bulk import or a restore) has no column statistics. With
version 1's keys the planner then costs ``namespace = $1`` on the
``(namespace, user_id, created_at)`` index as cheap as the unique token-hash key and
filters every session of the namespace (1.9 ms instead of 0.04 ms at 3,000 sessions).
Each lookup is planned as the drivers get it: custom plans (psycopg's first five
executions, asyncpg's) and the generic plan of a prepared statement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import authstore
from authstore.adapters.postgres.dialect import PostgresDialect
from authstore.adapters.sql.schema import Tables
from authstore.contracts.errors import TokenInUseError
from tests.sql.plans import (
    NAMESPACE,
    READS,
    at_version_2,
    fill_rows,
    link_insert,
    lookups,
    session_insert,
    token_hash,
)

Admin = psycopg.Connection[tuple[Any, ...]]
OLD_TOKEN = "a-token-stored-before-version-3-" + "x" * 16


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The nodes reading a table (an UPDATE's ModifyTable writes what they found)."""
    if "Relation Name" in plan and plan["Node Type"] != "ModifyTable":
        yield plan
    for child in plan.get("Plans", ()):
        yield from _scans(child)


def _fill(admin: Admin, tables: Tables) -> None:
    for table in (tables.sessions, tables.magic_links):
        admin.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    rows = list(fill_rows(time.time()))
    with admin.cursor() as cursor:
        cursor.executemany(session_insert(tables, "%s"), rows)
        cursor.executemany(link_insert(tables, "%s"), rows)
    for table in (tables.sessions, tables.magic_links):
        analyzed = admin.execute(
            "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = %s",
            [table],
        ).fetchone()
        assert analyzed == (0,), f"{table} has statistics: the test would prove nothing"


def test_token_lookups_use_the_token_key_without_statistics(
    postgres_server: str, fresh_prefix: str, admin: Admin
) -> None:
    authstore.migrate(f"{postgres_server}?table_prefix={fresh_prefix}")
    tables = Tables(fresh_prefix)
    _fill(admin, tables)
    for number, lookup in enumerate(lookups(PostgresDialect("numeric"), tables)):
        admin.execute(f"PREPARE lookup{number} AS {lookup.text}")
        execute = sql.SQL("EXECUTE lookup{} ({})").format(
            sql.SQL(str(number)), sql.SQL(", ").join(sql.Literal(arg) for arg in lookup.args)
        )
        explains = [
            ("force_custom_plan", "EXPLAIN (FORMAT JSON) "),
            ("force_generic_plan", "EXPLAIN (FORMAT JSON) "),
        ]
        if lookup.name in READS:
            explains.append(("auto", "EXPLAIN (ANALYZE, FORMAT JSON) "))
        for mode, explain in explains:
            admin.execute(f"SET plan_cache_mode = {mode}")
            row = admin.execute(sql.SQL(explain) + execute).fetchone()
            assert row is not None
            document = row[0] if isinstance(row[0], list) else json.loads(row[0])
            plan = document[0]["Plan"]
            scans = list(_scans(plan))
            described = f"{lookup.name} ({mode}): {json.dumps(plan)}"
            assert scans, described
            for scan in scans:
                assert scan["Relation Name"] == lookup.table, described
                assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), described
                assert f"(({lookup.key})::text = " in scan["Index Cond"], described
                assert "namespace" not in scan.get("Filter", ""), described
                if "ANALYZE" in explain:
                    assert scan.get("Rows Removed by Filter", 0) == 0, described
                    assert 1 <= scan["Actual Rows"] <= lookup.rows, described
    admin.execute("RESET plan_cache_mode")


def test_migrate_analyzes_the_tables_it_creates(
    postgres_server: str, fresh_prefix: str, admin: Admin
) -> None:
    tables = Tables(fresh_prefix)
    authstore.migrate(f"{postgres_server}?table_prefix={fresh_prefix}")
    analyzed: dict[str, bool] = dict(
        admin.execute(
            "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema() AND starts_with(relname, %s)",
            [fresh_prefix],
        ).fetchall()
    )
    assert {table: analyzed.get(table) for table in tables.analyzed} == dict.fromkeys(
        tables.analyzed, True
    )


def _keys(admin: Admin, table: str) -> set[tuple[bool, str]]:
    rows = admin.execute(
        "SELECT indisunique, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = to_regclass(%s)",
        [table],
    ).fetchall()
    return {(unique, definition.split(" USING btree ")[1]) for unique, definition in rows}


@pytest.mark.parametrize("long_prefix", [False, True], ids=["prefix", "32-character prefix"])
def test_migrate_rekeys_existing_tables_and_keeps_their_data(
    postgres_server: str, fresh_prefix: str, admin: Admin, long_prefix: bool
) -> None:
    # 32 characters: version 1's constraint names were truncated by the server
    prefix = (fresh_prefix + "x" * 32)[:32] if long_prefix else fresh_prefix
    tables = Tables(prefix)
    url = f"{postgres_server}?table_prefix={prefix}&namespace={NAMESPACE}"
    try:
        for statement in at_version_2(PostgresDialect("format"), tables):
            admin.execute(statement)
        now = time.time()
        old = [(token_hash(OLD_TOKEN), "old-id", "alice", now, now + 3600), *fill_rows(now)]
        with admin.cursor() as cursor:
            for table in (tables.sessions, tables.magic_links):
                cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            cursor.executemany(session_insert(tables, "%s"), old)
            cursor.executemany(link_insert(tables, "%s"), old)

        assert authstore.migrate(url) == ["postgresql: schema at version 3 (applied 1)"]

        for table in (tables.sessions, tables.magic_links):  # analyzed once rekeyed
            columns = admin.execute(
                "SELECT attname FROM pg_stats WHERE schemaname = current_schema() "
                "AND tablename = %s",
                [table],
            ).fetchall()
            assert ("token_hash",) in columns, (table, columns)

        for table in (tables.sessions, tables.magic_links):
            keys = _keys(admin, table)
            assert (True, "(token_hash, namespace)") in keys
            assert (True, "(id, namespace)") in keys
            assert not [key for key in keys if key[1].startswith("(namespace")], keys
        with authstore.open_sessions(url) as sessions:
            found = sessions.get(OLD_TOKEN)
            assert found is not None and found.id == "old-id"
            assert [s.id for s in sessions.list("alice")] == ["old-id"]
            with pytest.raises(TokenInUseError):
                sessions.create("alice", ttl=60, token=OLD_TOKEN)
            assert sessions.revoke_by_id("old-id")
            assert sessions.get(OLD_TOKEN) is None
        with authstore.open_magic_links(url) as links:
            consumed = links.consume(OLD_TOKEN)
            assert consumed is not None and consumed.id == "old-id"
            with pytest.raises(TokenInUseError):
                links.issue("alice", "a@example.com", ttl=60, token=OLD_TOKEN)
    finally:
        if long_prefix:
            for table in (*tables.analyzed, tables.schema_version):
                admin.execute(f"DROP TABLE IF EXISTS {table}")
