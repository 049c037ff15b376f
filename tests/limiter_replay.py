"""The rate-limit replay harness: every hit a backend decides, checked against the
Python reference ``ratelimit.step_*`` fed the same state and the same instant.

``replay`` sends a seeded random sequence of hits (pauses around window and emission
boundaries, limits and windows that change now and then, costs of 1 to 3) to one
backend operation (``fixed_window``, ``sliding_window`` or ``gcra``) and compares each
answer with what ``step_*`` computes from the previous state and the instant the
backend reports (its own clock). tests/test_limiter_replay.py runs it on every backend
of tests.backends; the SQL backends' tests also use ``expected_hit``/``hit`` on a clock
the test controls (boundaries hit exactly, a clock behind the row's).

Profiles (``AUTHSTORE_REPLAY_PROFILE``): ``ci`` (default) replays a few hundred hits
per backend and algorithm; ``long`` replays thousands. ``AUTHSTORE_REPLAY_SEED``
picks other sequences (a failure names its seed and hit)::

    AUTHSTORE_REPLAY_PROFILE=long .venv/bin/pytest tests/test_limiter_replay.py -p no:cacheprovider
"""

from __future__ import annotations

import os
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from authstore.adapters.common import ratelimit
from authstore.adapters.common.ops import CacheOps, Op

ALGORITHMS = ["fixed_window", "sliding_window", "gcra"]

PROFILES = {"ci": 300, "long": 5000}
"""Hits per backend and algorithm."""

LIMITS = [1, 3, 10, 50]
WINDOWS = [0.02, 0.05, 0.2]
"""Short windows, so a few hundred hits cross many window and emission boundaries."""

MILLISECOND = 0.001


def replay_hits() -> int:
    profile = os.environ.get("AUTHSTORE_REPLAY_PROFILE", "ci")
    if profile not in PROFILES:
        raise ValueError(f"AUTHSTORE_REPLAY_PROFILE must be one of {sorted(PROFILES)}")
    return PROFILES[profile]


def replay_seed(*names: str) -> int:
    """A seed of its own for each backend and algorithm, shifted by AUTHSTORE_REPLAY_SEED."""
    base = int(os.environ.get("AUTHSTORE_REPLAY_SEED", "0"))
    return base + zlib.crc32(":".join(names).encode())


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


def hit(ops: CacheOps, algorithm: str, key: str, limit: int, window: float, cost: int) -> Op[Any]:
    """The operation of one hit (``key`` a full ``namespace:kind:key``)."""
    run: Any = getattr(ops, algorithm)
    op: Op[Any] = run(key, limit, window, cost)
    return op


@dataclass(frozen=True)
class Hit:
    pause: float
    """Seconds to wait before the hit."""
    limit: int
    window: float
    cost: int


def random_hits(seed: int, count: int, window: float) -> list[Hit]:
    """Mostly back-to-back hits (they meet the limit), pauses of about one emission
    interval (GCRA refills, sliding weights move) and now and then of about a window
    (windows end); 5% of hits change the limit (GCRA's lowered-limit arm, refused hits
    that move nothing).

    The window stays: a backend keeps a limiter's state aligned to, and expiring with,
    the window it was written with, so a changed window is a new limiter in practice
    (a group with changed limits even gets a new record) and the reference's reading
    of an old window's state under a new one is not a promise."""
    rng = random.Random(seed)
    limit = rng.choice(LIMITS)
    hits = []
    for _ in range(count):
        if rng.random() < 0.05:
            limit = rng.choice(LIMITS)
        pause = rng.choices(
            [0.0, rng.uniform(0, window / limit), rng.uniform(0, 1.2 * window)], [6, 3, 1]
        )[0]
        hits.append(Hit(pause, limit, window, rng.randint(1, min(limit, 3))))
    return hits


@dataclass(frozen=True)
class Expected:
    """One answer ``step_*`` allows, and the reference state it leaves."""

    reply: tuple[Any, ...]
    state: Any
    slack: float = 0.0
    """How far each instant in the reply may be off (0: exactly)."""

    def accepts(self, got: Sequence[Any]) -> bool:
        if len(got) != len(self.reply):
            return False
        for value, expected in zip(got, self.reply, strict=True):
            if isinstance(expected, float):
                if not isinstance(value, float | int) or abs(value - expected) > self.slack:
                    return False
            elif value != expected or isinstance(value, bool) != isinstance(expected, bool):
                return False
        return True


@dataclass(frozen=True)
class Clock:
    """How a backend reports the instant of a hit.

    ``resolution``: the instants in its replies are rounded to this many seconds (Redis
    replies in whole microseconds; 0 for backends that reply exactly). ``relative``: its
    fixed window reports no clock, only the window's time left (Redis reads the key's
    PTTL), so the harness tracks the window's end on its own monotonic clock.
    """

    resolution: float = 0.0
    relative: bool = False


EXACT = Clock()
REDIS = Clock(resolution=1e-6, relative=True)


def clock_of(url: str) -> Clock:
    return REDIS if url.startswith("redis") else EXACT


def absolute_expectations(
    algorithm: str, state: Any, now: float, step: Hit, clock: Clock, limits: Sequence[int]
) -> list[Expected]:
    """``step_*`` at the backend's instant; where the reply rounds it, at either side
    too (a decision within the rounding of a boundary may fall either way).

    A backend may forget a GCRA state once its bucket is full again under the limit it
    was written with (``limits``: the last hit's and the last write's), as an entry's
    expiry does: a hit under a lower limit then starts afresh where the reference,
    which still holds the state, would count it one window behind."""
    shifts = [0.0] if clock.resolution == 0 else [0.0, -clock.resolution, clock.resolution]
    states = [state]
    if algorithm == "gcra" and state is not None:
        anchor, units = state
        full_again = min(anchor + units * step.window / limit for limit in limits)
        if now + clock.resolution >= full_again:
            states.append(None)
    found = []
    for before in states:
        for shift in shifts:
            after, reply = expected_hit(
                algorithm, before, now + shift, step.limit, step.window, step.cost
            )
            found.append(Expected(reply, after, 2 * clock.resolution))
    return found


@dataclass(frozen=True)
class WindowEnd:
    """A fixed window's count and end, known on this process's monotonic clock only
    between ``earliest`` and ``latest`` (the reply's time left was read in between)."""

    count: int
    earliest: float
    latest: float


def relative_expectations(
    state: WindowEnd | None, sent: float, received: float, step: Hit
) -> list[Expected]:
    """``step_fixed_window`` at now = 0 with the window's end as time left: a new
    window if the previous one surely ended, the same one if it surely goes on, either
    when the hit came within the uncertainty of its end."""
    found = []
    least = most = 0.0
    if state is not None:  # time left when the backend read it, between sent and received
        least = state.earliest - received - MILLISECOND
        most = state.latest - sent + MILLISECOND
    if state is None or least <= 0:
        _, reply = expected_hit("fixed_window", None, 0.0, step.limit, step.window, step.cost)
        found.append(Expected(reply, "new", MILLISECOND))  # the window's length in whole ms
    if state is not None and most > 0:
        low = max(least, 0.0)
        left = (low + most) / 2
        _, reply = expected_hit(
            "fixed_window", (state.count, left), 0.0, step.limit, step.window, step.cost
        )
        found.append(Expected(reply, "same", (most - low) / 2))
    return found


def replay(
    run: Callable[[Op[Any]], Any],
    ops: CacheOps,
    key: str,
    algorithm: str,
    hits: Sequence[Hit],
    clock: Clock,
    seed: int,
) -> None:
    """Send ``hits`` one by one through ``run`` and fail at the first answer that
    ``step_*`` does not give (``key`` is the limiter's full ``namespace:kind:key``)."""
    state: Any = None
    written_limit = 0
    history: list[str] = []
    for index, step in enumerate(hits):
        if step.pause:
            time.sleep(step.pause)
        sent = time.monotonic()
        got = tuple(run(hit(ops, algorithm, key, step.limit, step.window, step.cost)))
        received = time.monotonic()
        relative = clock.relative and algorithm == "fixed_window"
        if relative:
            expectations = relative_expectations(state, sent, received, step)
        else:
            limits = [step.limit, written_limit or step.limit]
            expectations = absolute_expectations(algorithm, state, got[-1], step, clock, limits)
        matched = next((e for e in expectations if e.accepts(got)), None)
        history.append(f"#{index} {step}: {got}")
        if matched is None:
            shown = "\n  ".join(history[-8:])
            raise AssertionError(
                f"{algorithm} hit #{index} (seed {seed}) answered {got}; step_* allows "
                f"{[(e.reply, e.slack) for e in expectations]}\nlast hits:\n  {shown}"
            )
        if relative:
            left = float(got[2])
            earliest, latest = sent + left - MILLISECOND, received + left + MILLISECOND
            state = WindowEnd(int(got[1]), earliest, latest)
        else:
            if matched.state != state:
                written_limit = step.limit
            state = matched.state
