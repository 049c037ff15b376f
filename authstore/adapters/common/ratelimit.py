"""Rate-limit arithmetic shared by every backend.

Backends keep the state atomically (SQL upsert, Lua, a lock) and return it raw;
the numbers a caller sees are derived here once. ``step_*`` are the reference
transitions, run as-is by the memory backend and mirrored by SQL and Lua.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from authstore.adapters.common.ops import FixedWindowState, GcraState, SlidingWindowState
from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult
from authstore.limits import Limit

__all__ = [
    "EPSILON",
    "LimiterState",
    "binding",
    "decode_group",
    "encode_group",
    "group_signature",
    "limiter_state",
    "peek",
    "peek_group",
    "step_group",
    "transition",
    "gcra_backlog",
    "limiter_decoder",
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

# The results clamp with comparisons, not min() and max(): in CPython 3.11 each of those
# builtins parses its keyword arguments on every call, and four of them cost a sliding
# window's result (what a refused hit computes besides its one read) more than the
# rest of its arithmetic.


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
    reset_after = end - now if end > now else 0.0
    return _result(
        allowed=allowed,
        remaining=limit - count if limit > count else 0,
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
    elapsed = now - start
    if elapsed < 0.0:
        elapsed = 0.0
    elif elapsed > window:
        elapsed = window
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
    remaining = math.floor(limit - estimate + EPSILON)
    return _result(
        allowed=allowed,
        remaining=remaining if remaining > 0 else 0,
        reset_after=reset_after if reset_after > 0.0 else 0.0,
        retry_after=retry_after if retry_after > 0.0 else 0.0,
        limit=limit,
    )


def gcra_result(state: GcraState, limit: int, window: float, cost: int) -> RateLimitResult:
    """What a caller sees after a GCRA hit, from ``(allowed, anchor, units, store now)``:
    the theoretical arrival time is ``anchor + units * window / limit`` (see ``step_gcra``)."""
    allowed, anchor, units, now = state
    interval = window / limit
    backlog = gcra_backlog(anchor, units, now, limit, window)
    if not backlog > 0.0:
        backlog = 0.0
    retry_after = 0.0 if allowed else backlog + cost * interval - window
    remaining = math.floor((window - backlog) / interval + EPSILON * limit)
    if remaining > limit:
        remaining = limit
    return _result(
        allowed=allowed,
        remaining=remaining if remaining > 0 else 0,
        reset_after=backlog,
        retry_after=retry_after if retry_after > 0.0 else 0.0,
        limit=limit,
    )


# --- one limiter as a pure transition, peeks and groups -------------------------------

LimiterState = tuple[Any, ...]
"""A limiter's state in the form ``step_*`` takes: fixed (count, window end), sliding
(previous, current, current start), GCRA (anchor, units)."""
Transition = tuple[bool, LimiterState, float, RateLimitResult]
"""allowed, the state after the hit (unchanged when refused), the instant past which
that state no longer matters, and the caller's result."""


def transition(
    algorithm: RateLimitAlgorithm,
    state: LimiterState | None,
    now: float,
    limit: int,
    window: float,
    cost: int,
) -> Transition:
    """One hit of ``cost`` on ``state`` at ``now``: ``step_*`` and its result, nothing stored."""
    if algorithm is RateLimitAlgorithm.FIXED_WINDOW:
        allowed, count, end = step_fixed_window(state, now, limit, window, cost)
        result = fixed_window_result((allowed, count, end, now), limit, cost)
        return allowed, (count, end), end, result
    if algorithm is RateLimitAlgorithm.SLIDING_WINDOW:
        allowed, previous, current, start = step_sliding_window(state, now, limit, window, cost)
        sliding = (allowed, previous, current, start, now)
        result = sliding_window_result(sliding, limit, window, cost)
        return allowed, (previous, current, start), start + 2 * window, result
    allowed, anchor, units = step_gcra(state, now, limit, window, cost)
    result = gcra_result((allowed, anchor, units, now), limit, window, cost)
    return allowed, (anchor, units), anchor + units * window / limit + window, result


def peek(
    algorithm: RateLimitAlgorithm,
    state: LimiterState | None,
    now: float,
    limit: int,
    window: float,
    cost: int,
) -> RateLimitResult:
    """What a hit of ``cost`` would get now, and the units left now, computed from
    ``state`` without storing anything: the transition of the hit (for ``allowed`` and
    ``retry_after``) and of no hit at all (for ``remaining`` and ``reset_after``)."""
    allowed, _, _, hit = transition(algorithm, state, now, limit, window, cost)
    _, _, _, idle = transition(algorithm, state, now, limit, window, 0)
    return _result(
        allowed=allowed,
        remaining=idle.remaining,
        reset_after=idle.reset_after,
        retry_after=hit.retry_after,
        limit=limit,
    )


def binding(results: Sequence[RateLimitResult]) -> RateLimitResult:
    """The result that decides a group: the refusing limit that makes the caller wait
    longest, or when all allow, the one with the fewest units left (then the one
    that takes longest to reset)."""
    refused = [result for result in results if not result.allowed]
    if refused:
        return max(refused, key=lambda result: result.retry_after)
    return min(results, key=lambda result: (result.remaining, -result.reset_after))


def step_group(
    limits: Sequence[Limit], states: Sequence[LimiterState | None], now: float, cost: int
) -> tuple[bool, list[LimiterState], float, RateLimitResult]:
    """A hit on every limit of a group at once: allowed only if each allows it, and
    then every state moves; refused, no state moves. Returns allowed, the new states,
    the instant past which none matters any more, and the binding result."""
    steps = [
        transition(limit.algorithm, state, now, limit.limit, limit.window, cost)
        for limit, state in zip(limits, states, strict=True)
    ]
    allowed = all(step[0] for step in steps)
    result = binding([step[3] for step in steps])
    if not allowed:
        return False, [], now, result
    return True, [step[1] for step in steps], max(step[2] for step in steps), result


def peek_group(
    limits: Sequence[Limit], states: Sequence[LimiterState | None], now: float, cost: int
) -> RateLimitResult:
    """What a group hit of ``cost`` would get now, nothing stored (see ``peek``)."""
    return binding(
        [
            peek(limit.algorithm, state, now, limit.limit, limit.window, cost)
            for limit, state in zip(limits, states, strict=True)
        ]
    )


def group_signature(limits: Sequence[Limit]) -> str:
    """What identifies a group's record: its limits, canonical and in order."""
    return ";".join(f"{limit.limit}/{limit.window!r}/{limit.algorithm.value}" for limit in limits)


def encode_group(touched: float, states: Sequence[LimiterState]) -> bytes:
    """A group's record: the last hit's clock and each limit's state (JSON keeps floats
    exact: it writes their shortest repr)."""
    return json.dumps([touched, [list(state) for state in states]]).encode()


_DECODERS: dict[RateLimitAlgorithm, Callable[[Sequence[Any]], LimiterState]] = {
    RateLimitAlgorithm.FIXED_WINDOW: lambda s: (int(s[0]), float(s[1])),
    RateLimitAlgorithm.SLIDING_WINDOW: lambda s: (int(s[0]), int(s[1]), float(s[2])),
    RateLimitAlgorithm.GCRA: lambda s: (float(s[0]), int(s[1])),
}


def limiter_state(algorithm: RateLimitAlgorithm, values: Sequence[Any]) -> LimiterState:
    """Stored values (numbers, decimal text or bytes) in step_*'s order, as its state."""
    return _DECODERS[algorithm](values)


def limiter_decoder(algorithm: RateLimitAlgorithm) -> Callable[[Sequence[Any]], LimiterState]:
    """``limiter_state`` of one algorithm, as one call."""
    return _DECODERS[algorithm]


def decode_group(
    body: bytes | None, limits: Sequence[Limit], now: float
) -> tuple[float, list[LimiterState | None]]:
    """The clock to decide at (never before the record's last hit, so a sliding window
    never steps back) and each limit's state; no record (or one of another shape) is
    a group no hit has reached yet."""
    if body is None:
        return now, [None] * len(limits)
    touched, states = json.loads(body)
    if len(states) != len(limits):
        return now, [None] * len(limits)
    decoded: list[LimiterState | None] = [
        limiter_state(limit.algorithm, state) for limit, state in zip(limits, states, strict=True)
    ]
    return max(now, float(touched)), decoded
