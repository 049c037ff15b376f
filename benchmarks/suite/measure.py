"""Timing: contenders of one operation run in interleaved rounds; the median round decides.

Each contender is ``call(i)`` returning a result (sync) or an awaitable (async), with an
optional untimed ``prepare(n)`` before each round (fresh magic links to consume, say).
A round of ``n`` calls is timed call by call (p50/p99 come from every call of every
round); its mean is one sample, and the median sample gives ops/s. Contenders of one
operation alternate round by round, so machine noise hits them alike.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Budget",
    "Contender",
    "Measurement",
    "measure_async",
    "measure_concurrent",
    "measure_sync",
]


@dataclass(frozen=True)
class Budget:
    rounds: int
    round_seconds: float
    """Aimed duration of one round of one contender (the call count is calibrated)."""
    min_calls: int
    max_calls: int
    concurrent_calls: int
    """Calls per round with 100 concurrent callers (at least twice the callers)."""


FULL = Budget(rounds=5, round_seconds=0.05, min_calls=5, max_calls=4000, concurrent_calls=400)
QUICK = Budget(rounds=3, round_seconds=0.012, min_calls=3, max_calls=600, concurrent_calls=200)
SMOKE = Budget(rounds=1, round_seconds=0.0, min_calls=1, max_calls=1, concurrent_calls=2)


@dataclass
class Contender:
    label: str
    kind: str
    """authstore, raw or peer."""
    call: Callable[[int], Any]
    prepare: Callable[[int], Any] | None = None
    note: str = ""


@dataclass
class Measurement:
    label: str
    kind: str
    note: str
    seconds_per_op: float = 0.0
    """Median over rounds of the mean time per call (wall time / calls when concurrent)."""
    p50: float = 0.0
    p99: float = 0.0
    calls: int = 0
    error: str | None = None
    samples: list[float] = field(default_factory=list, repr=False)

    @property
    def ops(self) -> float:
        return 1 / self.seconds_per_op if self.seconds_per_op > 0 else 0.0

    def finish(self, round_means: list[float]) -> None:
        self.seconds_per_op = statistics.median(round_means) if round_means else 0.0
        if self.samples:
            ordered = sorted(self.samples)
            self.p50 = ordered[len(ordered) // 2]
            self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        self.calls = len(self.samples)
        self.samples = []


def _calls(budget: Budget, per_call: float) -> int:
    if per_call <= 0:
        return budget.max_calls
    return max(budget.min_calls, min(budget.max_calls, int(budget.round_seconds / per_call)))


def _failed(contender: Contender, error: BaseException) -> Measurement:
    return Measurement(contender.label, contender.kind, contender.note, error=repr(error)[:200])


def measure_sync(contenders: list[Contender], budget: Budget) -> list[Measurement]:
    results = [Measurement(c.label, c.kind, c.note) for c in contenders]
    means: list[list[float]] = [[] for _ in contenders]
    sizes = []
    counter = 0
    for contender in contenders:  # warm up and calibrate
        try:
            if contender.prepare is not None:
                contender.prepare(3)
            started = time.perf_counter()
            for _ in range(3):
                contender.call(counter)
                counter += 1
            sizes.append(_calls(budget, (time.perf_counter() - started) / 3))
        except Exception as error:
            sizes.append(0)
            results[contenders.index(contender)] = _failed(contender, error)
    for _ in range(budget.rounds):
        for index, contender in enumerate(contenders):
            n = sizes[index]
            if n == 0:
                continue
            result, call, clock = results[index], contender.call, time.perf_counter
            try:
                if contender.prepare is not None:
                    contender.prepare(n)
                samples = []
                for _ in range(n):
                    started = clock()
                    call(counter)
                    samples.append(clock() - started)
                    counter += 1
            except Exception as error:
                sizes[index] = 0
                results[index] = _failed(contender, error)
                continue
            result.samples += samples
            means[index].append(sum(samples) / n)
    for result, series in zip(results, means, strict=True):
        if result.error is None:
            result.finish(series)
    return results


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def measure_async(contenders: list[Contender], budget: Budget) -> list[Measurement]:
    """Sequential async: one caller awaiting each call in turn."""
    results = [Measurement(c.label, c.kind, c.note) for c in contenders]
    means: list[list[float]] = [[] for _ in contenders]
    sizes = []
    counter = 0
    for index, contender in enumerate(contenders):
        try:
            if contender.prepare is not None:
                await _maybe(contender.prepare(3))
            started = time.perf_counter()
            for _ in range(3):
                await contender.call(counter)
                counter += 1
            sizes.append(_calls(budget, (time.perf_counter() - started) / 3))
        except Exception as error:
            sizes.append(0)
            results[index] = _failed(contender, error)
    for _ in range(budget.rounds):
        for index, contender in enumerate(contenders):
            n = sizes[index]
            if n == 0:
                continue
            call, clock = contender.call, time.perf_counter
            try:
                if contender.prepare is not None:
                    await _maybe(contender.prepare(n))
                samples = []
                for _ in range(n):
                    started = clock()
                    await call(counter)
                    samples.append(clock() - started)
                    counter += 1
            except Exception as error:
                sizes[index] = 0
                results[index] = _failed(contender, error)
                continue
            results[index].samples += samples
            means[index].append(sum(samples) / n)
    for result, series in zip(results, means, strict=True):
        if result.error is None:
            result.finish(series)
    return results


async def _worker(queue: Iterator[int], call: Callable[[int], Any], samples: list[float]) -> None:
    clock = time.perf_counter
    for i in queue:
        began = clock()
        await call(i)
        samples.append(clock() - began)


async def measure_concurrent(
    contenders: list[Contender], budget: Budget, callers: int = 100
) -> list[Measurement]:
    """``callers`` tasks share each round's calls; ops/s is calls over wall time, p50/p99
    the latency each caller saw (queueing for a pooled connection included)."""
    results = [Measurement(c.label, c.kind, c.note) for c in contenders]
    means: list[list[float]] = [[] for _ in contenders]
    broken = [False] * len(contenders)
    counter = 0
    n = max(budget.concurrent_calls, min(callers, budget.concurrent_calls))
    for round_number in range(budget.rounds + 1):  # round 0 warms up (connections, pools)
        for index, contender in enumerate(contenders):
            if broken[index]:
                continue
            call, clock = contender.call, time.perf_counter
            samples: list[float] = []
            start = counter
            counter += n
            queue = iter(range(start, start + n))

            try:
                if contender.prepare is not None:
                    await _maybe(contender.prepare(n))
                began = clock()
                await asyncio.gather(
                    *(_worker(queue, call, samples) for _ in range(min(callers, n)))
                )
                wall = clock() - began
            except Exception as error:
                broken[index] = True
                results[index] = _failed(contender, error)
                continue
            if round_number:
                results[index].samples += samples
                means[index].append(wall / n)
    for result, series in zip(results, means, strict=True):
        if result.error is None:
            result.finish(series)
    return results
