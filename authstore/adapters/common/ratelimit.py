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
    "fixed_window_result",
    "gcra_result",
    "sliding_window_result",
    "step_fixed_window",
    "step_gcra",
    "step_sliding_window",
]

EPSILON = 1e-9
"""Relative slack for float sums: ten hits of window/10 must fit in one window."""


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
        if state[2] == start:
            previous, current = state[0], state[1]
        elif abs(state[2] - (start - window)) <= EPSILON * window:
            previous = state[1]
    weight = 1.0 - (now - start) / window
    allowed = previous * weight + current + cost <= limit * (1 + EPSILON)
    return allowed, previous, current + cost if allowed else current, start


def step_gcra(
    tat: float | None, now: float, limit: int, window: float, cost: int
) -> tuple[bool, float]:
    """Theoretical arrival time -> allowed, new TAT. A burst of ``limit`` fits in one window."""
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * window / limit
    allowed = new_tat - now <= window * (1 + EPSILON)
    return allowed, new_tat if allowed else base


def fixed_window_result(state: FixedWindowState, limit: int, cost: int) -> RateLimitResult:
    allowed, count, end, now = state
    reset_after = max(0.0, end - now)
    return RateLimitResult(
        allowed=allowed,
        remaining=max(0, limit - count),
        reset_after=reset_after,
        retry_after=0.0 if allowed else reset_after,
        limit=limit,
    )


def sliding_window_result(
    state: SlidingWindowState, limit: int, window: float, cost: int
) -> RateLimitResult:
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
    return RateLimitResult(
        allowed=allowed,
        remaining=max(0, math.floor(limit - estimate + EPSILON)),
        reset_after=max(0.0, reset_after),
        retry_after=max(0.0, retry_after),
        limit=limit,
    )


def gcra_result(state: GcraState, limit: int, window: float, cost: int) -> RateLimitResult:
    allowed, tat, now = state
    interval = window / limit
    backlog = max(0.0, tat - now)
    retry_after = 0.0 if allowed else max(0.0, backlog + cost * interval - window)
    return RateLimitResult(
        allowed=allowed,
        remaining=max(0, min(limit, math.floor((window - backlog) / interval + EPSILON))),
        reset_after=backlog,
        retry_after=retry_after,
        limit=limit,
    )
