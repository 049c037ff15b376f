"""The token-hash lookups exactly as a store sends them, for the query-plan tests.

``tests/<database>/test_*_plans.py`` fill a sessions and a magic-links table without
letting the server gather statistics (a bulk import, a restore, autovacuum off) and
ask each database how it would run these statements: every one must find its row
through the token-hash key, never by filtering the namespace's rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import SqlMagicLinkOps, SqlSessionOps
from authstore.adapters.sql.schema import Tables, migrations

NAMESPACE = "app"
ROWS = 4000
"""Sessions (and links) of one namespace: enough that filtering them all shows."""
USERS = 400
TOKEN = "token-17"
"""A token the fill created (a lookup that finds its row, as most do)."""
USER = "user-17"
PUBLIC_ID = "id-17"
READS = ("sessions.get", "links.peek", "sessions.list", "sessions.count")
"""The lookups that only read: safe to run under EXPLAIN ANALYZE."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def fill_rows(now: float) -> Iterator[tuple[object, ...]]:
    """(token_hash, id, user_id, created_at, expires_at) of ``ROWS`` live rows."""
    for index in range(ROWS):
        created = now - ROWS + index
        yield (
            token_hash(f"token-{index}"),
            f"id-{index}",
            f"user-{index % USERS}",
            created,
            now + 3600,
        )


def session_insert(tables: Tables, placeholder: str) -> str:
    marks = ", ".join([placeholder] * 5)
    return (
        f"INSERT INTO {tables.sessions} (token_hash, id, user_id, created_at, expires_at, "
        f"namespace, metadata, last_seen_at) VALUES ({marks}, '{NAMESPACE}', '{{}}', 0)"
    )


def link_insert(tables: Tables, placeholder: str) -> str:
    marks = ", ".join([placeholder] * 5)
    return (
        f"INSERT INTO {tables.magic_links} (token_hash, id, user_id, created_at, expires_at, "
        f"namespace, email) VALUES ({marks}, '{NAMESPACE}', 'a@example.com')"
    )


@dataclass(frozen=True)
class Lookup:
    name: str
    table: str
    text: str
    """In the dialect's placeholder style, as the driver gets it."""
    args: tuple[object, ...]
    key: str
    """The column the lookup must find its rows by (an index's leading column)."""
    rows: int
    """The most rows it may examine."""


def _first_query(op: Op[object]) -> Query:
    command = next(op)
    while isinstance(command, Begin):
        command = op.send(None)
    assert isinstance(command, Query), command
    return command


def lookups(dialect: Dialect, tables: Tables) -> list[Lookup]:
    """Each token-hash lookup's statements (a MySQL write-then-read: its write and its
    read), then the lookups by user and by public id."""
    sessions = SqlSessionOps(dialect, tables, NAMESPACE)
    links = SqlMagicLinkOps(dialect, tables, NAMESPACE)
    hashed = token_hash(TOKEN)
    per_user = ROWS // USERS
    ops: dict[str, tuple[str, str, int, Op[object]]] = {
        "sessions.get": (tables.sessions, "token_hash", 1, sessions.get(hashed)),
        "sessions.touch": (tables.sessions, "token_hash", 1, sessions.touch(hashed, 60.0)),
        "sessions.revoke": (tables.sessions, "token_hash", 1, sessions.revoke(hashed)),
        "links.peek": (tables.magic_links, "token_hash", 1, links.peek(hashed)),
        "links.consume": (tables.magic_links, "token_hash", 1, links.consume(hashed, None)),
        "sessions.list": (tables.sessions, "user_id", per_user, sessions.list(USER)),
        "sessions.count": (tables.sessions, "user_id", per_user, sessions.count(USER)),
        "sessions.revoke_by_id": (
            tables.sessions,
            "id",
            1,
            sessions.revoke_by_id(PUBLIC_ID, None),
        ),
        "links.revoke_user": (tables.magic_links, "user_id", per_user, links.revoke_user(USER)),
    }
    found: list[Lookup] = []
    for name, (table, key, rows, op) in ops.items():
        query = _first_query(op)
        op.close()
        parts = [part for part in query.sql.split(";\n") if part.startswith(("SELECT", "UPDATE"))]
        for part in parts:
            compiled = dialect.compile(part)
            arguments = dialect.arguments(compiled, query.params)
            found.append(Lookup(name, table, compiled.text, arguments, key, rows))
    return found


def at_version_2(dialect: Dialect, tables: Tables) -> list[str]:
    """The statements that leave a database as an authstore before version 3 did."""
    statements = [
        f"CREATE TABLE {tables.schema_version} "
        f"(version {dialect.integer} NOT NULL PRIMARY KEY, applied_at {dialect.real} NOT NULL)"
    ]
    for version, steps in migrations(dialect, tables)[:2]:
        statements += steps
        statements.append(f"INSERT INTO {tables.schema_version} VALUES ({version}, 0)")
    return statements
