"""The group and peek arithmetic, pure: which result binds, what a peek leaves alone."""

from __future__ import annotations

from authstore import Limit, RateLimitAlgorithm, RateLimitResult
from authstore.adapters.common import ratelimit
from authstore.adapters.common.logic import check_group

NOW = 1_700_000_000.0


def _result(
    allowed: bool, remaining: int, reset: float, retry: float, limit: int
) -> RateLimitResult:
    return RateLimitResult(allowed, remaining, reset, retry, limit)


def test_binding_refused_is_the_longest_wait_allowed_the_fewest_left() -> None:
    short = _result(False, 0, 50, 50, 10)
    long = _result(False, 0, 3000, 3000, 100)
    ok = _result(True, 4, 80000, 0, 1000)
    assert ratelimit.binding([short, ok, long]) is long
    few = _result(True, 1, 30, 0, 5)
    tie = _result(True, 1, 3600, 0, 50)
    assert ratelimit.binding([ok, few, tie]) is tie


def test_group_is_canonical() -> None:
    assert check_group("100/day;10/minute") == check_group(["10 per minute", Limit(100, 86400)])
    assert check_group("10/minute;10/minute") == (Limit(10, 60),)
    assert [x.window for x in check_group("1/s;1/d;1/h")] == [86400, 3600, 1]


def test_refused_group_moves_no_state() -> None:
    group = check_group("5/hour;2/minute")
    allowed, states, _, _ = ratelimit.step_group(group, [None, None], NOW, 2)
    assert allowed
    refused, after, _, result = ratelimit.step_group(group, states, NOW + 1, 1)
    assert (refused, after, result.limit) == (False, [], 2)


def test_peek_leaves_remaining_as_it_is() -> None:
    for algorithm in RateLimitAlgorithm:
        state = ratelimit.transition(algorithm, None, NOW, 5, 60, 2)[1]
        peeked = ratelimit.peek(algorithm, state, NOW, 5, 60, 4)
        assert (peeked.allowed, peeked.remaining) == (False, 3), (algorithm, peeked)
        assert peeked.retry_after > 0
        fresh = ratelimit.peek(algorithm, None, NOW, 5, 60, 5)
        assert (fresh.allowed, fresh.remaining, fresh.retry_after) == (True, 5, 0.0)


def test_group_record_round_trips_and_never_steps_back() -> None:
    group = check_group(
        [
            "3/minute",
            Limit(9, 3600, RateLimitAlgorithm.SLIDING_WINDOW),
            Limit(4, 60, RateLimitAlgorithm.GCRA),
        ]
    )
    allowed, states, _, _ = ratelimit.step_group(group, [None] * 3, NOW, 1)
    assert allowed
    body = ratelimit.encode_group(NOW, states)
    now, decoded = ratelimit.decode_group(body, group, NOW - 5)  # a clock behind the last hit
    assert (now, decoded) == (NOW, states)
    assert ratelimit.decode_group(body, group[:2], NOW) == (NOW, [None, None])  # another shape
