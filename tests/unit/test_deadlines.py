"""Deadlines (the async runners' one-timer operation bound): a deadline that passes
cancels its operation and says so; a cancellation from outside stays a cancellation;
operations that finish in time are never touched, however many are in flight."""

from __future__ import annotations

import asyncio

import pytest

from authstore.adapters.common.deadlines import Deadlines


async def _operation(deadlines: Deadlines, wait: float) -> str:
    """How an async runner uses Deadlines around its I/O."""
    started = deadlines.start()
    try:
        await asyncio.sleep(wait)
        return "answered"
    except asyncio.CancelledError as error:
        if deadlines.finish(started, error):
            return "timed out"
        raise
    finally:
        deadlines.finish(started, None)


def test_a_deadline_cuts_the_operation_short() -> None:
    async def scenario() -> list[str]:
        deadlines = Deadlines(0.05)
        return [await _operation(deadlines, 60), await _operation(deadlines, 0)]

    assert asyncio.run(scenario()) == ["timed out", "answered"]


def test_a_cancellation_from_outside_is_not_a_timeout() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(60)
        task = asyncio.create_task(_operation(deadlines, 60))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_operations_in_time_are_untouched_and_late_ones_each_time_out() -> None:
    async def scenario() -> list[str]:
        deadlines = Deadlines(0.2)
        quick = [_operation(deadlines, 0.001 * (i % 5)) for i in range(50)]
        slow = [_operation(deadlines, 60) for _ in range(5)]
        return await asyncio.gather(*quick, *slow)

    outcomes = asyncio.run(scenario())
    assert outcomes == ["answered"] * 50 + ["timed out"] * 5


def test_a_new_event_loop_starts_over() -> None:
    deadlines = Deadlines(0.05)
    for _ in range(2):
        assert asyncio.run(_operation(deadlines, 60)) == "timed out"
        assert asyncio.run(_operation(deadlines, 0)) == "answered"
