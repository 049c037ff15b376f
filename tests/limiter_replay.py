"""One rate-limit hit as ratelimit.step_* computes it, and the same hit as an SQL
operation: the replay tests of every SQL database compare the two, hit by hit."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common import ratelimit
from authstore.adapters.common.ops import Op
from authstore.adapters.sql import SqlCacheOps

ALGORITHMS = ["fixed_window", "sliding_window", "gcra"]


def expected_hit(
    algorithm: str, state: Any, now: float, limit: int, window: float, cost: int
) -> tuple[Any, tuple[Any, ...]]:
    """(the state after the hit, what the operation must return) per step_*."""
    if algorithm == "fixed_window":
        allowed, count, end = ratelimit.step_fixed_window(state, now, limit, window, cost)
        return (count, end), (allowed, count, end, now)
    if algorithm == "sliding_window":
        allowed, prev, cur, start = ratelimit.step_sliding_window(state, now, limit, window, cost)
        return (prev, cur, start), (allowed, prev, cur, start, now)
    allowed, anchor, units = ratelimit.step_gcra(state, now, limit, window, cost)
    return (anchor, units), (allowed, anchor, units, now)


def hit(
    ops: SqlCacheOps, algorithm: str, key: str, limit: int, window: float, cost: int
) -> Op[Any]:
    """The operation of one hit (``key`` a full ``namespace:kind:key``)."""
    run: Any = getattr(ops, algorithm)
    op: Op[Any] = run(key, limit, window, cost)
    return op
