"""Rate-limit arithmetic shared by every backend.

Backends keep the state atomically (SQL upsert, Lua, a lock) and return it raw;
the numbers a caller sees are derived here once. ``step_*`` are the reference
transitions, run as-is by the memory backend and mirrored by SQL and Lua.
"""

from __future__ import annotations

import math

from authstore.adapters.common.ops import FixedWindowState, GcraState, SlidingWindowState
from authstore.contracts.records import RateLimitResult

__all__ = [
    "EPSILON",
    "gcra_backlog",
    "fixed_window_result",
    "gcra_result",
    "sliding_window_result",
    "step_fixed_window",
    "step_gcra",
    "step_sliding_window",
]

EPSILON = 1e-9
"""Relative slack for the sliding window's weighted sum (no error accumulates there)."""


_new = object.__new__


def _result(
    *, allowed: bool, remaining: int, reset_after: float, retry_after: float, limit: int
) -> RateLimitResult:
    """``RateLimitResult(...)`` without the frozen dataclass's ``__init__`` (five
    ``object.__setattr__`` calls, more than half the cost of building it): the same
    fields in the same record."""
    result: RateLimitResult = _new(RateLimitResult)
    result.__dict__.update(
        allowed=allowed,
        remaining=remaining,
        reset_after=reset_after,
        retry_after=retry_after,
        limit=limit,
    )
    return result


if "__slots__" in RateLimitResult.__dict__:  # pragma: no cover - no __dict__ to fill
    _result = RateLimitResult


def step_fixed_window(
    state: tuple[int, float] | None, now: float, limit: int, window: float, cost: int
) -> tuple[bool, int, float]:
    """(count, window end) -> allowed, new count, window end. The window starts at the first hit."""
    count, end = (0, now + window) if state is None or state[1] <= now else state
    allowed = count + cost <= limit
    return allowed, count + cost if allowed else count, end


def step_sliding_window(
    state: tuple[int, int, float] | None, now: float, limit: int, window: float, cost: int
) -> tuple[bool, int, int, float]:
    """(previous, current, current start) -> allowed, previous, current, start. Windows are aligned."""
    start = math.floor(now / window) * window
    previous = current = 0
    if state is not None:
        # Starts are epoch-scale floats: (k + 1) * w - w and k * w may differ by an ulp,
        # but aligned windows are a whole window apart, so half a window tells them apart.
        if abs(state[2] - start) < window / 2:
            previous, current = state[0], state[1]
        elif abs(state[2] - (start - window)) < window / 2:
            previous = state[1]
    weight = 1.0 - (now - start) / window
    allowed = previous * weight + current + cost <= limit * (1 + EPSILON)
    return allowed, previous, current + cost if allowed else current, start


def step_gcra(
    state: tuple[float, int] | None, now: float, limit: int, window: float, cost: int
) -> tuple[bool, float, int]:
    """(anchor, units) -> allowed, anchor, units. A burst of ``limit`` fits in one window.

    The theoretical arrival time is ``anchor + units * window / limit``, kept as an
    instant plus a whole number of intervals: summing window/limit into an epoch
    float (about 1.7e9) rounds at every hit and a burst of 1000 hits in 0.1 s
    would drift by more than one interval.
    """
    anchor, units = (now, 0) if state is None else state
    backlog = gcra_backlog(anchor, units, now, limit, window)
    if backlog <= 0:
        anchor, units = now, 0
    elif backlog > window:
        # the limit or window was lowered since: at most one window behind, never more
        anchor, units = now, limit
    after = gcra_backlog(anchor, units + cost, now, limit, window)
    allowed = after <= window * (1 + EPSILON)
    return allowed, anchor, units + cost if allowed else units


def gcra_backlog(anchor: float, units: int, now: float, limit: int, window: float) -> float:
    """Seconds until the bucket is full again (TAT - now)."""
    return units * window / limit - (now - anchor)


def fixed_window_result(state: FixedWindowState, limit: int, cost: int) -> RateLimitResult:
    """What a caller sees after a fixed-window hit, from the state your operation returns:
    ``(allowed, count in the window after this hit, window end, store now)``, instants in
    epoch seconds on the store's clock; ``count`` excludes a refused hit's cost."""
    allowed, count, end, now = state
    reset_after = max(0.0, end - now)
    return _result(
        allowed=allowed,
        remaining=max(0, limit - count),
        reset_after=reset_after,
        retry_after=0.0 if allowed else reset_after,
        limit=limit,
    )


def sliding_window_result(
    state: SlidingWindowState, limit: int, window: float, cost: int
) -> RateLimitResult:
    """What a caller sees after a sliding-window hit, from ``(allowed, previous window's
    count, current window's count after this hit, current window's start, store now)``;
    windows are aligned to multiples of ``window`` since the epoch."""
    allowed, previous, current, start, now = state
    elapsed = min(max(now - start, 0.0), window)
    estimate = previous * (1.0 - elapsed / window) + current
    if current:
        reset_after = start + 2 * window - now
    elif previous:
        reset_after = start + window - now
    else:
        reset_after = 0.0
    retry_after = 0.0
    if not allowed:
        room = limit - current - cost
        if previous and room >= 0:
            # the previous window's weight decays enough within this window
            retry_after = window * (1.0 - room / previous) - elapsed
        else:
            # wait for the next window, where this window's count decays in turn
            later = window * (1.0 - (limit - cost) / current) if current > limit - cost else 0.0
            retry_after = (window - elapsed) + later
    return _result(
        allowed=allowed,
        remaining=max(0, math.floor(limit - estimate + EPSILON)),
        reset_after=max(0.0, reset_after),
        retry_after=max(0.0, retry_after),
        limit=limit,
    )


def gcra_result(state: GcraState, limit: int, window: float, cost: int) -> RateLimitResult:
    """What a caller sees after a GCRA hit, from ``(allowed, anchor, units, store now)``:
    the theoretical arrival time is ``anchor + units * window / limit`` (see ``step_gcra``)."""
    allowed, anchor, units, now = state
    interval = window / limit
    backlog = max(0.0, gcra_backlog(anchor, units, now, limit, window))
    retry_after = 0.0 if allowed else max(0.0, backlog + cost * interval - window)
    return _result(
        allowed=allowed,
        remaining=max(0, min(limit, math.floor((window - backlog) / interval + EPSILON * limit))),
        reset_after=backlog,
        retry_after=retry_after,
        limit=limit,
    )
