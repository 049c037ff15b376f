"""MySQL's and MariaDB's spelling of the SQL family's differences.

Written for both MySQL 8 and MariaDB 10.5+ without branching on the server: no
RETURNING (MySQL has none), no ``INSERT ... AS alias`` (MariaDB has none), no
``CREATE INDEX IF NOT EXISTS`` (MySQL has none), no user variables assigned inside
expressions (deprecated in MySQL 8).
"""

# SQL text is assembled from identifiers checked by Tables and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from authstore.adapters.sql.dialect import CANONICAL_DECIMAL, Compiled, Dialect
from authstore.adapters.sql.schema import Tables

__all__ = ["KEY_BYTES", "MySQLDialect"]

KEY_BYTES = 1792
"""The widest key column. A key column holds ``length`` characters of UTF-8 (4 bytes
each at worst) as bytes; InnoDB indexes at most 3072 bytes, and the backup codes'
primary key (namespace, user_id, code_hash) must fit: 256 + 1020 + 1792 = 3068. The
cap binds only cache_key (whose content check_key bounds to 1091 bytes) and code_hash
(hashes are ASCII). A longer value is an error, never truncated: sessions run in
strict mode."""

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SEPARATOR = ";\n"
"""How ``write_then_read`` joins statements into one command (the runners split on it)."""
_ALL_ROWS = "18446744073709551615"
"""MySQL's own idiom for "no LIMIT" where an OFFSET needs one."""


class MySQLDialect(Dialect):
    """One per runner: the lock rows live in the runner's own cache table."""

    name = "mysql"
    paramstyle = "format"
    # The database's clock with microseconds. UNIX_TIMESTAMP reads NOW in the session's
    # time zone: every session is set to UTC, where no wall-clock hour repeats (in a
    # zone with DST, the fall-back hour would map to two instants). NOW(6) is fixed for
    # the whole statement, so every expression of one statement sees one instant.
    now = "CAST(UNIX_TIMESTAMP(NOW(6)) AS DOUBLE)"
    returning = False
    assigns_in_order = True
    # An operation's own transaction runs at READ COMMITTED: its writers are serialized
    # by the user's lock row (transaction_lock), and without REPEATABLE READ's gap locks
    # two users' link issues or capped session creates no longer deadlock on the gaps of
    # the user index (100 concurrent issues for 100 users: about 100 deadlocks before).
    # Single-command operations keep the session's REPEATABLE READ.
    begin = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;\nBEGIN"
    # Affected rows count CHANGED rows (the connections do not set CLIENT.FOUND_ROWS):
    # ON DUPLICATE KEY UPDATE then says 1 inserted, 2 updated, 0 left as it was, which
    # add() needs; the reads after a write say where a matched row may be unchanged.
    changed_rows = "ROW_COUNT()"
    migration_unlock = "SELECT RELEASE_LOCK(:lock_name)"

    blob = "LONGBLOB"
    real = "DOUBLE"
    integer = "INT"
    bigint = "BIGINT"
    boolean = "BOOLEAN"
    text = "MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    serial_key = "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
    table_exists = (
        "SELECT 1 FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = :name"
    )
    token_first = False  # a full unique key equality is a const lookup: see Dialect

    def __init__(self, tables: Tables, lock_wait: float) -> None:
        super().__init__()
        self.tables = tables
        # The lock of a user's sessions or links: an upsert of a row in the cache table,
        # held by InnoDB until the transaction ends (its waits time out with error 1205
        # and take part in deadlock detection). The row is born expired: reads never see
        # it and purge_expired removes it. Its key's kind ("sessions", "magic_links") is
        # never one of the cache's one-letter kinds.
        self.transaction_lock = (
            f"INSERT INTO {tables.cache} (cache_key, value, epoch, expires_at) "
            f"VALUES (:lock_name, NULL, NULL, {self.now}) "
            "ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)"
        )
        self.migration_lock = f"SELECT GET_LOCK(:lock_name, {max(1, math.ceil(lock_wait))})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} prefix={self.tables.prefix!r}>"

    # --- statements -------------------------------------------------------------------

    def _compile(self, sql: str) -> Compiled:
        """A command of several statements (``write_then_read``) whose parameters repeat
        (the rate limiters: 85 and 122 placeholders for sliding window and GCRA) binds
        each repeated value once, into a session variable set at its start.

        PyMySQL and aiomysql interpolate every placeholder on the client, one escape
        each, and the server parses each literal again: this is most of what the long
        statements cost beyond the round trip. Variables are set by SET, never inside an
        expression (deprecated in MySQL 8); each command sets every variable it reads, so
        nothing left by an earlier command on the connection is ever read. Parameters
        used at most twice (the key: its index lookups) stay inline.
        """
        counts = Counter(_NAMED.findall(sql))
        repeated = [name for name, count in counts.items() if count > 2]
        if _SEPARATOR not in sql or not repeated:
            return super()._compile(sql)
        variable = {name: f"@authstore_{name}" for name in repeated}
        body = _NAMED.sub(lambda match: variable.get(match[1], match[0]), sql)
        assignments = ", ".join(f"{variable[name]} = :{name}" for name in repeated)
        return super()._compile(f"SET {assignments}{_SEPARATOR}{body}")

    def key(self, length: int) -> str:
        # Bytes compared as bytes: 'Token' <> 'token' and 'a' <> 'a ' (utf8mb4_bin pads
        # with spaces, and the default collations also ignore case: both would let one
        # user's key or id match another's). The driver hands these back as bytes; the
        # runner decodes them.
        return f"VARBINARY({min(4 * length, KEY_BYTES)})"

    def excluded(self, column: str) -> str:
        # VALUES() is deprecated from MySQL 8.0.20 in favour of a row alias, which
        # MariaDB does not have; both still run it.
        return f"VALUES({column})"

    def on_conflict(
        self, table: str, conflict: Sequence[str], updates: Mapping[str, str], where: str | None
    ) -> str:
        """ON DUPLICATE KEY UPDATE, which fires on any unique key: ``conflict`` must be
        the table's only one (true of every table that is upserted).

        It has no WHERE: ``where`` guards each assignment instead, and since the
        assignments run left to right, a later guard reads the columns already set.
        The operations order them so that stays exact: add() sets ``expires_at``
        (all its guard reads) last; incr()'s guard, reread after ``value`` is set,
        still picks the same branch for ``epoch`` (always NULL on a counter) and for
        ``expires_at`` (unchanged unless expired, which ``value`` does not affect).
        """
        if where is not None:
            updates = {
                column: f"IF({where}, {expression}, {table}.{column})"
                for column, expression in updates.items()
            }
        assignments = ", ".join(f"{column} = {value}" for column, value in updates.items())
        return f"ON DUPLICATE KEY UPDATE {assignments}"

    def real_parameter(self, name: str) -> str:
        return f"CAST(:{name} AS DOUBLE)"

    def same(self, left: str, right: str) -> str:
        return f"{left} <=> {right}"

    def skip(self, count: str) -> str:
        return f"LIMIT {_ALL_ROWS} OFFSET {count}"

    def target_rows(self, select: str) -> str:
        # A derived table with a LIMIT is materialized before the DELETE reads it.
        return f"SELECT * FROM ({select}) AS target_rows"

    def floor(self, expression: str) -> str:
        return f"FLOOR({expression})"

    def delete_batch(self, table: str, key: str, where: str, size: int) -> str:
        return f"DELETE FROM {table} WHERE {where} LIMIT {int(size)}"

    def analyze(self, tables: Sequence[str]) -> tuple[str, ...]:
        return (f"ANALYZE TABLE {', '.join(tables)}",)  # a row per table: the runners read it

    def create_index(
        self, name: str, table: str, columns: Sequence[str], *, unique: bool = False
    ) -> str:
        # MySQL has no CREATE INDEX IF NOT EXISTS: ask information_schema, then run the
        # DDL or nothing as a prepared statement (a user variable set by SET, not in an
        # expression). Identifiers only: Tables checked them.
        kind = "UNIQUE INDEX" if unique else "INDEX"
        create = f"CREATE {kind} {name} ON {table} ({', '.join(columns)})"
        return (
            f"SET @authstore_ddl = (SELECT IF(COUNT(*) = 0, '{create}', 'DO 0') "
            "FROM information_schema.statistics WHERE table_schema = DATABASE() "
            f"AND table_name = '{table}' AND index_name = '{name}');\n"
            "PREPARE authstore_ddl FROM @authstore_ddl;\n"
            "EXECUTE authstore_ddl;\n"
            "DEALLOCATE PREPARE authstore_ddl"
        )

    def blob_as_integer(self, expression: str) -> str:
        # MySQL 8 refuses regular expressions on binary strings; latin1 maps every byte
        # to a character, so the conversion never warns (a warning would fail the
        # statement in strict mode, as would casting anything but checked digits). "$"
        # also matches before a final newline: the second test rules that out.
        text = f"CONVERT({expression} USING latin1)"
        matches = f"{text} REGEXP {CANONICAL_DECIMAL} AND {text} NOT REGEXP '[^0-9-]'"
        return self.canonical_integer(text, matches, "DECIMAL(20, 0)", "SIGNED")

    def integer_as_blob(self, expression: str) -> str:
        return f"CAST({expression} AS BINARY)"

    def write_then_read(self, write: str, read: str) -> str:
        # Several statements in one command: one round trip, and the row lock the write
        # takes holds until COMMIT, so the read sees exactly what this write left.
        return f"BEGIN;\n{write};\n{read};\nCOMMIT"
