"""Hypothesis settings for property tests that must try the same examples on every run
and on every machine: a failure that comes and goes would prove nothing."""

from __future__ import annotations

from typing import Any


def repeatable(max_examples: int) -> Any:
    """Settings for ``max_examples`` derandomized examples, no deadline, no example
    database (hypothesis is imported only where a property test runs)."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
