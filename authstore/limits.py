"""Rate limits written as text: ``"10/minute"``, ``"5 per 30 seconds"``, ``"100/day;10/minute"``.

The grammar is the one users know from ``limits`` and slowapi: an amount, ``/`` or
``per``, an optional multiplier and a unit. Parsing is pure (no I/O) and strict: a
string that does not parse, or a limit or window outside the input policy, is a
ValueError naming the text, so a typo in a setting fails at startup, not by letting
every request through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from authstore.contracts.records import RateLimitAlgorithm
from authstore.contracts.values import MAX_LIMIT, MAX_WINDOW, check_count, check_ttl

__all__ = ["Limit", "LimitsLike", "parse_limit", "parse_limits"]

UNITS: dict[str, float] = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
}
"""Seconds per unit. No month or year: they have no fixed length (say ``30 days``)."""

_ALIASES = {
    "s": "second",
    "sec": "second",
    "secs": "second",
    "m": "minute",
    "min": "minute",
    "mins": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "d": "day",
    "w": "week",
}

_LIMIT = re.compile(
    r"""\s*(?P<amount>\d+)\s*(?:/|\s+per\s+)\s*(?P<multiplier>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*""",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[;,|]")


@dataclass(frozen=True, slots=True)
class Limit:
    """``limit`` hits per ``window`` seconds, counted with ``algorithm``.

    ``limit`` is 1 to 2**31-1, ``window`` 1 ms to 366 days (the cache contract's
    ranges), checked at construction.
    """

    limit: int
    window: float
    algorithm: RateLimitAlgorithm = RateLimitAlgorithm.FIXED_WINDOW

    def __post_init__(self) -> None:
        check_count(self.limit, "limit", maximum=MAX_LIMIT)
        window = check_ttl(self.window, "window", optional=False, maximum=MAX_WINDOW)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "algorithm", RateLimitAlgorithm(self.algorithm))

    def __str__(self) -> str:
        for unit, seconds in reversed(UNITS.items()):
            count = self.window / seconds
            if count == int(count) and count >= 1:
                per = unit if count == 1 else f"{int(count)} {unit}s"
                return f"{self.limit}/{per}"
        return f"{self.limit}/{self.window:g} seconds"


LimitsLike = str | Limit | Iterable[str | Limit]
"""What a caller may give where limits are expected: text, a Limit, or several."""


def parse_limit(
    text: str, algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW
) -> Limit:
    """One limit: ``"10/minute"``, ``"10 per minute"``, ``"3/5 minutes"``, ``"100/30s"``."""
    if not isinstance(text, str):
        raise TypeError(f"a rate limit must be a str, not {type(text).__name__}")
    match = _LIMIT.fullmatch(text)
    if match is None:
        raise ValueError(
            f"cannot parse rate limit {text!r}: expected '<amount>/<unit>' or "
            "'<amount> per <n> <units>', e.g. '10/minute' or '5 per 30 seconds'"
        )
    unit = match["unit"].lower()
    unit = _ALIASES.get(unit, unit)
    if unit not in UNITS and unit.endswith("s") and unit[:-1] in UNITS:
        unit = unit[:-1]
    if unit not in UNITS:
        known = ", ".join(UNITS)
        raise ValueError(f"rate limit {text!r}: unknown unit {match['unit']!r} (known: {known})")
    multiplier = float(match["multiplier"]) if match["multiplier"] else 1.0
    try:
        return Limit(int(match["amount"]), multiplier * UNITS[unit], RateLimitAlgorithm(algorithm))
    except ValueError as error:
        raise ValueError(f"rate limit {text!r}: {error}") from None


def parse_limits(
    limits: LimitsLike, algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW
) -> tuple[Limit, ...]:
    """Several limits, all of which apply: ``"100/day;10/minute"`` (``;``, ``,`` or ``|``),
    a Limit, or an iterable of both. ``algorithm`` applies to the ones given as text."""
    if isinstance(limits, Limit):
        return (limits,)
    if isinstance(limits, str):
        parts: list[str | Limit] = [part for part in _SEPARATORS.split(limits) if part.strip()]
    elif isinstance(limits, Iterable):
        parts = list(limits)
    else:
        raise TypeError(
            f"rate limits must be a str, a Limit or an iterable, not {type(limits).__name__}"
        )
    parsed = tuple(
        part
        if isinstance(part, Limit)
        else parse_limit(part, algorithm)
        if isinstance(part, str)
        else _not_a_limit(part)
        for part in parts
    )
    if not parsed:
        raise ValueError(f"no rate limit in {limits!r}")
    return parsed


def _not_a_limit(part: object) -> Limit:
    raise TypeError(f"a rate limit must be a str or a Limit, not {type(part).__name__}")
