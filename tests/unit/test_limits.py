"""Rate limits as text: the grammar users know from limits and slowapi, strict on errors."""

from __future__ import annotations

import math

import pytest

from authstore import Limit, RateLimitAlgorithm, parse_limit, parse_limits


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("10/minute", 10, 60.0),
        ("10 per minute", 10, 60.0),
        ("10/MINUTE", 10, 60.0),
        ("5 per 30 seconds", 5, 30.0),
        ("3/5 minutes", 3, 300.0),
        ("100/30s", 100, 30.0),
        ("1/h", 1, 3600.0),
        ("7/day", 7, 86400.0),
        ("2/0.5 seconds", 2, 0.5),
        ("  4 / 2 hours ", 4, 7200.0),
        ("1/week", 1, 604800.0),
    ],
)
def test_parse_limit(text: str, limit: int, window: float) -> None:
    parsed = parse_limit(text)
    assert (parsed.limit, parsed.window) == (limit, window)
    assert parsed.algorithm is RateLimitAlgorithm.FIXED_WINDOW
    assert parse_limit(str(parsed)) == parsed  # str() is canonical and parses back


def test_parse_limits_groups_and_algorithm() -> None:
    assert parse_limits("100/day;10/minute") == (Limit(100, 86400), Limit(10, 60))
    assert parse_limits("1/s, 2/m | 3/h") == (Limit(1, 1), Limit(2, 60), Limit(3, 3600))
    sliding = parse_limits(["5/minute", Limit(1, 1)], algorithm="sliding_window")
    assert sliding[0].algorithm is RateLimitAlgorithm.SLIDING_WINDOW
    assert sliding[1].algorithm is RateLimitAlgorithm.FIXED_WINDOW  # a Limit keeps its own
    assert parse_limits(Limit(3, 9)) == (Limit(3, 9),)


@pytest.mark.parametrize(
    "text",
    [
        "10",
        "10/fortnight",
        "0/minute",
        "10/0 seconds",
        "x/minute",
        "",
        ";",
        "10/month",
        "3000000000/s",
        "-1/minute",
        "10/minute extra",
        "1/400 days",
    ],
)
def test_bad_limits_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_limits(text)


@pytest.mark.parametrize("value", [None, 10, 1.5, b"10/minute", [10]])
def test_wrong_types_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError):
        parse_limits(value)  # type: ignore[arg-type]


def test_limit_checks_its_ranges() -> None:
    with pytest.raises(ValueError):
        Limit(10, math.inf)
    with pytest.raises(TypeError):
        Limit(True, 60)
    with pytest.raises(ValueError):
        Limit(10, 60, "leaky")  # type: ignore[arg-type]
