"""Timing: the contenders of one operation take turns; the median round decides.

Each contender is ``call(i)`` returning a result (sync) or an awaitable (async), with an
optional untimed ``prepare(n)`` before each round (fresh magic links to consume, say).
Warm-up calls calibrate how many calls a round holds, then one whole warm-up round runs
uncounted (pools filled, statements prepared, caches hot). In a round, the contenders run
their calls in slices that alternate (A, B, C, A, B, C, ...), so a burst of load from
another process hits them alike. The garbage collector runs between rounds, never
during one. Every call is timed: p50/p99 come from all calls. A round's sample is its
mean time per call leaving out the slowest 5% of calls (on a shared machine other
processes take the CPU for milliseconds at a time); the median sample over rounds gives
ops/s. Each round's median call is kept (``Measurement.rounds``): a ratio between two
contenders is the median of their per-round ratios of these (paired: the same round saw
the same load), and its spread over the rounds says how far to trust it (``ratio_of``).

Rounds go on past ``Budget.rounds`` (up to ``Budget.max_rounds``) while some contender's
ratio to the first one is still uncertain (``ratio_of``'s error above ``Budget.settle``).

With concurrent callers, a round's sample is its wall time over its calls (nothing
left out), and p50/p99 are the latencies the callers saw, queueing included.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import math
import statistics
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from authstore.adapters.common.ops import drive, drive_async

__all__ = [
    "Budget",
    "Contender",
    "Measurement",
    "Ratio",
    "measure_async",
    "measure_concurrent",
    "measure_sync",
    "ratio_of",
]


@dataclass(frozen=True)
class Budget:
    rounds: int
    round_seconds: float
    """Aimed duration of one round of one contender (the call count is calibrated)."""
    min_calls: int
    max_calls: int
    slices: int
    """How many alternating slices a round is cut into."""
    concurrent_seconds: float
    """Aimed duration of one round with concurrent callers."""
    concurrent_calls: int
    """At most this many calls per concurrent round (at least one per caller)."""
    max_rounds: int = 0
    """Rounds go on up to this many while a ratio is uncertain (0: ``rounds``)."""
    settle: float = 0.02
    """A ratio is settled when its relative standard error is at most this."""
    warm_round: bool = True
    """One uncounted round before the counted ones."""


FULL = Budget(
    rounds=7,
    round_seconds=0.06,
    min_calls=10,
    max_calls=6000,
    slices=100,
    concurrent_seconds=0.25,
    concurrent_calls=2000,
    max_rounds=15,
)
QUICK = Budget(
    rounds=3,
    round_seconds=0.02,
    min_calls=5,
    max_calls=1500,
    slices=100,
    concurrent_seconds=0.08,
    concurrent_calls=500,
    max_rounds=9,
)
SMOKE = Budget(
    rounds=1,
    round_seconds=0.0,
    min_calls=1,
    max_calls=1,
    slices=1,
    concurrent_seconds=0.0,
    concurrent_calls=2,
    warm_round=False,
)
TRIM = 0.05


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
    """Median over rounds of the (trimmed) mean time per call, or wall time per call."""
    p50: float = 0.0
    p99: float = 0.0
    calls: int = 0
    error: str | None = None
    rounds: list[float] = field(default_factory=list)
    """Each counted round's typical call (seconds): the median call of the round (with
    concurrent callers: the round's wall time per call), in round order. Ratios pair
    these round by round (``ratio_of``): a median call is not moved by the few calls
    another process's burst of load stretched."""
    samples: list[float] = field(default_factory=list, repr=False)

    @property
    def ops(self) -> float:
        return 1 / self.seconds_per_op if self.seconds_per_op > 0 else 0.0

    def finish(self, round_means: list[float], typical: list[float] | None = None) -> None:
        self.rounds = list(round_means if typical is None else typical)
        self.seconds_per_op = statistics.median(round_means) if round_means else 0.0
        if self.samples:
            ordered = sorted(self.samples)
            self.p50 = ordered[len(ordered) // 2]
            self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        self.calls = len(self.samples)
        self.samples = []


@dataclass(frozen=True)
class Ratio:
    """``ours`` time over ``theirs``: the median of the per-round ratios, and its
    relative standard error from their spread (0 with fewer than 3 paired rounds)."""

    value: float
    error: float
    rounds: int

    @property
    def settled(self) -> bool:
        return self.rounds >= 3


def ratio_of(ours: list[float], theirs: list[float]) -> Ratio:
    """The paired per-round ratio of two contenders measured in the same rounds (the
    rounds both have; a contender that failed part way has fewer). The error is the
    standard error of a median, from the median absolute deviation of the per-round
    ratios (1.4826 MAD estimates the deviation, 1.2533 sd / sqrt(n) the median's error),
    relative to the ratio."""
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if a > 0 and b > 0]
    if not pairs:
        return Ratio(0.0, 0.0, 0)
    value = statistics.median(pairs)
    if len(pairs) < 3:
        return Ratio(value, 0.0, len(pairs))
    mad = statistics.median(abs(p - value) for p in pairs)
    error = 1.2533 * 1.4826 * mad / math.sqrt(len(pairs)) / value
    return Ratio(value, error, len(pairs))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The collector off while a round runs (a collection is charged to whoever
    happens to allocate); it runs between rounds instead."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _uncertain(means: list[list[float]], live: list[int], settle: float) -> bool:
    """Some live contender's ratio to the first one is not settled yet."""
    if not live or live[0] != 0:
        return False
    return any(ratio_of(means[0], means[i]).error > settle for i in live[1:])


def trimmed_mean(samples: list[float]) -> float:
    """The mean leaving out the slowest ``TRIM`` share of the calls."""
    ordered = sorted(samples)
    keep = len(ordered) - int(len(ordered) * TRIM)
    return sum(ordered[:keep]) / keep


def _calls(budget: Budget, per_call: float) -> int:
    if per_call <= 0:
        return budget.max_calls
    return max(budget.min_calls, min(budget.max_calls, int(budget.round_seconds / per_call)))


def _failed(contender: Contender, error: BaseException) -> Measurement:
    return Measurement(contender.label, contender.kind, contender.note, error=repr(error)[:200])


def _slices(n: int, slices: int) -> list[int]:
    count = max(1, min(slices, n))
    return [n // count + (1 if k < n % count else 0) for k in range(count)]


class _Plan:
    """Calls per contender, their slices, and the results so far."""

    def __init__(self, contenders: list[Contender], budget: Budget) -> None:
        self.contenders = contenders
        self.budget = budget
        self.results = [Measurement(c.label, c.kind, c.note) for c in contenders]
        self.means: list[list[float]] = [[] for _ in contenders]
        self.typical: list[list[float]] = [[] for _ in contenders]
        self.sizes: list[int] = []
        self.counter = 0

    def fail(self, index: int, error: BaseException) -> None:
        self.sizes[index] = 0
        self.results[index] = _failed(self.contenders[index], error)

    def live(self) -> list[int]:
        return [i for i, n in enumerate(self.sizes) if n]

    def turns(self) -> list[tuple[int, int]]:
        """(contender, calls) in alternating order for one round."""
        cut = {i: _slices(self.sizes[i], self.budget.slices) for i in self.live()}
        order = []
        for k in range(self.budget.slices):
            for i, parts in cut.items():
                if k < len(parts):
                    order.append((i, parts[k]))
        return order

    def done(self) -> list[Measurement]:
        for result, series, typical in zip(self.results, self.means, self.typical, strict=True):
            if result.error is None:
                result.finish(series, typical)
        return self.results


def _slice(call: Callable[[int], Any], start: int, n: int) -> list[float]:
    samples, clock = [], time.perf_counter
    for i in range(start, start + n):
        began = clock()
        call(i)
        samples.append(clock() - began)
    return samples


async def _slice_async(call: Callable[[int], Any], start: int, n: int) -> list[float]:
    samples, clock = [], time.perf_counter
    for i in range(start, start + n):
        began = clock()
        await call(i)
        samples.append(clock() - began)
    return samples


Slice = Callable[[Callable[[int], Any], int, int], Any]


def _rounds(contenders: list[Contender], budget: Budget, run: Slice) -> Generator[Any, Any, Any]:
    """The rounds, once for both modes: each step yields a slice's samples or a prepare's
    result (values, or awaitables the async driver awaits); errors come back in."""
    plan = _Plan(contenders, budget)
    for index, contender in enumerate(contenders):  # warm up and calibrate
        plan.sizes.append(0)
        try:
            if contender.prepare is not None:
                yield contender.prepare(3)
            samples = yield run(contender.call, plan.counter, 3)
            plan.counter += 3
            plan.sizes[index] = _calls(budget, sum(samples) / 3)
        except Exception as error:
            plan.fail(index, error)
    clock = time.perf_counter
    began = clock()
    most = max(budget.rounds, budget.max_rounds)
    cap = most * budget.round_seconds * max(1, len(plan.live())) * 3
    warm = 1 if budget.warm_round else 0
    for number in range(most + warm):
        counted = number - warm
        if counted >= 3 and clock() - began > cap:  # a slow server: three rounds will do
            break
        if counted >= budget.rounds and not _uncertain(plan.typical, plan.live(), budget.settle):
            break
        rounds: dict[int, list[float]] = {}
        for index in plan.live():
            prepare = contenders[index].prepare
            try:
                if prepare is not None:
                    yield prepare(plan.sizes[index])
                rounds[index] = []
            except Exception as error:
                plan.fail(index, error)
        with _no_gc():
            for index, n in plan.turns():
                if index not in rounds or not plan.sizes[index]:
                    continue
                try:
                    rounds[index] += yield run(contenders[index].call, plan.counter, n)
                except Exception as error:
                    plan.fail(index, error)
                plan.counter += n
        if counted < 0:
            continue
        for index, samples in rounds.items():
            if plan.sizes[index] and samples:
                plan.results[index].samples += samples
                plan.means[index].append(trimmed_mean(samples))
                plan.typical[index].append(statistics.median(samples))
    return plan.done()


def measure_sync(contenders: list[Contender], budget: Budget) -> list[Measurement]:
    results: list[Measurement] = drive(_rounds(contenders, budget, _slice), lambda step: step)
    return results


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def measure_async(contenders: list[Contender], budget: Budget) -> list[Measurement]:
    """Sequential async: one caller awaiting each call in turn."""
    results: list[Measurement] = await drive_async(
        _rounds(contenders, budget, _slice_async), _maybe
    )
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
    """``callers`` tasks share each round's calls. Round 0 (one call per caller) warms
    up the pools and calibrates the calls per round; it is not counted. When even it
    takes four times a round's aimed duration (the MongoDB test server), one counted
    round follows instead of ``budget.rounds``."""
    results = [Measurement(c.label, c.kind, c.note) for c in contenders]
    means: list[list[float]] = [[] for _ in contenders]
    sizes = [max(1, min(callers, budget.concurrent_calls))] * len(contenders)
    broken = [False] * len(contenders)
    rounds = [budget.rounds] * len(contenders)
    counter = 0
    clock = time.perf_counter
    for round_number in range(budget.rounds + 1):
        for index, contender in enumerate(contenders):
            if broken[index] or round_number > rounds[index]:
                continue
            n = sizes[index]
            samples: list[float] = []
            queue = iter(range(counter, counter + n))
            counter += n
            try:
                if contender.prepare is not None:
                    await _maybe(contender.prepare(n))
                with _no_gc():
                    began = clock()
                    workers = (
                        _worker(queue, contender.call, samples) for _ in range(min(callers, n))
                    )
                    await asyncio.gather(*workers)
                    wall = clock() - began
            except Exception as error:
                broken[index] = True
                results[index] = _failed(contender, error)
                continue
            if round_number == 0:
                wanted = int(budget.concurrent_seconds / (wall / n)) if wall > 0 else n
                sizes[index] = max(n, min(budget.concurrent_calls, wanted))
                if wall > 4 * budget.concurrent_seconds:  # a slow server: one round will do
                    rounds[index] = 1
                continue
            results[index].samples += samples
            means[index].append(wall / n)
    for result, series in zip(results, means, strict=True):
        if result.error is None:
            result.finish(series)
    return results
