"""PostgreSQL's spelling of the SQL family's differences (psycopg and asyncpg alike)."""

from __future__ import annotations

from authstore.adapters.sql.dialect import CANONICAL_DECIMAL, Dialect, ParamStyle

__all__ = ["PostgresDialect"]


class PostgresDialect(Dialect):
    """One instance per driver: psycopg binds ``%s`` ("format"), asyncpg ``$1`` ("numeric")."""

    name = "postgresql"
    # statement_timestamp(), not now(): now() is frozen at the start of a transaction,
    # so a statement that waited on a lock would compute expiries in the past. date_part
    # returns float8 directly (extract() returns numeric since PostgreSQL 14), with the
    # server's microseconds.
    now = "date_part('epoch', statement_timestamp())"
    # Explicit: the cap on sessions and revoke_previous rely on each statement after the
    # lock seeing every earlier holder's commit, which a server default of REPEATABLE READ
    # or SERIALIZABLE would not give.
    begin = "BEGIN ISOLATION LEVEL READ COMMITTED"
    # A 64-bit hash of the name: two users collide about once in 2**32 pairs with
    # hashtext()'s 32 bits, and a collision only makes two writers wait for each other.
    transaction_lock = "SELECT pg_advisory_xact_lock(hashtextextended(:lock_name, 0))"

    def __init__(self, paramstyle: ParamStyle) -> None:
        super().__init__()
        self.paramstyle = paramstyle

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.paramstyle}>"

    def key(self, length: int) -> str:
        # Keys are compared for equality only: byte order is exact and skips the locale.
        return f'VARCHAR({length}) COLLATE "C"'

    def delete_batch(self, table: str, key: str, where: str, size: int) -> str:
        """By physical row address (a TID scan), with ``where`` checked again on the row
        actually deleted.

        Under READ COMMITTED a row rewritten meanwhile (an expired key set again,
        a blacklist entry renewed) is re-read before deletion; without the outer
        ``where`` the fresh row would be deleted on the subquery's stale verdict.
        """
        return (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - identifiers only
            f"SELECT ctid FROM {table} WHERE {where} LIMIT {int(size)})) AND ({where})"
        )

    def blob_as_integer(self, expression: str) -> str:
        text = f"encode({expression}, 'escape')"
        return self.canonical_integer(text, f"{text} ~ {CANONICAL_DECIMAL}", "NUMERIC", "BIGINT")

    def integer_as_blob(self, expression: str) -> str:
        return f"convert_to(CAST({expression} AS TEXT), 'UTF8')"
