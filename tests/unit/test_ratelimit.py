"""The reference rate-limit transitions every backend mirrors (pure arithmetic)."""

from __future__ import annotations

import math

import pytest

from authstore.adapters.common import ratelimit


@pytest.mark.parametrize("limit", [1, 3, 7, 10, 60, 1000])
@pytest.mark.parametrize("window", [0.1, 1.0, 3.0, 60.0, 86400.0])
def test_gcra_burst_is_exactly_limit_despite_float_sums(limit: int, window: float) -> None:
    state: tuple[float, int] | None = None
    allowed = 0
    for _ in range(limit + 5):
        ok, anchor, units = ratelimit.step_gcra(state, 1_700_000_000.123456, limit, window, 1)
        state = (anchor, units)
        allowed += ok
    assert allowed == limit


def test_gcra_refills_one_interval_at_a_time() -> None:
    now = 1_700_000_000.5
    state: tuple[float, int] | None = None
    for _ in range(10):
        _, anchor, units = ratelimit.step_gcra(state, now, 10, 1.0, 1)
        state = (anchor, units)
    assert not ratelimit.step_gcra(state, now + 0.099, 10, 1.0, 1)[0]
    ok, anchor, units = ratelimit.step_gcra(state, now + 0.1001, 10, 1.0, 1)
    assert ok
    assert not ratelimit.step_gcra((anchor, units), now + 0.1002, 10, 1.0, 1)[0]


@pytest.mark.parametrize("limit", [1, 3, 10, 1000])
def test_sliding_window_burst_is_exactly_limit(limit: int) -> None:
    state: tuple[int, int, float] | None = None
    allowed = 0
    for _ in range(limit + 5):
        ok, previous, current, start = ratelimit.step_sliding_window(state, 1000.5, limit, 10.0, 1)
        state = (previous, current, start)
        allowed += ok
    assert allowed == limit


def test_sliding_window_weights_the_previous_window() -> None:
    # 10 hits in [0, 10); at t=15 the previous window weighs 0.5: 5 more fit.
    state: tuple[int, int, float] | None = (0, 10, 0.0)
    allowed = 0
    for _ in range(10):
        ok, previous, current, start = ratelimit.step_sliding_window(state, 15.0, 10, 10.0, 1)
        state = (previous, current, start)
        allowed += ok
    assert allowed == 5


def test_refused_hit_consumes_nothing() -> None:
    assert ratelimit.step_fixed_window((3, 50.0), 10.0, 3, 60.0, 1) == (False, 3, 50.0)
    assert ratelimit.step_gcra((10.0, 1), 10.0, 1, 60.0, 1) == (False, 10.0, 1)


def test_fixed_window_restarts_after_its_end() -> None:
    assert ratelimit.step_fixed_window((3, 50.0), 50.0, 3, 60.0, 2) == (True, 2, 110.0)


def test_results() -> None:
    fixed = ratelimit.fixed_window_result((False, 3, 70.0, 10.0), 3, 1)
    assert tuple(fixed) == (False, 0, 60.0) and fixed.retry_after == 60.0
    gcra = ratelimit.gcra_result((True, 0.0, 1, 0.0), 2, 60.0, 1)
    assert (gcra.allowed, gcra.remaining, gcra.reset_after, gcra.retry_after) == (
        True,
        1,
        30.0,
        0.0,
    )
    refused = ratelimit.gcra_result((False, 0.0, 2, 0.0), 2, 60.0, 1)
    assert (refused.remaining, refused.reset_after) == (0, 60.0)
    assert refused.retry_after == pytest.approx(30.0)


@pytest.mark.parametrize("hits_before", [0, 4, 10])
@pytest.mark.parametrize("hits_now", [3, 10])
@pytest.mark.parametrize("offset", [0.5, 2.5, 7.0])
@pytest.mark.parametrize("cost", [1, 3])
def test_sliding_retry_after_is_exactly_enough(
    hits_before: int, hits_now: int, offset: float, cost: int
) -> None:
    window, limit = 10.0, 10
    state: tuple[int, int, float] | None = None
    for _ in range(hits_before):
        _, p, c, s = ratelimit.step_sliding_window(state, 100.0, limit, window, 1)
        state = (p, c, s)
    now = 110.0 + offset
    for _ in range(hits_now):
        _, p, c, s = ratelimit.step_sliding_window(state, now, limit, window, 1)
        state = (p, c, s)
    allowed, p, c, s = ratelimit.step_sliding_window(state, now, limit, window, cost)
    if allowed:
        return
    result = ratelimit.sliding_window_result((False, p, c, s, now), limit, window, cost)
    assert 0 < result.retry_after <= 2 * window
    later = ratelimit.step_sliding_window(
        state, now + result.retry_after + 1e-6, limit, window, cost
    )
    assert later[0], "waiting retry_after must be enough"
    if result.retry_after > 0.01:
        sooner = ratelimit.step_sliding_window(
            state, now + result.retry_after - 0.01, limit, window, cost
        )
        assert not sooner[0], "retry_after must not be longer than needed"


@pytest.mark.parametrize("window", [0.45, 0.1, 1.0, 7.0, 60.0])
def test_sliding_window_remembers_the_previous_window_at_epoch_scale(window: float) -> None:
    """Window starts are floats near 1.8e9 (resolution ~2.4e-7 s): ``(k + 1) * w - w``
    and ``k * w`` may differ by an ulp, and the previous window must still count."""
    first = math.floor(1_795_000_000.0 / window)
    forgotten = []
    for k in range(first, first + 3000):
        start = math.floor(k * window / window) * window
        state = (0, 3, start)
        now = math.floor(((k + 1) * window + 1e-3) / window) * window + 1e-3
        allowed, previous, _, _ = ratelimit.step_sliding_window(state, now, 3, window, 1)
        if allowed or previous != 3:
            forgotten.append(k)
    assert not forgotten, f"{len(forgotten)} window boundaries forgot the previous count"
