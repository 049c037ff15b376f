"""Everything that differs between SQL databases, in one object per database.

Operations and migrations are written once against this interface; a database
adds a subclass and two thin runners, never a copy of the logic. The defaults are
standard SQL (and PostgreSQL's spelling where the standard is silent).
"""

# SQL text is assembled from identifiers checked by Tables and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

__all__ = ["CANONICAL_DECIMAL", "Compiled", "Dialect", "ParamStyle"]

ParamStyle = Literal["qmark", "format", "numeric"]
"""``?`` (sqlite3), ``%s`` (psycopg, PyMySQL, aiomysql), ``$1`` (asyncpg)."""

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_COMPILED_CACHE_SIZE = 512

CANONICAL_DECIMAL = "'^(0|-?[1-9][0-9]{0,18})$'"
"""The pattern (an SQL string) of canonical decimal: no "+", no leading zeros, no "-0",
at most 19 digits so a wide numeric cast cannot fail; ``canonical_integer`` then keeps
the value within signed 64 bits."""


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """The values of ``names`` from a mapping, as a tuple, with no Python loop per call."""
    if not names:
        return lambda params: ()
    if len(names) == 1:
        (name,) = names
        return lambda params: (params[name],)
    picked: Callable[[Mapping[str, object]], Any] = itemgetter(*names)
    return picked


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement in the driver's placeholder style and the parameter names its arguments follow."""

    text: str
    names: tuple[str, ...]
    pick: Callable[[Mapping[str, object]], tuple[object, ...]] = field(
        init=False, repr=False, compare=False
    )
    """The arguments in placeholder order, from the parameters (built once per statement)."""
    clocked: bool = field(init=False, repr=False, compare=False)
    """Whether ``:now`` is one of the parameters."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pick", _picker(self.names))
        object.__setattr__(self, "clocked", "now" in self.names)


class Dialect:
    name = "sql"
    paramstyle: ParamStyle = "qmark"

    now = "CAST(extract(epoch FROM now()) AS DOUBLE PRECISION)"
    """The store's clock as epoch seconds (a float), as an SQL expression."""
    clock: Callable[[], float] | None = None
    """When set, ``now`` is the bound parameter ``:now`` and this fills it at execution
    (for databases whose own clock is too coarse)."""

    local = False
    """True (SQLite): the database runs in this process, so a statement costs no round trip.
    The rate limiters then read the row, decide with ``ratelimit.step_*`` in Python and
    write (a compare-and-set) only when the row changes: a refused hit is one read.
    Needs ``clock``. Elsewhere each hit is one UPSERT computing step_* in SQL."""

    begin = "BEGIN"
    commit = "COMMIT"
    rollback = "ROLLBACK"
    returning = True
    """False (MySQL): an operation needing the written row sends the write and a SELECT as
    one ``write_then_read`` command, or yields Begin, the write, then the SELECT."""
    transaction_lock: str | None = None
    """SQL taking a lock named by ``:lock_name`` until the transaction ends (PostgreSQL:
    ``SELECT pg_advisory_xact_lock(hashtext(:lock_name))``); None where ``begin``
    already serializes writers (SQLite's BEGIN IMMEDIATE)."""
    migration_lock: str | None = None
    """Where DDL commits by itself (MySQL), a migration cannot be one transaction: SQL
    taking a session lock named ``:lock_name`` and answering 1 once it holds it
    (``GET_LOCK``); ``migration_unlock`` releases it. None: the migration is one
    transaction under ``transaction_lock``."""
    migration_unlock: str | None = None
    assigns_in_order = False
    """True (MySQL): ON DUPLICATE KEY UPDATE assigns left to right, each SET seeing the
    columns already assigned; the rate limiters then order their SETs for it."""
    changed_rows: str | None = None
    """SQL for the rows the previous statement changed (MySQL ``ROW_COUNT()``), where
    ``write_then_read`` needs it to tell a write that applied from one that did not."""

    blob = "BYTEA"
    real = "DOUBLE PRECISION"
    integer = "INTEGER"
    bigint = "BIGINT"
    boolean = "BOOLEAN"
    text = "TEXT"
    serial_key = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    """An increasing row number: the insertion-order tiebreak and the key of batched deletes."""

    table_exists = "SELECT 1 WHERE to_regclass(:name) IS NOT NULL"
    """A row when the table named ``:name`` exists (the migration fast path)."""

    token_first = True
    """Whether schema version 3 rekeys sessions and magic links so no index leads with
    ``namespace`` (token hash, public id and user id first; see ``schema._version_3``).

    PostgreSQL needs it: on a table filled without ANALYZE (autovacuum off, a bulk
    import, a restore) it costs the ``(namespace, user_id, created_at)`` index as cheap
    as the unique ``(namespace, token_hash)`` one and filters every session of the
    namespace. False where an equality on every column of a unique key wins whatever
    the statistics (MySQL's and MariaDB's const access; SQLite counts it as one row):
    those keep version 1's keys."""

    def __init__(self) -> None:
        self._compiled: dict[str, Compiled] = {}
        self._compiled_lock = threading.Lock()
        self.cached: Callable[[str], Compiled | None] = self._compiled.get
        """The statement ``compile`` compiled already, or None: a C call, where
        ``compile`` is a Python one (once per statement executed)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    # --- statements -------------------------------------------------------------------

    def key(self, length: int) -> str:
        """An indexed text column (MySQL cannot index TEXT and compares case-insensitively
        by default: its dialect must use a binary collation here)."""
        return f"VARCHAR({length})"

    def excluded(self, column: str) -> str:
        """The value an upsert tried to insert (MySQL 8: an alias such as ``new.column``)."""
        return f"excluded.{column}"

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        conflict: Sequence[str],
        updates: Mapping[str, str],
        where: str | None = None,
    ) -> str:
        """INSERT that updates the row already holding the key; ``where`` limits the update.

        In ``updates`` a bare ``table.column`` is the existing row as it was before the
        statement (SQLite and PostgreSQL evaluate every SET against the old row). MySQL's
        ON DUPLICATE KEY UPDATE assigns left to right, each later SET seeing the earlier
        ones, and has no WHERE: its dialect must order the assignments so the decision
        columns (``allowed``, the rate-limit state) are computed before what they read is
        overwritten, or fold ``where`` into each assignment.
        """
        values = ", ".join("(" + ", ".join(row) + ")" for row in rows)
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"
        return f"{insert} {self.on_conflict(table, conflict, updates, where)}"

    def on_conflict(
        self, table: str, conflict: Sequence[str], updates: Mapping[str, str], where: str | None
    ) -> str:
        """What follows an upsert's INSERT: the dialect's own words for the update."""
        assignments = ", ".join(
            f"{column} = {expression}" for column, expression in updates.items()
        )
        clause = f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {assignments}"
        return clause if where is None else f"{clause} WHERE {where}"

    def real_parameter(self, name: str) -> str:
        """A float parameter whose type the server cannot infer from its neighbours
        (PostgreSQL would guess integer next to an integer column)."""
        return f"CAST(:{name} AS {self.real})"

    def later(self, left: str, right: str) -> str:
        """The larger of two non-NULL numbers (SQLite spells it ``max``)."""
        return f"GREATEST({left}, {right})"

    def same(self, left: str, right: str) -> str:
        """Equality where NULL equals NULL (MySQL: ``<=>``)."""
        return f"{left} IS NOT DISTINCT FROM {right}"

    def skip(self, count: str) -> str:
        """Skip the first ``count`` rows of an ordered subquery, keep the rest."""
        return f"OFFSET {count}"

    def target_rows(self, select: str) -> str:
        """A subquery reading the table its statement deletes from (MySQL refuses both
        that and LIMIT inside IN: its dialect reads the rows through a derived table)."""
        return select

    def write_then_read(self, write: str, read: str) -> str | None:
        """``write`` then ``read`` as one command, atomic and in one round trip, for
        databases without RETURNING that run several statements per command (MySQL);
        None where there is no such form. ``read`` may use ``changed_rows``."""
        return None

    def floor(self, expression: str) -> str:
        return f"floor({expression})"

    def delete_batch(self, table: str, key: str, where: str, size: int) -> str:
        """Delete at most ``size`` rows matching ``where``: short locks on a large table.

        MySQL cannot read the table it deletes from in a subquery: it says
        ``DELETE FROM table WHERE ... LIMIT size`` instead. ``where`` stands outside
        too: under READ COMMITTED a row rewritten after the subquery read it (an expired
        blacklist entry renewed) is re-checked against the outer WHERE only.
        """
        return (
            f"DELETE FROM {table} WHERE {key} IN "
            f"(SELECT {key} FROM {table} WHERE {where} LIMIT {int(size)}) AND ({where})"
        )

    def create_index(
        self, name: str, table: str, columns: Sequence[str], *, unique: bool = False
    ) -> str:
        kind = "UNIQUE INDEX" if unique else "INDEX"
        return f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({', '.join(columns)})"

    def drop_index(self, name: str, table: str) -> str:
        return f"DROP INDEX IF EXISTS {name}"

    def drop_unique(self, table: str, columns: Sequence[str]) -> str:
        """Drop the UNIQUE constraint over exactly ``columns`` (in that order), if any.

        Version 1 left the constraints unnamed and the server named them (truncated to
        63 bytes under a long prefix): the catalog finds the name by the columns.
        """
        listed = ", ".join(f"'{column}'" for column in columns)
        return (
            "DO $$DECLARE found name; BEGIN "
            "SELECT conname INTO found FROM pg_constraint "
            f"WHERE conrelid = '{table}'::regclass AND contype = 'u' AND conkey = ARRAY("
            f"SELECT attnum FROM unnest(ARRAY[{listed}]) WITH ORDINALITY AS wanted(col, ord) "
            f"JOIN pg_attribute ON attrelid = '{table}'::regclass AND attname = col "
            "ORDER BY ord); "
            f"IF found IS NOT NULL THEN EXECUTE 'ALTER TABLE {table} DROP CONSTRAINT ' "
            "|| quote_ident(found); END IF; END$$"
        )

    def analyze(self, tables: Sequence[str]) -> tuple[str, ...]:
        """Statements refreshing the planner's statistics of ``tables`` (``migrate`` runs
        them on the tables it created or changed: an unanalyzed table can be misplanned)."""
        return (f"ANALYZE {', '.join(tables)}",)

    def blob_as_integer(self, expression: str) -> str:
        """The integer a blob spells in canonical decimal, or NULL when it spells anything
        else or lies outside signed 64 bits (incr bounds the result with parameters)."""
        raise NotImplementedError(f"{type(self).__name__} must implement blob_as_integer")

    @staticmethod
    def canonical_integer(text: str, matches: str, wide: str, integer: str) -> str:
        """``blob_as_integer`` over ``text`` (the blob as text): NULL unless ``matches``
        (the dialect's test against ``CANONICAL_DECIMAL``) holds and the value, cast to
        the ``wide`` numeric type, fits signed 64 bits; then ``text`` cast to ``integer``.
        Nested CASEs: a database may evaluate AND's operands in any order, and the casts
        must only ever see text that passed the pattern."""
        return (
            f"(CASE WHEN {matches} THEN "
            f"CASE WHEN CAST({text} AS {wide}) BETWEEN -9223372036854775808 AND "
            f"9223372036854775807 THEN CAST({text} AS {integer}) END END)"
        )

    def integer_as_blob(self, expression: str) -> str:
        """An integer as the decimal text the value codec reads, as a blob."""
        raise NotImplementedError(f"{type(self).__name__} must implement integer_as_blob")

    # --- parameters -------------------------------------------------------------------

    def compile(self, sql: str) -> Compiled:
        """Turn ``:name`` parameters into the driver's placeholders (cached per statement text)."""
        compiled = self._compiled.get(sql)
        if compiled is None:
            compiled = self._compile(sql)
            with self._compiled_lock:
                if len(self._compiled) < _COMPILED_CACHE_SIZE:
                    self._compiled[sql] = compiled
        return compiled

    def _compile(self, sql: str) -> Compiled:
        names: list[str] = []
        if self.paramstyle == "format":
            sql = sql.replace("%", "%%")

        def placeholder(match: re.Match[str]) -> str:
            name = match.group(1)
            if self.paramstyle == "numeric":
                if name not in names:
                    names.append(name)
                return f"${names.index(name) + 1}"
            names.append(name)
            return "?" if self.paramstyle == "qmark" else "%s"

        return Compiled(_NAMED.sub(placeholder, sql), tuple(names))

    def arguments(self, compiled: Compiled, params: Mapping[str, object]) -> tuple[object, ...]:
        """The values in placeholder order; ``:now`` is read from ``clock`` at this moment."""
        if self.clock is None or not compiled.clocked:
            return compiled.pick(params)
        return compiled.pick({**params, "now": self.clock()})
