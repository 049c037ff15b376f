"""The four contracts' operations for every SQL database, written once.

Each single-record operation is one statement (UPSERT ... RETURNING, a guarded
UPDATE or DELETE) so it is atomic without an explicit transaction and costs one
round trip; only operations that touch several rows yield ``Begin``. Reads filter
expired rows out, so expired data is never returned whether or not a purge ran.
Differences between databases go through the ``Dialect``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authstore.adapters.common.logic import LIMITER_KINDS
from authstore.adapters.common.ops import FixedWindowState, GcraState, Op, SlidingWindowState
from authstore.adapters.common.ratelimit import (
    EPSILON,
    limiter_state,
    step_fixed_window,
    step_gcra,
    step_sliding_window,
)
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.schema import Tables
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import (
    MagicLinkRecord,
    RateLimitAlgorithm,
    SessionRecord,
    TotpState,
    from_epoch,
)

__all__ = ["SqlCacheOps", "SqlMagicLinkOps", "SqlSessionOps", "SqlTotpOps"]

PURGE_BATCH = 1000
"""Rows per purge statement: a large table is cleaned without one long write lock."""
CHUNK = 250
"""Keys per IN list or rows per multi-row INSERT (far below every database's parameter limit)."""

_LIMITER_KINDS = frozenset(LIMITER_KINDS.values())


@dataclass(frozen=True, slots=True)
class _Returning:
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _in_list(keys: Sequence[str]) -> tuple[str, dict[str, object]]:
    names = [f"k{index}" for index in range(len(keys))]
    return ", ".join(f":{name}" for name in names), dict(zip(names, keys, strict=True))


class _SqlOps:
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
    ) -> _Returning:
        """``applied``: true after the write iff it applied to the row, ``{changed}``
        standing for the rows it changed (needed where the write may match nothing)."""
        select = f"SELECT {columns} FROM {table} WHERE {where}"
        changed = self.dialect.changed_rows
        # no rowcount to look at between the two: the read checks the write applied
        read_back = select
        if applied is not None and changed is not None:
            read_back = f"{select} AND ({applied.replace('{changed}', changed)})"
        return _Returning(
            single=f"{write} RETURNING {columns}",
            write=write,
            select=select,
            both=self.dialect.write_then_read(write, read_back),
        )

    def _run_returning(
        self, statement: _Returning, params: Mapping[str, object], *, in_transaction: bool = False
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


# --- cache ------------------------------------------------------------------------------


def _is_limiter_key(key: str) -> bool:
    """Full keys are ``namespace:kind:key``; rate-limit kinds live in their own table."""
    return key.partition(":")[2].partition(":")[0] in _LIMITER_KINDS


# Rate-limit transitions as SQL expressions over a row's old columns (NULL for no row),
# mirroring ratelimit.step_*: evaluated once with NULLs for the INSERT and once over the
# existing row for the conflict UPDATE, so both branches compute exactly what step_* does.
#
# Each returns the new row's columns in the order MySQL must assign them (its ON
# DUPLICATE KEY UPDATE assigns left to right, each SET seeing the columns already set):
# ``allowed`` first, and every column after the last SET that reads its old value.
# With ``in_order`` (the table's name, on MySQL) later SETs read the decision from the
# ``allowed`` column just set instead of recomputing it from columns already overwritten.

_LimiterColumns = dict[str, str]
"""The new rate-limit row, column by column (``allowed`` is this hit's decision)."""

LimiterState = Callable[[Dialect, str, str, str, str, str | None], _LimiterColumns]


def _counted(allowed: str, count: str) -> str:
    """A refused hit consumes nothing."""
    return f"(CASE WHEN {allowed} THEN {count} + :cost ELSE {count} END)"


def _fixed_window(
    d: Dialect, hits: str, previous: str, mark: str, now: str, in_order: str | None = None
) -> _LimiterColumns:
    """step_fixed_window: ``mark`` is the window's end."""
    window = d.real_parameter("window")
    reset = f"({mark} IS NULL OR {mark} <= {now})"
    count = f"(CASE WHEN {reset} THEN 0 ELSE {hits} END)"
    end = f"(CASE WHEN {reset} THEN {now} + {window} ELSE {mark} END)"
    allowed = f"({count} + :cost <= :limit)"
    decided = allowed if in_order is None else f"{in_order}.allowed"
    hits_after = _counted(decided, count)
    return {
        "allowed": allowed,
        "hits": hits_after,
        "previous_hits": "0",
        "expires_at": end,
        "mark": end,
    }


def _sliding_window(
    d: Dialect, hits: str, previous: str, mark: str, now: str, in_order: str | None = None
) -> _LimiterColumns:
    """step_sliding_window: ``mark`` is the current aligned window's start."""
    window = d.real_parameter("window")
    start = f"({d.floor(f'{now} / {window}')} * {window})"
    tolerance = d.real_parameter("window_tolerance")
    # half a window: starts near 1.8e9 may differ by an ulp, windows by a whole window
    same = f"abs({mark} - {start}) < {tolerance}"
    follows = f"abs({mark} - ({start} - {window})) < {tolerance}"
    earlier = f"(CASE WHEN {same} THEN {previous} WHEN {follows} THEN {hits} ELSE 0 END)"
    current = f"(CASE WHEN {same} THEN {hits} ELSE 0 END)"
    weight = f"(1.0 - ({now} - {start}) / {window})"
    slack = d.real_parameter("limit_slack")
    allowed = f"({earlier} * {weight} + {current} + :cost <= {slack})"
    # in order, hits cannot recompute the decision: previous_hits is already overwritten
    decided = allowed if in_order is None else f"{in_order}.allowed"
    # the current window's hits weigh on the next window too
    expiry = f"{start} + 2 * {window}"
    return {
        "allowed": allowed,
        "previous_hits": earlier,
        "hits": _counted(decided, current),
        "expires_at": expiry,
        "mark": start,
    }


def _gcra(
    d: Dialect, hits: str, previous: str, mark: str, now: str, in_order: str | None = None
) -> _LimiterColumns:
    """step_gcra: ``mark`` is the anchor instant and ``hits`` the units counted from it.

    GCRA has no use for ``previous_hits``: in order (MySQL) it keeps the units before
    this hit, because the new anchor and the new units each need both old columns.
    """
    window, slack = d.real_parameter("window"), d.real_parameter("window_slack")
    backlog = f"({hits} * {window} / :limit - ({now} - {mark}))"
    reset = f"({mark} IS NULL OR {backlog} <= 0)"
    # a lowered limit or window must not lock out for longer than one window
    over = f"({backlog} > {window})"
    anchor = f"(CASE WHEN {reset} OR {over} THEN {now} ELSE {mark} END)"
    units = f"(CASE WHEN {reset} THEN 0 WHEN {over} THEN :limit ELSE {hits} END)"
    allowed = f"(({units} + :cost) * {window} / :limit - ({now} - {anchor}) <= {slack})"
    if in_order is None:
        counted, before = _counted(allowed, units), "0"
    else:
        counted, before = _counted(f"{in_order}.allowed", f"{in_order}.previous_hits"), units
    # a window past the theoretical arrival time: the bucket is surely full again by then
    expiry = f"{anchor} + {counted} * {window} / :limit + {window}"
    return {
        "allowed": allowed,
        "previous_hits": before,
        "expires_at": expiry,
        "mark": anchor,
        "hits": counted,
    }


_Decision = tuple[bool, int, int, float, float]
"""A hit decided in Python: allowed, then the row's hits, previous_hits, mark, expires_at."""
_Decide = Callable[[Row | None, float], _Decision]
_Decided = tuple[bool, int, int, float, float]
"""allowed, hits, previous_hits, mark, and the instant the hit was decided at."""


class SqlCacheOps(_SqlOps):
    """Cache entries in one table, rate-limit state in another; keys arrive namespaced."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        super().__init__(dialect, tables)
        d, t, now = dialect, tables.cache, dialect.now
        self._live = {
            t: f"({t}.expires_at IS NULL OR {t}.expires_at > {now})",
            tables.rate_limits: f"{tables.rate_limits}.expires_at > {now}",
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
        limits = tables.rate_limits
        self._read_limiter = (
            f"SELECT hits, previous_hits, mark, touched_at, {now} FROM {limits} "
            f"WHERE cache_key = :key AND {self._live[limits]}"
        )

        if d.local:
            self._local_limiters()
        else:
            self._fixed_window = self._limiter(_fixed_window, "allowed, hits, mark, touched_at")
            self._sliding_window = self._limiter(
                _sliding_window, "allowed, previous_hits, hits, mark, touched_at"
            )
            self._gcra = self._limiter(_gcra, "allowed, mark, hits, touched_at")

    def _local_limiters(self) -> None:
        """Where a statement costs no round trip (``Dialect.local``): a read, step_* itself,
        and a write only when the row must change.

        The write is guarded by the row as it was read (a compare-and-set): it applies
        only if no one wrote or deleted the row in between (or, for a row found missing,
        inserted it), and then this hit is exactly step_* on the row it read. ABA is harmless: the decision is a function of the row and the
        clock alone, so an identical row gives an identical decision.
        """
        d, t = self.dialect, self.tables.rate_limits
        if d.clock is None:
            raise TypeError(f"{d!r} decides rate limits locally: it needs a clock")
        state = ["hits", "previous_hits", "mark", "expires_at"]
        self._limiter_read = (
            f"SELECT {', '.join(state)}, touched_at FROM {t} WHERE cache_key = :key"
        )
        columns = [*state, "allowed", "touched_at"]
        # A row read is updated only if it is still exactly as read (deleted by a reset, it
        # stays deleted); a row found missing is inserted only if it is still missing.
        guard = " AND ".join(f"{column} = :old_{column}" for column in [*state, "touched_at"])
        self._limiter_update = (
            f"UPDATE {t} SET {', '.join(f'{column} = :{column}' for column in columns)} "
            f"WHERE cache_key = :key AND {guard}"
        )
        self._limiter_insert = (
            f"INSERT INTO {t} (cache_key, {', '.join(columns)}) "
            f"VALUES (:key, {', '.join(f':{column}' for column in columns)}) "
            "ON CONFLICT (cache_key) DO NOTHING"
        )

    def _limiter(self, state: LimiterState, columns: str) -> _Returning:
        d, t = self.dialect, self.tables.rate_limits
        fresh = {**state(d, "NULL", "NULL", "NULL", d.now, None), "touched_at": d.now}
        # A statement's clock is read when it starts: one that waited for the row's lock
        # can be older than the row's last hit. The row's clock never runs backwards, or
        # such a hit would take the sliding window back one window and forget its counts.
        now = d.later(f"{t}.touched_at", d.now)
        in_order = t if d.assigns_in_order else None
        old = state(d, f"{t}.hits", f"{t}.previous_hits", f"{t}.mark", now, in_order)
        update = {**old, "touched_at": now}
        sql = d.upsert(t, ["cache_key", *fresh], [[":key", *fresh.values()]], ["cache_key"], update)
        return self._returning(sql, columns, t, "cache_key = :key")

    def _table(self, key: str) -> str:
        return self.tables.rate_limits if _is_limiter_key(key) else self.tables.cache

    def _hit_locally(self, key: str, decide: _Decide) -> Op[_Decided]:
        """One hit where statements are free (see ``_local_limiters``): read the row, decide
        with step_*, write only when the row changes (a refused hit that changes nothing
        is that one read, its snapshot the moment it happened).

        The write is a compare-and-set against the row read; if another connection wrote
        in between, the hit is decided again inside a transaction (SQLite's BEGIN
        IMMEDIATE: no writer in between), where the guarded write cannot miss.
        """
        clock = self.dialect.clock
        assert clock is not None
        locked = False
        while True:
            row = yield Query(self._limiter_read, {"key": key}, "one")
            now = clock()
            # the row's clock never runs backwards (see _limiter)
            if row is not None and row[4] > now:
                now = float(row[4])
            allowed, hits, previous, mark, expires = decide(row, now)
            decided = allowed, hits, previous, mark, now
            if (
                not allowed
                and row is not None
                and (hits, previous, mark, expires) == tuple(row[:4])
            ):
                return decided  # a refused hit consumes nothing and moves nothing
            params: dict[str, object] = {
                "key": key,
                "hits": hits,
                "previous_hits": previous,
                "mark": mark,
                "expires_at": expires,
                "allowed": allowed,
                "touched_at": now,
            }
            if row is None:
                written = yield Query(self._limiter_insert, params, "rowcount")
            else:
                for index, column in enumerate(
                    ("hits", "previous_hits", "mark", "expires_at", "touched_at")
                ):
                    params[f"old_{column}"] = row[index]
                written = yield Query(self._limiter_update, params, "rowcount")
            if written:
                return decided
            if locked:
                raise RuntimeError("the rate-limit row changed inside its write transaction")
            yield Begin()
            locked = True

    def get(self, key: str) -> Op[bytes | None]:
        row = yield Query(self._get, {"key": key}, "one")
        return None if row is None else bytes(row[0])

    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]:
        t = self.tables.cache
        found: dict[str, bytes] = {}
        for chunk in _chunks(keys):
            names, params = _in_list(chunk)
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
        for chunk in _chunks(keys):
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
            for chunk in _chunks(group):
                names, params = _in_list(chunk)
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

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        if self.dialect.local:

            def decide(row: Row | None, now: float) -> _Decision:
                state = None if row is None else (int(row[0]), float(row[2]))
                allowed, count, end = step_fixed_window(state, now, limit, window, cost)
                return allowed, count, 0, end, end

            allowed, count, _, end, now = yield from self._hit_locally(key, decide)
            return allowed, count, end, now
        params = {"key": key, "limit": limit, "window": window, "cost": cost}
        row = yield from self._run_returning(self._fixed_window, params)
        assert row is not None
        allowed, hits, end, now = row
        return bool(allowed), int(hits), float(end), float(now)

    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]:
        if self.dialect.local:

            def decide(row: Row | None, now: float) -> _Decision:
                state = None if row is None else (int(row[1]), int(row[0]), float(row[2]))
                allowed, previous, current, start = step_sliding_window(
                    state, now, limit, window, cost
                )
                # the current window's hits weigh on the next window too
                return allowed, current, previous, start, start + 2 * window

            allowed, current, previous, start, now = yield from self._hit_locally(key, decide)
            return allowed, previous, current, start, now
        params = {
            "key": key,
            "cost": cost,
            "window": window,
            "window_tolerance": window / 2,
            "limit_slack": limit * (1 + EPSILON),
        }
        row = yield from self._run_returning(self._sliding_window, params)
        assert row is not None
        allowed, previous, current, start, now = row
        return bool(allowed), int(previous), int(current), float(start), float(now)

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        if self.dialect.local:

            def decide(row: Row | None, now: float) -> _Decision:
                state = None if row is None else (float(row[2]), int(row[0]))
                allowed, anchor, units = step_gcra(state, now, limit, window, cost)
                # a window past the theoretical arrival time (the SQL's expiry, see _gcra)
                return allowed, units, 0, anchor, anchor + units * window / limit + window

            allowed, units, _, anchor, now = yield from self._hit_locally(key, decide)
            return allowed, anchor, units, now
        params = {
            "key": key,
            "limit": limit,
            "window": window,
            "cost": cost,
            "window_slack": window * (1 + EPSILON),
        }
        row = yield from self._run_returning(self._gcra, params)
        assert row is not None
        allowed, anchor, units, now = row
        return bool(allowed), float(anchor), int(units), float(now)

    def read_limiter(
        self, key: str, algorithm: RateLimitAlgorithm
    ) -> Op[tuple[tuple[Any, ...] | None, float]]:
        row = yield Query(self._read_limiter, {"key": key}, "one")
        if row is None:
            return None, 0.0  # no state: what a hit would see does not depend on the clock
        hits, previous, mark, touched, now = row
        # the row's clock never runs backwards (see _limiter)
        now = max(float(now), float(touched))
        values = {
            RateLimitAlgorithm.FIXED_WINDOW: (hits, mark),
            RateLimitAlgorithm.SLIDING_WINDOW: (previous, hits, mark),
            RateLimitAlgorithm.GCRA: (mark, hits),
        }[algorithm]
        return limiter_state(algorithm, values), now

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


# --- sessions ---------------------------------------------------------------------------

_SESSION_COLUMNS = (
    "id, user_id, created_at, last_seen_at, expires_at, "
    "device_id, application_id, ip_address, user_agent, metadata"
)


def _session(row: Row) -> SessionRecord:
    public_id, user, created, seen, expires, device, application, ip, agent, metadata = row
    return SessionRecord(
        id=public_id,
        user_id=user,
        created_at=from_epoch(created),
        last_seen_at=from_epoch(seen),
        expires_at=from_epoch(expires),
        device_id=device,
        application_id=application,
        ip_address=ip,
        user_agent=agent,
        metadata=json.loads(metadata),
    )


def _claiming_insert(d: Dialect, table: str, values: Mapping[str, str]) -> str:
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


class SqlSessionOps(_SqlOps):
    """A revoked session keeps its row (``revoked_at``) until it expires: its token hash
    stays taken. Reads see only live, unrevoked rows."""

    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        t, now = tables.sessions, dialect.now
        self._live = f"{t}.expires_at > {now} AND {t}.revoked_at IS NULL"
        self._user = f"namespace = :namespace AND user_id = :user_id AND {self._live}"
        by_hash = "namespace = :namespace AND token_hash = :token_hash"
        self._by_hash = f"{by_hash} AND {self._live}"

        insert = _claiming_insert(
            dialect,
            t,
            {
                "id": ":session_id",
                "user_id": ":user_id",
                "device_id": ":device_id",
                "application_id": ":application_id",
                "ip_address": ":ip_address",
                "user_agent": ":user_agent",
                "metadata": ":metadata",
                "created_at": now,
                "last_seen_at": now,
                "revoked_at": "NULL",
                "expires_at": f"{now} + :ttl",
            },
        )
        self._create = self._returning(
            insert, _SESSION_COLUMNS, t, by_hash, applied="{changed} > 0"
        )
        # Keep the new session and the newest max_sessions - 1 others; revoke the rest of
        # the user's live sessions. The new one is left out by its hash, not by its time,
        # so a clock stepping back cannot evict it.
        self._evict = (
            f"UPDATE {t} SET revoked_at = {now} "
            f"WHERE namespace = :namespace AND user_id = :user_id AND seq IN ("
            + dialect.target_rows(
                f"SELECT seq FROM {t} WHERE {self._user} AND token_hash <> :token_hash "
                f"ORDER BY created_at DESC, seq DESC {dialect.skip(':keep_others')}"
            )
            + ")"
        )
        self._get = f"SELECT {_SESSION_COLUMNS} FROM {t} WHERE {self._by_hash}"
        touch = (
            f"UPDATE {t} SET last_seen_at = {now}, expires_at = coalesce({now} + :ttl, expires_at) "
            f"WHERE {self._by_hash}"
        )
        self._touch = self._returning(
            touch, _SESSION_COLUMNS, t, by_hash, applied=f"{{changed}} > 0 OR {self._live}"
        )
        self._revoke = f"UPDATE {t} SET revoked_at = {now} WHERE {self._by_hash}"
        self._list = (
            f"SELECT {_SESSION_COLUMNS} FROM {t} WHERE {self._user} "
            f"ORDER BY created_at DESC, seq DESC"
        )
        self._count = f"SELECT COUNT(*) FROM {t} WHERE {self._user}"

    def create(
        self,
        *,
        token_hash: str,
        session_id: str,
        user_id: str,
        device_id: str | None,
        application_id: str | None,
        ip_address: str | None,
        user_agent: str | None,
        metadata: str,
        ttl: float,
        max_sessions: int | None,
    ) -> Op[SessionRecord]:
        params = {
            "namespace": self.namespace,
            "token_hash": token_hash,
            "session_id": session_id,
            "user_id": user_id,
            "device_id": device_id,
            "application_id": application_id,
            "ip_address": ip_address,
            "user_agent": user_agent,
            "metadata": metadata,
            "ttl": ttl,
            "keep_others": None if max_sessions is None else max_sessions - 1,
        }
        capped = max_sessions is not None
        if capped:
            yield Begin()
            yield from self._lock(f"authstore:sessions:{self.namespace}:{user_id}")
        row = yield from self._run_returning(self._create, params, in_transaction=capped)
        if row is None:
            raise TokenInUseError("a session that has not expired holds this token")
        if capped:
            yield Query(self._evict, params, "rowcount")
        return _session(row)

    def get(self, token_hash: str) -> Op[SessionRecord | None]:
        params = {"namespace": self.namespace, "token_hash": token_hash}
        row = yield Query(self._get, params, "one")
        return None if row is None else _session(row)

    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]:
        params = {"namespace": self.namespace, "token_hash": token_hash, "ttl": ttl}
        row = yield from self._run_returning(self._touch, params)
        return None if row is None else _session(row)

    def revoke(self, token_hash: str) -> Op[bool]:
        params = {"namespace": self.namespace, "token_hash": token_hash}
        deleted = yield Query(self._revoke, params, "rowcount")
        return bool(deleted)

    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]:
        t = self.tables.sessions
        sql = (
            f"UPDATE {t} SET revoked_at = {self.dialect.now} "
            f"WHERE namespace = :namespace AND id = :session_id AND {self._live}"
        )
        if user_id is not None:
            sql += " AND user_id = :user_id"
        params = {"namespace": self.namespace, "session_id": session_id, "user_id": user_id}
        deleted = yield Query(sql, params, "rowcount")
        return bool(deleted)

    def revoke_all(self, user_id: str, except_hash: str | None, except_id: str | None) -> Op[int]:
        sql = (
            f"UPDATE {self.tables.sessions} SET revoked_at = {self.dialect.now} WHERE {self._user}"
        )
        if except_hash is not None:
            sql += " AND token_hash <> :except_hash"
        if except_id is not None:
            sql += " AND id <> :except_id"
        params = {
            "namespace": self.namespace,
            "user_id": user_id,
            "except_hash": except_hash,
            "except_id": except_id,
        }
        deleted: int = yield Query(sql, params, "rowcount")
        return deleted

    def list(self, user_id: str) -> Op[list[SessionRecord]]:
        rows: list[Row] = yield Query(
            self._list, {"namespace": self.namespace, "user_id": user_id}, "all"
        )
        return [_session(row) for row in rows]

    def count(self, user_id: str) -> Op[int]:
        row = yield Query(self._count, {"namespace": self.namespace, "user_id": user_id}, "one")
        return int(row[0])

    def purge_expired(self) -> Op[int]:
        t = self.tables.sessions
        return (yield from self._purge(t, "seq", f"expires_at <= {self.dialect.now}"))


# --- TOTP -------------------------------------------------------------------------------


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class SqlTotpOps(_SqlOps):
    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        d, t, codes, now = dialect, tables.totp, tables.backup_codes, dialect.now
        user = "namespace = :namespace AND user_id = :user_id"
        self._save_pending = d.upsert(
            t,
            ["namespace", "user_id", "pending_secret", "enabled", "created_at", "updated_at"],
            [[":namespace", ":user_id", ":secret", "FALSE", now, now]],
            ["namespace", "user_id"],
            {
                "pending_secret": d.excluded("pending_secret"),
                "updated_at": d.excluded("updated_at"),
            },
        )
        # Every SET reads the old row, and the pending secret is copied before it is cleared
        # (the order MySQL's left-to-right SET needs too).
        self._enable = (
            f"UPDATE {t} SET secret = pending_secret, pending_secret = NULL, enabled = TRUE, "
            f"enabled_at = {now}, updated_at = {now} "
            f"WHERE {user} AND pending_secret IS NOT NULL"
        )
        self._delete_codes = f"DELETE FROM {codes} WHERE {user}"
        self._delete_state = f"DELETE FROM {t} WHERE {user}"
        self._has_state = f"SELECT 1 FROM {t} WHERE {user}"
        # One statement, so the state and its codes are one snapshot: a row per unused
        # code (one row with a NULL code when there is none), in the order given.
        self._load = (
            f"SELECT enabled, secret, pending_secret, last_step, created_at, updated_at, "
            f"enabled_at, {codes}.code_hash FROM {t} LEFT JOIN {codes} "
            f"ON {codes}.namespace = {t}.namespace AND {codes}.user_id = {t}.user_id "
            f"WHERE {t}.namespace = :namespace AND {t}.user_id = :user_id "
            f"ORDER BY {codes}.code_order, {codes}.code_hash"
        )
        self._codes = codes
        self._use_code = f"DELETE FROM {codes} WHERE {user} AND code_hash = :code_hash"
        self._claim_step = (
            f"UPDATE {t} SET last_step = :step, updated_at = {now} "
            f"WHERE {user} AND (last_step IS NULL OR last_step < :step)"
        )

    def _params(self, user_id: str, **more: object) -> dict[str, object]:
        return {"namespace": self.namespace, "user_id": user_id, **more}

    def save_pending(self, user_id: str, secret: bytes) -> Op[None]:
        yield Query(self._save_pending, self._params(user_id, secret=secret))

    def enable(self, user_id: str) -> Op[bool]:
        changed = yield Query(self._enable, self._params(user_id), "rowcount")
        return bool(changed)

    def disable(self, user_id: str) -> Op[bool]:
        yield Begin()
        yield from self._lock(f"authstore:totp:{self.namespace}:{user_id}")
        yield Query(self._delete_codes, self._params(user_id))
        deleted = yield Query(self._delete_state, self._params(user_id), "rowcount")
        return bool(deleted)

    def load(self, user_id: str) -> Op[TotpState | None]:
        rows: list[Row] = yield Query(self._load, self._params(user_id), "all")
        if not rows:
            return None
        enabled, secret, pending, last_step, created, updated, enabled_at, _ = rows[0]
        hashes = tuple(str(row[7]) for row in rows if row[7] is not None)
        return TotpState(
            user_id=user_id,
            enabled=bool(enabled),
            secret=_blob(secret),
            pending_secret=_blob(pending),
            last_step=None if last_step is None else int(last_step),
            backup_codes_left=len(hashes),
            created_at=from_epoch(created),
            updated_at=from_epoch(updated),
            enabled_at=None if enabled_at is None else from_epoch(enabled_at),
            backup_code_hashes=hashes,
        )

    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]:
        yield Begin()
        # Under READ COMMITTED two replacements would each delete only the rows they saw
        # and insert their own set beside the other's (or collide on the key).
        yield from self._lock(f"authstore:totp:{self.namespace}:{user_id}")
        yield Query(self._delete_codes, self._params(user_id))
        # Codes belong to a TOTP state: a user without one (never enrolled, or disabled)
        # gets none, so no code can be used, or show up at a later enrolment.
        if not code_hashes or (yield Query(self._has_state, self._params(user_id), "one")) is None:
            return
        for start in range(0, len(code_hashes), CHUNK):
            chunk = code_hashes[start : start + CHUNK]
            values = ", ".join(f"(:namespace, :user_id, :c{i}, :o{i})" for i in range(len(chunk)))
            codes: dict[str, object] = {f"c{i}": code for i, code in enumerate(chunk)}
            codes.update({f"o{i}": start + i for i in range(len(chunk))})
            sql = (
                f"INSERT INTO {self._codes} (namespace, user_id, code_hash, code_order) "
                f"VALUES {values}"
            )
            yield Query(sql, self._params(user_id, **codes))

    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        # One DELETE: among concurrent callers only one can remove the row.
        params = self._params(user_id, code_hash=code_hash)
        deleted: int = yield Query(self._use_code, params, "rowcount")
        return deleted == 1

    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        changed: int = yield Query(self._claim_step, self._params(user_id, step=step), "rowcount")
        return changed == 1


# --- magic links ------------------------------------------------------------------------

_LINK_COLUMNS = "id, user_id, email, created_at, expires_at, application_id, ip_address, user_agent, consumed_at"


def _link(row: Row) -> MagicLinkRecord:
    public_id, user, email, created, expires, application, ip, agent, consumed = row
    return MagicLinkRecord(
        id=public_id,
        user_id=user,
        email=email,
        created_at=from_epoch(created),
        expires_at=from_epoch(expires),
        application_id=application,
        ip_address=ip,
        user_agent=agent,
        consumed_at=None if consumed is None else from_epoch(consumed),
    )


class SqlMagicLinkOps(_SqlOps):
    """A revoked or consumed link keeps its row (marked) until it expires, so its token
    hash stays taken; purge_expired removes expired rows."""

    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        d, t, now = dialect, tables.magic_links, dialect.now
        by_hash = "namespace = :namespace AND token_hash = :token_hash"
        usable = f"consumed_at IS NULL AND revoked_at IS NULL AND expires_at > {now}"
        insert = _claiming_insert(
            d,
            t,
            {
                "id": ":link_id",
                "user_id": ":user_id",
                "email": ":email",
                "application_id": ":application_id",
                "ip_address": ":ip_address",
                "user_agent": ":user_agent",
                "created_at": now,
                "consumed_at": "NULL",
                "revoked_at": "NULL",
                "expires_at": f"{now} + :ttl",
            },
        )
        self._issue = self._returning(insert, _LINK_COLUMNS, t, by_hash, applied="{changed} > 0")
        user = f"namespace = :namespace AND user_id = :user_id AND {usable}"
        self._revoke_user = f"UPDATE {t} SET revoked_at = {now} WHERE {user}"
        self._peek = f"SELECT {_LINK_COLUMNS} FROM {t} WHERE {by_hash} AND {usable}"
        # One guarded UPDATE: among concurrent consumers only one finds the link unconsumed.
        consume = (
            f"UPDATE {t} SET consumed_at = {now} WHERE {by_hash} AND {usable} "
            f"AND {d.same('application_id', ':application_id')}"
        )
        self._consume = self._returning(consume, _LINK_COLUMNS, t, by_hash, applied="{changed} > 0")

    def issue(
        self,
        *,
        token_hash: str,
        link_id: str,
        user_id: str,
        email: str,
        ttl: float,
        application_id: str | None,
        ip_address: str | None,
        user_agent: str | None,
        revoke_previous: bool,
    ) -> Op[MagicLinkRecord]:
        params = {
            "namespace": self.namespace,
            "token_hash": token_hash,
            "link_id": link_id,
            "user_id": user_id,
            "email": email,
            "ttl": ttl,
            "application_id": application_id,
            "ip_address": ip_address,
            "user_agent": user_agent,
        }
        if revoke_previous:
            yield Begin()
            yield from self._lock(f"authstore:magic_links:{self.namespace}:{user_id}")
            yield Query(self._revoke_user, params)
        row = yield from self._run_returning(self._issue, params, in_transaction=revoke_previous)
        if row is None:
            # In a transaction this rolls back the revocation of the previous links too.
            raise TokenInUseError("a magic link that has not expired holds this token")
        return _link(row)

    def peek(self, token_hash: str) -> Op[MagicLinkRecord | None]:
        row = yield Query(
            self._peek, {"namespace": self.namespace, "token_hash": token_hash}, "one"
        )
        return None if row is None else _link(row)

    def consume(self, token_hash: str, application_id: str | None) -> Op[MagicLinkRecord | None]:
        params = {
            "namespace": self.namespace,
            "token_hash": token_hash,
            "application_id": application_id,
        }
        row = yield from self._run_returning(self._consume, params)
        return None if row is None else _link(row)

    def revoke_user(self, user_id: str) -> Op[int]:
        params = {"namespace": self.namespace, "user_id": user_id}
        deleted: int = yield Query(self._revoke_user, params, "rowcount")
        return deleted

    def purge_expired(self) -> Op[int]:
        now, t = self.dialect.now, self.tables.magic_links
        return (yield from self._purge(t, "seq", f"expires_at <= {now}"))
