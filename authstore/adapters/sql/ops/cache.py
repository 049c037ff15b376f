"""The cache contract in SQL: entries in one table, their rate limiters' state in
another (``ratelimit``); keys arrive namespaced (``namespace:kind:key``).

The statements each dialect gets: ``tests/sql/golden/<dialect>/cache.*.sql``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

import math

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops.base import CHUNK, chunks, in_list
from authstore.adapters.sql.ops.ratelimit import SqlRateLimitOps, is_limiter_key
from authstore.adapters.sql.schema import Tables

__all__ = ["SqlCacheOps"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class SqlCacheOps(SqlRateLimitOps):
    """Cache entries in one table, rate-limit state in another; keys arrive namespaced."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        super().__init__(dialect, tables)
        d, t, now = dialect, tables.cache, dialect.now
        self._live = {
            t: f"({t}.expires_at IS NULL OR {t}.expires_at > {now})",
            tables.rate_limits: self._limiter_live,
        }
        live = self._live[t]
        expired = f"({t}.expires_at IS NOT NULL AND {t}.expires_at <= {now})"
        columns = self._columns = ["cache_key", "value", "epoch", "expires_at"]
        overwrite = self._overwrite = {column: d.excluded(column) for column in columns[1:]}

        self._get = f"SELECT value FROM {t} WHERE cache_key = :key AND {live}"
        self._exists = f"SELECT 1 FROM {t} WHERE cache_key = :key AND {live}"
        self._ttl = f"SELECT expires_at - {now} FROM {t} WHERE cache_key = :key AND {live}"
        self._read_epoch = f"SELECT epoch FROM {t} WHERE cache_key = :key AND {live}"
        expire = f"UPDATE {t} SET expires_at = {now} + :ttl WHERE cache_key = :key AND {live}"
        # MySQL counts changed rows: a key that already had this expiry still applied
        self._expire = self._returning(
            expire, "1", t, "cache_key = :key", applied=f"{{changed}} > 0 OR {live}"
        )
        single = [[":key", ":value", "NULL", f"{now} + :ttl"]]
        self._set = d.upsert(t, columns, single, ["cache_key"], overwrite)
        self._add = d.upsert(t, columns, single, ["cache_key"], overwrite, where=expired)

        # incr: the UPDATE's WHERE refuses a live value that is not an integer, so no row
        # comes back; a missing or expired key is (re)created and always comes back.
        number = d.blob_as_integer(f"{t}.value")
        incr = d.upsert(
            t,
            columns,
            [[":key", ":initial", "NULL", f"{now} + :ttl"]],
            ["cache_key"],
            {
                "value": f"CASE WHEN {expired} THEN {d.excluded('value')} "
                f"ELSE {d.integer_as_blob(f'{number} + :delta')} END",
                "epoch": "NULL",
                "expires_at": f"CASE WHEN {expired} THEN {d.excluded('expires_at')} "
                f"ELSE {t}.expires_at END",
            },
            where=f"{expired} OR {number} BETWEEN :lowest AND :highest",
        )
        self._incr = self._returning(
            incr,
            "value",
            t,
            "cache_key = :key",
            # incr by 0 changes nothing yet applied; a refused value is out of bounds
            applied=f"{{changed}} > 0 OR {number} BETWEEN :lowest AND :highest",
        )

        # raise_to: the instant only moves forward and the entry lives as long as the
        # longest expiry asked for (NULL: forever), so a revocation is never shortened.
        new_expiry = d.excluded("expires_at")
        raise_to = d.upsert(
            t,
            columns,
            [[":key", "NULL", f"coalesce(:at, {now})", f"{now} + :ttl"]],
            ["cache_key"],
            {
                "value": "NULL",
                "epoch": f"CASE WHEN {expired} OR {t}.epoch IS NULL "
                f"OR {t}.epoch < {d.excluded('epoch')} THEN {d.excluded('epoch')} "
                f"ELSE {t}.epoch END",
                "expires_at": f"CASE WHEN {expired} THEN {new_expiry} "
                f"WHEN {t}.expires_at IS NULL OR {new_expiry} IS NULL THEN NULL "
                f"WHEN {new_expiry} > {t}.expires_at THEN {new_expiry} "
                f"ELSE {t}.expires_at END",
            },
        )
        self._raise_to = self._returning(raise_to, "epoch", t, "cache_key = :key")

        # A record kept whole (a rate-limit group) and the store's clock in one read; the
        # scalar subquery gives a row (with a NULL body) when there is no record.
        self._read_record = (
            f"SELECT (SELECT value FROM {t} WHERE cache_key = :key AND {live}), {now}"
        )
        # Compare-and-set: the live record still holds the body read (a record read as
        # missing is created with ``add``, which writes only where none is live).
        self._replace_record = (
            f"UPDATE {t} SET value = :value, expires_at = {now} + :ttl "
            f"WHERE cache_key = :key AND value = :old AND {live}"
        )

    def _table(self, key: str) -> str:
        return self.tables.rate_limits if is_limiter_key(key) else self.tables.cache

    def get(self, key: str) -> Op[bytes | None]:
        row = yield Query(self._get, {"key": key}, "one")
        return None if row is None else bytes(row[0])

    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]:
        t = self.tables.cache
        found: dict[str, bytes] = {}
        for chunk in chunks(keys):
            names, params = in_list(chunk)
            sql = (
                f"SELECT cache_key, value FROM {t} WHERE cache_key IN ({names}) AND {self._live[t]}"
            )
            rows: list[Row] = yield Query(sql, params, "all")
            found.update((key, bytes(value)) for key, value in rows)
        return found

    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]:
        yield Query(self._set, {"key": key, "value": value, "ttl": ttl})

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Op[None]:
        keys = list(items)
        if len(keys) > CHUNK:
            yield Begin()
        for chunk in chunks(keys):
            rows = [
                [f":k{i}", f":v{i}", "NULL", f"{self.dialect.now} + :ttl"]
                for i in range(len(chunk))
            ]
            params: dict[str, object] = {"ttl": ttl}
            for index, key in enumerate(chunk):
                params[f"k{index}"], params[f"v{index}"] = key, items[key]
            sql = self.dialect.upsert(
                self.tables.cache, self._columns, rows, ["cache_key"], self._overwrite
            )
            yield Query(sql, params)

    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]:
        written = yield Query(self._add, {"key": key, "value": value, "ttl": ttl}, "rowcount")
        return bool(written)

    def delete(self, key: str) -> Op[bool]:
        table = self._table(key)
        sql = f"DELETE FROM {table} WHERE cache_key = :key AND {self._live[table]}"
        deleted = yield Query(sql, {"key": key}, "rowcount")
        return bool(deleted)

    def delete_many(self, keys: list[str]) -> Op[int]:
        """Only live entries count (and are deleted); expired ones are left to purge_expired."""
        by_table: dict[str, list[str]] = {}
        for key in keys:
            by_table.setdefault(self._table(key), []).append(key)
        if sum(math.ceil(len(group) / CHUNK) for group in by_table.values()) > 1:
            yield Begin()
        total = 0
        for table, group in by_table.items():
            for chunk in chunks(group):
                names, params = in_list(chunk)
                sql = f"DELETE FROM {table} WHERE cache_key IN ({names}) AND {self._live[table]}"
                total += yield Query(sql, params, "rowcount")
        return total

    def exists(self, key: str) -> Op[bool]:
        row = yield Query(self._exists, {"key": key}, "one")
        return row is not None

    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        # the stored value may be any signed 64-bit integer for which value + delta still is
        lowest, highest = INT64_MIN - min(delta, 0), INT64_MAX - max(delta, 0)
        params = {
            "key": key,
            "delta": delta,
            "initial": str(delta).encode("ascii"),
            "ttl": ttl,
            "lowest": lowest,
            "highest": highest,
        }
        if self.dialect.returning:  # _run_returning's one statement, without its generator
            row = yield Query(self._incr.single, params, "one")
        else:
            row = yield from self._run_returning(self._incr, params)
        if row is None:
            raise ValueError("the cached value is not an integer, or adding delta leaves 64 bits")
        return int(bytes(row[0]))

    def expire(self, key: str, ttl: float | None) -> Op[bool]:
        row = yield from self._run_returning(self._expire, {"key": key, "ttl": ttl})
        return row is not None

    def ttl(self, key: str) -> Op[float | None]:
        row = yield Query(self._ttl, {"key": key}, "one")
        if row is None:
            return None
        return math.inf if row[0] is None else max(0.0, float(row[0]))

    def raise_to(self, key: str, at: float | None, ttl: float | None) -> Op[float]:
        row = yield from self._run_returning(self._raise_to, {"key": key, "at": at, "ttl": ttl})
        assert row is not None, "an upsert without WHERE always writes"
        return float(row[0])

    def read_epoch(self, key: str) -> Op[float | None]:
        row = yield Query(self._read_epoch, {"key": key}, "one")
        return None if row is None or row[0] is None else float(row[0])

    def read_record(self, key: str, writing: bool = True) -> Op[tuple[bytes | None, object, float]]:
        row = yield Query(self._read_record, {"key": key}, "one")
        body = None if row[0] is None else bytes(row[0])
        return body, body, float(row[1])

    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> Op[bool]:
        if token is None:
            return (yield from self.add(key, body, ttl))
        params = {"key": key, "value": body, "old": token, "ttl": ttl}
        written = yield Query(self._replace_record, params, "rowcount")
        return bool(written)

    def purge_expired(self) -> Op[int]:
        t, limits, now = self.tables.cache, self.tables.rate_limits, self.dialect.now
        entries = yield from self._purge(t, "cache_key", f"expires_at <= {now}")
        limiters = yield from self._purge(limits, "cache_key", f"expires_at <= {now}")
        return entries + limiters
