"""What the SQL operations of every contract share: the base class, writes that return
their row, the user lock, batched purges, and the INSERT that claims a token hash.

Each single-record operation is one statement (UPSERT ... RETURNING, a guarded
UPDATE or DELETE) so it is atomic without an explicit transaction and costs one
round trip; only operations that touch several rows yield ``Begin``. Reads filter
expired rows out, so expired data is never returned whether or not a purge ran.
Differences between databases go through the ``Dialect``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.schema import Tables

__all__ = [
    "CHUNK",
    "PURGE_BATCH",
    "Returning",
    "SqlOps",
    "chunks",
    "claiming_insert",
    "in_list",
]

PURGE_BATCH = 1000
"""Rows per purge statement: a large table is cleaned without one long write lock."""
CHUNK = 250
"""Keys per IN list or rows per multi-row INSERT (far below every database's parameter limit)."""


@dataclass(frozen=True, slots=True)
class Returning:
    """A write whose changed row the operation needs back.

    With RETURNING it is one statement; without (MySQL) it is the write, then a
    SELECT of the row, in one short transaction.
    """

    single: str
    write: str
    select: str
    both: str | None
    """The write and a read of the row it applied to as one command (MySQL), where the
    dialect has ``write_then_read``."""


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def in_list(keys: Sequence[str]) -> tuple[str, dict[str, object]]:
    names = [f"k{index}" for index in range(len(keys))]
    return ", ".join(f":{name}" for name in names), dict(zip(names, keys, strict=True))


class SqlOps:
    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        self.dialect = dialect
        self.tables = tables

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dialect.name} prefix={self.tables.prefix!r}>"

    def ping(self) -> Op[None]:
        """``SELECT 1``: the first one also creates the schema, as any first operation."""
        yield Query("SELECT 1", {}, "one")

    def _returning(
        self, write: str, columns: str, table: str, where: str, applied: str | None = None
    ) -> Returning:
        """``applied``: true after the write iff it applied to the row, ``{changed}``
        standing for the rows it changed (needed where the write may match nothing)."""
        select = f"SELECT {columns} FROM {table} WHERE {where}"
        changed = self.dialect.changed_rows
        # no rowcount to look at between the two: the read checks the write applied
        read_back = select
        if applied is not None and changed is not None:
            read_back = f"{select} AND ({applied.replace('{changed}', changed)})"
        return Returning(
            single=f"{write} RETURNING {columns}",
            write=write,
            select=select,
            both=self.dialect.write_then_read(write, read_back),
        )

    def _run_returning(
        self, statement: Returning, params: Mapping[str, object], *, in_transaction: bool = False
    ) -> Op[Row | None]:
        """The row the write left, or None when the write changed nothing."""
        if self.dialect.returning:
            row: Row | None = yield Query(statement.single, params, "one")
            return row
        if not in_transaction:
            if statement.both is not None:
                # MySQL: one round trip instead of four (BEGIN, write, SELECT, COMMIT).
                row = yield Query(statement.both, params, "one")
                return row
            yield Begin()
        changed = yield Query(statement.write, params, "rowcount")
        if not changed:
            return None
        row = yield Query(statement.select, params, "one")
        return row

    def _lock(self, name: str) -> Op[None]:
        """Serialize writers of one user's rows where Begin alone does not (see Dialect)."""
        if self.dialect.transaction_lock is not None:
            yield Query(self.dialect.transaction_lock, {"lock_name": name}, "all")

    def _purge(self, table: str, key: str, where: str) -> Op[int]:
        statement = self.dialect.delete_batch(table, key, where, PURGE_BATCH)
        total = 0
        while True:
            deleted: int = yield Query(statement, {}, "rowcount")
            total += deleted
            if deleted < PURGE_BATCH:
                return total


def claiming_insert(d: Dialect, table: str, values: Mapping[str, str]) -> str:
    """An INSERT that takes over a row holding the same token hash only when that row has
    expired; a live, revoked or used one stays as it was and the statement changes nothing
    (no row RETURNed, no row changed), which the operation reports as TokenInUseError.
    ``values`` must end with ``expires_at``: MySQL assigns left to right and every guard
    reads the old expiry. (MySQL's ON DUPLICATE KEY also fires on the public id's unique
    key; ids are 128 random bits, and the same guard applies.)"""
    columns = ["namespace", "token_hash", *values]
    return d.upsert(
        table,
        columns,
        [[":namespace", ":token_hash", *values.values()]],
        ["namespace", "token_hash"],
        {column: d.excluded(column) for column in values},
        where=f"{table}.expires_at <= {d.now}",
    )
