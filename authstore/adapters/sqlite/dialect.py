"""SQLite's spelling of the SQL family's differences."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from authstore.adapters.sql.dialect import Dialect

__all__ = ["SQLiteDialect"]


class SQLiteDialect(Dialect):
    name = "sqlite"
    paramstyle = "qmark"
    # SQLite 3.40 has no unixepoch('subsec') and julianday('now') is only millisecond
    # grained, so the store clock is the application's, read when each statement runs.
    now = ":now"
    local = True  # see Dialect.local: the rate limiters run step_* between a read and a write
    begin = "BEGIN IMMEDIATE"  # take the write lock up front: no deadlocking lock upgrades
    blob = "BLOB"
    real = "REAL"
    bigint = "INTEGER"
    boolean = "INTEGER"
    serial_key = "INTEGER PRIMARY KEY"  # the rowid: increasing while the newest row lives
    table_exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"
    token_first = False  # a unique key's full equality counts as one row: see Dialect

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock

    def analyze(self, tables: Sequence[str]) -> tuple[str, ...]:
        return tuple(f"ANALYZE {table}" for table in tables)  # one table per statement

    def real_parameter(self, name: str) -> str:
        return f":{name}"  # values carry their own type in SQLite

    def later(self, left: str, right: str) -> str:
        return f"max({left}, {right})"

    def same(self, left: str, right: str) -> str:
        return f"{left} IS {right}"

    def skip(self, count: str) -> str:
        return f"LIMIT -1 OFFSET {count}"

    def floor(self, expression: str) -> str:
        # Not every SQLite build has floor(); the arguments here are never negative,
        # where truncation is the floor.
        return f"CAST({expression} AS INTEGER)"

    def blob_as_integer(self, expression: str) -> str:
        # CAST('abc' AS INTEGER) is 0, CAST(' 7x' AS INTEGER) is 7 and text beyond 64 bits
        # clamps: only text that reads back identical from its integer is an integer.
        # incr's bounds keep value + delta inside 64 bits (SQLite would make it a REAL).
        number = f"CAST({expression} AS INTEGER)"
        return f"(CASE WHEN CAST({number} AS TEXT) = CAST({expression} AS TEXT) THEN {number} END)"

    def integer_as_blob(self, expression: str) -> str:
        return f"CAST({expression} AS BLOB)"
