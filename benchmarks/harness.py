"""Ratios measured in one run: each contender runs in short interleaved rounds and
the median per-operation time decides, so machine noise hits both sides alike."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Comparison", "compare", "compare_async", "report"]


@dataclass
class Comparison:
    name: str
    ours: float
    """Median seconds per operation, authstore."""
    theirs: float
    """Median seconds per operation, the reference."""
    reference: str
    goal: float | None
    """Highest acceptable ratio ours/theirs, when a performance goal sets one."""

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.ratio <= self.goal


def _per_op(fn: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count


def compare(
    name: str,
    ours: Callable[[], object],
    theirs: Callable[[], object],
    reference: str,
    *,
    goal: float | None = None,
    count: int = 2000,
    rounds: int = 7,
) -> Comparison:
    ours_times, theirs_times = [], []
    _per_op(ours, count // 10 or 1)
    _per_op(theirs, count // 10 or 1)
    for _ in range(rounds):
        ours_times.append(_per_op(ours, count))
        theirs_times.append(_per_op(theirs, count))
    return Comparison(
        name, statistics.median(ours_times), statistics.median(theirs_times), reference, goal
    )


async def _per_op_async(fn: Callable[[], Awaitable[object]], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await fn()
    return (time.perf_counter() - start) / count


async def compare_async(
    name: str,
    ours: Callable[[], Awaitable[object]],
    theirs: Callable[[], Awaitable[object]],
    reference: str,
    *,
    goal: float | None = None,
    count: int = 2000,
    rounds: int = 7,
) -> Comparison:
    ours_times, theirs_times = [], []
    await _per_op_async(ours, count // 10 or 1)
    await _per_op_async(theirs, count // 10 or 1)
    for _ in range(rounds):
        ours_times.append(await _per_op_async(ours, count))
        theirs_times.append(await _per_op_async(theirs, count))
    return Comparison(
        name, statistics.median(ours_times), statistics.median(theirs_times), reference, goal
    )


def report(results: list[Comparison]) -> int:
    """Print a table; return how many goals were missed."""
    print(f"{'operation':<44} {'authstore':>11} {'reference':>11} {'ratio':>7}  goal  vs")
    missed = 0
    for r in results:
        goal = "-" if r.goal is None else f"<={r.goal:g}"
        mark = "" if r.met is None else (" ok" if r.met else " MISSED")
        missed += r.met is False
        print(
            f"{r.name:<44} {r.ours * 1e6:>9.1f}us {r.theirs * 1e6:>9.1f}us {r.ratio:>7.2f}"
            f"  {goal:<5}{mark}  {r.reference}"
        )
    return missed


def run(coro: Awaitable[list[Comparison]]) -> list[Comparison]:
    async def main() -> list[Comparison]:
        return await coro

    return asyncio.run(main())
