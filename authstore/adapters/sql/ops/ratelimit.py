"""The cache contract's rate limiters (fixed window, sliding window, GCRA) in SQL.

Where each statement is a round trip (PostgreSQL, MySQL), one hit is one UPSERT
whose SQL computes what ``ratelimit.step_*`` computes, from the row's old columns.
Where statements are free (SQLite, ``Dialect.local``), a hit reads the row, runs
``step_*`` in Python and writes with a compare-and-set. The statements each
dialect gets: ``tests/sql/golden/<dialect>/cache.<limiter>.sql``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

from collections.abc import Callable
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
from authstore.adapters.sql.ops.base import Returning, SqlOps
from authstore.adapters.sql.schema import Tables
from authstore.contracts.records import RateLimitAlgorithm

__all__ = ["SqlRateLimitOps", "is_limiter_key"]

_LIMITER_KINDS = frozenset(LIMITER_KINDS.values())


def is_limiter_key(key: str) -> bool:
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


def _fixed_window_row(
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


def _sliding_window_row(
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


def _gcra_row(
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


class SqlRateLimitOps(SqlOps):
    """The rate limiters and ``read_limiter``, on the rate-limit table (one row per key)."""

    def __init__(self, dialect: Dialect, tables: Tables) -> None:
        super().__init__(dialect, tables)
        d, limits, now = dialect, tables.rate_limits, dialect.now
        self._limiter_live = f"{limits}.expires_at > {now}"
        self._read_limiter = (
            f"SELECT hits, previous_hits, mark, touched_at, {now} FROM {limits} "
            f"WHERE cache_key = :key AND {self._limiter_live}"
        )

        if d.local:
            self._local_limiters()
        else:
            self._fixed_window = self._limiter(_fixed_window_row, "allowed, hits, mark, touched_at")
            self._sliding_window = self._limiter(
                _sliding_window_row, "allowed, previous_hits, hits, mark, touched_at"
            )
            self._gcra = self._limiter(_gcra_row, "allowed, mark, hits, touched_at")

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

    def _limiter(self, state: LimiterState, columns: str) -> Returning:
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

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        if self.dialect.local:

            def decide(row: Row | None, now: float) -> _Decision:
                state = None if row is None else (int(row[0]), float(row[2]))
                allowed, count, end = step_fixed_window(state, now, limit, window, cost)
                return allowed, count, 0, end, end

            allowed, count, _, end, now = yield from self._hit_locally(key, decide)
            return allowed, count, end, now
        params = {"key": key, "limit": limit, "window": window, "cost": cost}
        if self.dialect.returning:  # _run_returning's one statement, without its generator
            row = yield Query(self._fixed_window.single, params, "one")
        else:
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
        if self.dialect.returning:  # _run_returning's one statement, without its generator
            row = yield Query(self._sliding_window.single, params, "one")
        else:
            row = yield from self._run_returning(self._sliding_window, params)
        assert row is not None
        allowed, previous, current, start, now = row
        return bool(allowed), int(previous), int(current), float(start), float(now)

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        if self.dialect.local:

            def decide(row: Row | None, now: float) -> _Decision:
                state = None if row is None else (float(row[2]), int(row[0]))
                allowed, anchor, units = step_gcra(state, now, limit, window, cost)
                # a window past the theoretical arrival time (the SQL's expiry, see _gcra_row)
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
        if self.dialect.returning:  # _run_returning's one statement, without its generator
            row = yield Query(self._gcra.single, params, "one")
        else:
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
