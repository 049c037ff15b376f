"""The single-limit rate-limit contracts: one mixin per algorithm, tests written once."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import pytest

from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult
from authstore.contracts.testing.base import LONG, ContractBase, require
from authstore.contracts.testing.harness import CacheSubject, Stores

__all__ = ["FixedWindowContract", "GcraContract", "SlidingWindowContract"]


@dataclass(frozen=True)
class Limiter:
    """``check_rate_limit`` bound to one algorithm, with that algorithm's time bounds."""

    store: CacheSubject
    algorithm: RateLimitAlgorithm

    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> RateLimitResult:
        return self.store.check_rate_limit(key, limit, window, cost, self.algorithm)

    def horizon(self, window: float) -> float:
        """The longest reset_after/retry_after: a sliding window remembers the previous
        window, so a refused hit may have to wait into the next one (up to 2 windows)."""
        sliding = self.algorithm is RateLimitAlgorithm.SLIDING_WINDOW
        return 2 * window if sliding else window

    def refill_wait(self, window: float) -> float:
        """Idle time after which the limiter is surely back to a full ``limit``."""
        return self.horizon(window) + 0.1


def check_result(result: RateLimitResult, limiter: Limiter, window: float) -> None:
    """Shape and bounds every result must respect, allowed or refused."""
    assert isinstance(result, RateLimitResult)
    allowed, remaining, reset_after = result
    assert (allowed, remaining, reset_after) == (
        result.allowed,
        result.remaining,
        result.reset_after,
    )
    assert len(tuple(result)) == 3
    assert bool(result) is result.allowed
    assert 0 <= result.remaining <= result.limit
    assert 0 <= result.reset_after <= limiter.horizon(window) + 0.01, result
    if result.allowed:
        assert result.retry_after == 0, result
    else:
        assert 0 < result.retry_after <= limiter.horizon(window) + 0.01, result


_ALGORITHMS_ATTRIBUTE = "rate_limit_algorithm"


class _RateLimitTests(ContractBase):
    """Written once, run for each algorithm whose mixin the test class composes."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "rate_algorithm" not in metafunc.fixturenames or metafunc.cls is None:
            return
        algorithms = [
            vars(klass)[_ALGORITHMS_ATTRIBUTE]
            for klass in metafunc.cls.__mro__
            if _ALGORITHMS_ATTRIBUTE in vars(klass)
        ]
        metafunc.parametrize("rate_algorithm", algorithms, ids=[a.value for a in algorithms])

    @pytest.fixture
    def limiter(self, cache_store: CacheSubject, rate_algorithm: RateLimitAlgorithm) -> Limiter:
        require(cache_store, rate_algorithm.value)
        return Limiter(cache_store, rate_algorithm)

    def test_rate_limit_exactly_limit_pass(self, limiter: Limiter) -> None:
        results = [limiter.hit("login", 5, LONG) for _ in range(8)]
        for result in results:
            check_result(result, limiter, LONG)
            assert result.limit == 5
        assert [r.allowed for r in results] == [True] * 5 + [False] * 3
        assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0, 0]
        assert all(r.reset_after > 0 for r in results)

    def test_rate_limit_cost(self, limiter: Limiter) -> None:
        """Weighted hits; a refused hit consumes nothing, so a smaller one still fits."""
        steps = [
            (4, True, 6),
            (4, True, 2),
            (4, False, 2),
            (3, False, 2),
            (2, True, 0),
            (1, False, 0),
        ]
        for cost, allowed, remaining in steps:
            result = limiter.hit("k", 10, LONG, cost)
            check_result(result, limiter, LONG)
            assert (result.allowed, result.remaining) == (allowed, remaining), (cost, result)
        full = limiter.hit("whole", 7, LONG, 7)
        assert (full.allowed, full.remaining) == (True, 0)

    def test_rate_limit_refused_hits_consume_nothing(self, limiter: Limiter) -> None:
        """Hammering a closed limiter must not extend the lock-out: after the usual
        refill time the full limit passes again, then the next hit is refused."""
        window = 0.45
        # GCRA and the sliding window give a unit back every window/limit: a server slow
        # enough to spend that long on the hits below has rightly earned one more.
        earns_one = window / 3
        first = time.monotonic()
        assert all(limiter.hit("k", 3, window).allowed for _ in range(3))
        for _ in range(20):
            allowed = limiter.hit("k", 3, window).allowed
            if time.monotonic() - first >= earns_one:
                break
            assert not allowed
        time.sleep(limiter.refill_wait(window))
        started = time.monotonic()
        again = [limiter.hit("k", 3, window).allowed for _ in range(4)]
        assert again[:3] == [True] * 3
        if time.monotonic() - started < earns_one:
            assert again[3] is False

    def test_rate_limit_retry_after_is_honest(self, limiter: Limiter) -> None:
        window = 0.3
        assert limiter.hit("k", 2, window).allowed
        assert limiter.hit("k", 2, window).allowed
        refused = limiter.hit("k", 2, window)
        assert not refused.allowed
        check_result(refused, limiter, window)
        time.sleep(refused.retry_after + 0.05)
        assert limiter.hit("k", 2, window).allowed, f"still refused after {refused.retry_after} s"

    def test_rate_limit_reset(self, limiter: Limiter) -> None:
        assert [limiter.hit("k", 2, LONG).allowed for _ in range(3)] == [True, True, False]
        limiter.store.reset_rate_limit("k")
        assert [limiter.hit("k", 2, LONG).allowed for _ in range(3)] == [True, True, False]
        limiter.store.reset_rate_limit("never-used")

    def test_rate_limit_algorithm_as_enum_or_string(self, limiter: Limiter) -> None:
        store, algorithm = limiter.store, limiter.algorithm
        first = store.check_rate_limit("k", 3, LONG, algorithm=algorithm)
        second = store.check_rate_limit("k", 3, LONG, algorithm=algorithm.value)
        third = store.check_rate_limit("k", 3, LONG, 1, algorithm.value)
        assert [r.remaining for r in (first, second, third)] == [2, 1, 0]

    def test_rate_limit_keys_and_algorithms_are_independent(self, limiter: Limiter) -> None:
        store = limiter.store
        assert [limiter.hit("k", 1, LONG).allowed for _ in range(2)] == [True, False]
        assert limiter.hit("other", 1, LONG).allowed
        for algorithm in RateLimitAlgorithm:
            if algorithm is not limiter.algorithm and algorithm.value in store.capabilities:
                result = store.check_rate_limit("k", 1, LONG, algorithm=algorithm)
                assert result.allowed, (
                    f"{limiter.algorithm.value} state leaked into {algorithm.value}"
                )
        if "kv" in store.capabilities:
            assert store.get("k") is None and store.exists("k") is False

    def test_rate_limit_changed_limit(self, limiter: Limiter) -> None:
        """Lowering the limit of a busy key keeps every result within its bounds."""
        for _ in range(7):
            check_result(limiter.hit("k", 10, LONG), limiter, LONG)
        lowered = limiter.hit("k", 5, LONG)
        check_result(lowered, limiter, LONG)
        assert lowered.limit == 5
        if limiter.algorithm is not RateLimitAlgorithm.GCRA:
            assert (lowered.allowed, lowered.remaining) == (False, 0)

    def test_rate_limit_concurrent_hits(self, limiter: Limiter) -> None:
        """100 hits at once on a limit of 10: exactly 10 pass, each seeing its own count."""
        algorithm = limiter.algorithm
        results = limiter.store.concurrently(
            100, lambda store: store.check_rate_limit("hot", 10, LONG, algorithm=algorithm)
        )
        allowed = [r for r in results if r.allowed]
        assert len(allowed) == 10
        assert sorted(r.remaining for r in allowed) == list(range(10))
        assert not limiter.hit("hot", 10, LONG).allowed

    def test_rate_limit_concurrent_hits_on_two_clients(
        self, limiter: Limiter, authstore_stores: Stores
    ) -> None:
        """The limit holds across store instances (two app processes), not just in one."""
        algorithm = limiter.algorithm
        clients = itertools.cycle([limiter.store.raw, authstore_stores.cache().raw])
        results = limiter.store.concurrently(
            100, lambda _: next(clients).check_rate_limit("hot", 10, LONG, 3, algorithm)
        )
        assert sum(1 for r in results if r.allowed) == 3


class FixedWindowContract(_RateLimitTests):
    capability = "fixed_window"
    rate_limit_algorithm = RateLimitAlgorithm.FIXED_WINDOW

    def test_fixed_window_is_the_default_algorithm(self, cache_store: CacheSubject) -> None:
        assert cache_store.check_rate_limit("k", 2, LONG).remaining == 1
        explicit = cache_store.check_rate_limit("k", 2, LONG, algorithm="fixed_window")
        assert explicit.remaining == 0


class SlidingWindowContract(_RateLimitTests):
    capability = "sliding_window"
    rate_limit_algorithm = RateLimitAlgorithm.SLIDING_WINDOW


class GcraContract(_RateLimitTests):
    capability = "gcra"
    rate_limit_algorithm = RateLimitAlgorithm.GCRA

    def test_gcra_refills_gradually(self, cache_store: CacheSubject) -> None:
        """A token bucket gives back one hit per window/limit, not all at the window's end."""
        limit, window = 4, 1.6
        assert all(
            cache_store.check_rate_limit("k", limit, window, algorithm="gcra") for _ in range(4)
        )
        time.sleep(window / limit + 0.05)
        assert cache_store.check_rate_limit("k", limit, window, algorithm="gcra").allowed
        assert not cache_store.check_rate_limit("k", limit, window, algorithm="gcra").allowed
