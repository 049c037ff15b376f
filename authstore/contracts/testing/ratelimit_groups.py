"""Rate-limit groups (``check_rate_limits``) and read-only peeks (``peek_rate_limit(s)``).

Two capability mixins composed into ``CacheContract``: a store that does not declare
``rate_limit_groups`` or ``rate_limit_peek`` skips them. Every test runs sync and
async; the windows are short real ones where time matters, else ``LONG``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult, StoreKind
from authstore.contracts.testing.base import (
    BAD_COUNTS,
    LONG,
    Bad,
    BadCase,
    ContractBase,
    assert_rejected,
    cases,
    require,
)
from authstore.contracts.testing.harness import CacheSubject, Stores
from authstore.contracts.values import MAX_KEY_BYTES
from authstore.limits import Limit

__all__ = ["RateLimitGroupContract", "RateLimitPeekContract"]

GROUPS = "rate_limit_groups"
PEEK = "rate_limit_peek"

BAD_LIMITS: Bad = [
    ("", ValueError),
    (";", ValueError),
    ([], ValueError),
    ("10", ValueError),
    ("10/fortnight", ValueError),
    ("0/minute", ValueError),
    ("10/minute;oops", ValueError),
    (None, TypeError),
    (10, TypeError),
    (b"10/minute", TypeError),
    ([10], TypeError),
    (["10/minute", None], TypeError),
]
BAD_GROUP_KEYS: Bad = [
    (1, TypeError),
    (None, TypeError),
    ("", ValueError),
    ("x" * (MAX_KEY_BYTES + 1), ValueError),
]


def _algorithms(store: CacheSubject) -> list[RateLimitAlgorithm]:
    return [a for a in RateLimitAlgorithm if a.value in store.capabilities]


def _entries(store: CacheSubject, url: str | None) -> int | None:
    """How many entries the store's namespace holds, where the backend can count them."""
    if url is None:
        return None
    from authstore.registry import NamespaceCleaner, backend_for

    backend, parsed = backend_for(url)
    if not isinstance(backend, NamespaceCleaner):
        return None
    return backend.count_namespace(parsed, store.namespace)


def _peek_once(store: Any, algorithm: RateLimitAlgorithm) -> Any:
    return store.peek_rate_limit("k", 1, 60, algorithm)


def _race(
    store: CacheSubject, other: CacheSubject, key: str, group: list[Limit]
) -> list[RateLimitResult]:
    """100 group hits at once, alternating between two clients (two app processes)."""
    clients = itertools.cycle([store.raw, other.raw])
    return store.concurrently(100, lambda _: next(clients).check_rate_limits(key, group))


def group_bad_cases(capabilities: frozenset[str]) -> list[BadCase]:
    found: list[BadCase] = []
    for method in ("check_rate_limits", "peek_rate_limits") if GROUPS in capabilities else ():
        found += cases(method, BAD_LIMITS, "k")
        found += [BadCase(method, (key, "3/minute"), error) for key, error in BAD_GROUP_KEYS]
        found += cases(method, BAD_COUNTS, "k", "3/minute")
        # a cost above the group's smallest limit could never pass
        found.append(BadCase(method, ("k", "5/minute;3/hour", 4), ValueError))
        found.append(BadCase(method, ("k", [Limit(5, 60), "3/hour"], 4), ValueError))
    if PEEK in capabilities:
        peek = "peek_rate_limit"
        found += [BadCase(peek, (key, 10, 60), error) for key, error in BAD_GROUP_KEYS]
        found += cases(peek, BAD_COUNTS, "k", window=60)
        found += cases(peek, [(0, ValueError), (-1.0, ValueError), ("60", TypeError)], "k", 10)
        found += cases(peek, BAD_COUNTS, "k", 10, 60, cost=...)
        found.append(BadCase(peek, ("k", 10, 60), ValueError, {"cost": 11}))
        found.append(BadCase(peek, ("k", 10, 60, "leaky"), ValueError))
        found.append(BadCase(peek, ("k", 10, 60, 1), TypeError))
    return found


def _rejected_before_io(
    contract: ContractBase, stores: Stores, unreachable_url: str | None, capability: str
) -> None:
    """Bad input to ``capability``'s methods raises ValueError/TypeError on an open, a
    closed and an unreachable store alike: the checks come before any I/O."""
    targets = contract.io_free_targets(stores, StoreKind.CACHE, unreachable_url)
    require(targets[0][1], capability)
    assert_rejected(targets, group_bad_cases(frozenset({capability})))


class RateLimitGroupContract(ContractBase):
    capability = GROUPS

    def test_group_accepts_limit_strings_limits_and_lists(self, cache_store: CacheSubject) -> None:
        """Text, a Limit, a list of both: the same limits in any form and order are one
        group (one state); the result's ``limit`` names the binding limit."""
        first = cache_store.check_rate_limits("k", "3/hour;10/2 hours")
        assert isinstance(first, RateLimitResult)
        assert (first.allowed, first.remaining, first.limit) == (True, 2, 3)
        same = cache_store.check_rate_limits("k", [Limit(10, 7200), "3 per 1 hour"])
        assert (same.allowed, same.remaining, same.limit) == (True, 1, 3)
        again = cache_store.check_rate_limits("k", "10/2h, 3/h, 3/hour")
        assert (again.allowed, again.remaining, again.limit) == (True, 0, 3)
        assert cache_store.check_rate_limits("k", "3/hour|10/2 hours").allowed is False
        assert cache_store.check_rate_limits("k", Limit(3, 3600)).remaining == 2  # another group
        single = cache_store.check_rate_limits("other", "2/minute")
        assert (single.allowed, single.remaining, single.limit) == (True, 1, 2)
        assert 59 < single.reset_after <= 60

    def test_group_state_is_apart_from_check_rate_limit(self, cache_store: CacheSubject) -> None:
        """A group keeps its own state: a single limiter on the same key does not see it,
        and reset_rate_limit leaves it alone."""
        assert [cache_store.check_rate_limits("k", "2/hour").allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
        if "fixed_window" in cache_store.capabilities:
            assert cache_store.check_rate_limit("k", 2, LONG).remaining == 1
            cache_store.reset_rate_limit("k")
        assert cache_store.check_rate_limits("k", "2/hour").allowed is False

    def test_group_refused_hit_consumes_nothing_anywhere(self, cache_store: CacheSubject) -> None:
        """A hit the short limit refuses takes nothing from the long one: once the short
        window has passed, the long limit still has exactly what the allowed hits left."""
        window = 0.6
        group = [Limit(2, window), Limit(3, LONG)]
        cache_store.check_rate_limits("warm-up", group)  # connections are open before timing
        # the short window starts during the first hit: between ``started`` and ``first``
        started = time.monotonic()
        assert cache_store.check_rate_limits("k", group).allowed
        first = time.monotonic()
        assert cache_store.check_rate_limits("k", group).allowed
        for _ in range(10):
            refused = cache_store.check_rate_limits("k", group)
            if time.monotonic() - started >= window / 2:
                break
            assert (refused.allowed, refused.limit) == (False, 2), refused
            assert 0 < refused.retry_after <= window
        time.sleep(max(0.0, first + window + 0.15 - time.monotonic()))
        left = cache_store.check_rate_limits("k", group)
        assert (left.allowed, left.remaining, left.limit) == (True, 0, 3), left
        last = cache_store.check_rate_limits("k", group)
        assert (last.allowed, last.limit) == (False, 3), last
        assert last.retry_after > window

    def test_group_refusal_by_cost(self, cache_store: CacheSubject) -> None:
        """A costly hit one limit cannot take is refused whole; a smaller one still fits."""
        group = "5/2 hours;3/hour"
        assert cache_store.check_rate_limits("k", group, 2).remaining == 1
        refused = cache_store.check_rate_limits("k", group, 2)
        assert (refused.allowed, refused.remaining, refused.limit) == (False, 1, 3), refused
        fits = cache_store.check_rate_limits("k", group, 1)
        assert (fits.allowed, fits.remaining, fits.limit) == (True, 0, 3), fits
        assert cache_store.check_rate_limits("k", "5/2 hours;3/hour", 1).allowed is False

    def test_group_binding_limit_when_refused(self, cache_store: CacheSubject) -> None:
        """Refused by several limits: the result is the one that makes the caller wait longest."""
        group = "1/minute;1/hour"
        assert cache_store.check_rate_limits("k", group).allowed
        refused = cache_store.check_rate_limits("k", group)
        assert (refused.allowed, refused.limit) == (False, 1)
        assert 3500 < refused.retry_after <= 3600, refused

    def test_group_every_algorithm(self, cache_store: CacheSubject) -> None:
        for algorithm in _algorithms(cache_store):
            group = [Limit(3, LONG, algorithm), Limit(5, 2 * LONG)]
            hits = [cache_store.check_rate_limits(algorithm.value, group) for _ in range(4)]
            assert [h.allowed for h in hits] == [True, True, True, False], (algorithm, hits)
            assert [h.remaining for h in hits] == [2, 1, 0, 0], (algorithm, hits)
            assert all(h.limit == 3 for h in hits)

    def test_group_windows_expire(self, cache_store: CacheSubject) -> None:
        """Short real windows: after retry_after the group lets hits through again."""
        window = 0.4
        group = [Limit(2, window), Limit(100, LONG)]
        assert [cache_store.check_rate_limits("k", group).allowed for _ in range(2)] == [True] * 2
        refused = cache_store.check_rate_limits("k", group)
        if not refused.allowed:
            assert 0 < refused.retry_after <= window
            time.sleep(refused.retry_after + 0.1)
        again = cache_store.check_rate_limits("k", group)
        assert again.allowed, again
        assert again.remaining == 1 and again.limit == 2, again

    def test_group_concurrent_hits(
        self, cache_store: CacheSubject, authstore_stores: Stores
    ) -> None:
        """100 hits at once from two clients on a group whose binding capacity is 10:
        exactly 10 pass, each seeing its own remaining count."""
        for algorithm in _algorithms(cache_store):
            group = [Limit(10, LONG, algorithm), Limit(15, 2 * LONG)]
            results = _race(cache_store, authstore_stores.cache(), algorithm.value, group)
            allowed = [r for r in results if r.allowed]
            assert len(allowed) == 10, (algorithm, len(allowed))
            assert sorted(r.remaining for r in allowed) == list(range(10)), algorithm
            assert not cache_store.check_rate_limits(algorithm.value, group).allowed

    def test_group_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        """A group hit or peek on a backend that is down raises, never answers "allowed"."""
        require(authstore_stores.cache(), GROUPS)  # a capability skip before any URL question
        store = self.unreachable(authstore_stores, StoreKind.CACHE, authstore_unreachable_url)
        calls: dict[str, Callable[[Any], Any]] = {
            "check_rate_limits": lambda s: s.check_rate_limits("k", "1/minute;5/hour")
        }
        if PEEK in store.capabilities:
            calls["peek_rate_limits"] = lambda s: s.peek_rate_limits("k", "1/minute;5/hour")
            for algorithm in _algorithms(store):
                calls[f"peek {algorithm.value}"] = partial(_peek_once, algorithm=algorithm)
        self.fails_closed(store, calls)

    def test_group_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        _rejected_before_io(self, authstore_stores, authstore_unreachable_url, GROUPS)


class RateLimitPeekContract(ContractBase):
    capability = PEEK

    def test_peek_reports_what_a_hit_would_get(self, cache_store: CacheSubject) -> None:
        for algorithm in _algorithms(cache_store):
            key = algorithm.value
            fresh = cache_store.peek_rate_limit(key, 3, LONG, algorithm)
            assert (fresh.allowed, fresh.remaining, fresh.limit, fresh.retry_after) == (
                True,
                3,
                3,
                0,
            ), (algorithm, fresh)
            cache_store.check_rate_limit(key, 3, LONG, 2, algorithm)
            seen = cache_store.peek_rate_limit(key, 3, LONG, algorithm)
            assert (seen.allowed, seen.remaining) == (True, 1), (algorithm, seen)
            too_costly = cache_store.peek_rate_limit(key, 3, LONG, algorithm, 2)
            assert (too_costly.allowed, too_costly.remaining) == (False, 1), (algorithm, too_costly)
            assert too_costly.retry_after > 0
            hit = cache_store.check_rate_limit(key, 3, LONG, 1, algorithm)
            after = cache_store.peek_rate_limit(key, 3, LONG, algorithm.value)
            assert (after.allowed, after.remaining) == (False, 0), (algorithm, after)
            assert 0 < after.retry_after <= 2 * LONG
            assert abs(after.reset_after - hit.reset_after) < 5, (hit, after)

    def test_peek_consumes_nothing(self, cache_store: CacheSubject) -> None:
        """100 peeks, then still exactly ``limit`` hits pass."""
        for algorithm in _algorithms(cache_store):
            cache_store.check_rate_limit(algorithm.value, 5, LONG, 1, algorithm)
            for _ in range(100):
                peeked = cache_store.peek_rate_limit(algorithm.value, 5, LONG, algorithm)
                assert (peeked.allowed, peeked.remaining) == (True, 4), (algorithm, peeked)
            hits = [
                cache_store.check_rate_limit(algorithm.value, 5, LONG, 1, algorithm)
                for _ in range(5)
            ]
            assert [h.allowed for h in hits] == [True] * 4 + [False], (algorithm, hits)
        if GROUPS in cache_store.capabilities:
            group = "5/hour;7/2 hours"
            for _ in range(100):
                assert cache_store.peek_rate_limits("group", group).remaining == 5
            hits = [cache_store.check_rate_limits("group", group) for _ in range(6)]
            assert [h.allowed for h in hits] == [True] * 5 + [False], hits
            refused = cache_store.peek_rate_limits("group", group)
            assert (refused.allowed, refused.remaining, refused.limit) == (False, 0, 5)

    def test_peek_creates_nothing(
        self, cache_store: CacheSubject, authstore_url: str | None
    ) -> None:
        """Peeks on keys never hit leave the namespace empty (where the backend can count
        its entries) and every key as fresh as before."""
        before = _entries(cache_store, authstore_url)
        for algorithm in _algorithms(cache_store):
            result = cache_store.peek_rate_limit("never", 2, LONG, algorithm)
            assert (result.allowed, result.remaining) == (True, 2)
        if GROUPS in cache_store.capabilities:
            assert cache_store.peek_rate_limits("never", "2/hour;3/day").remaining == 2
        assert _entries(cache_store, authstore_url) == before
        if before is not None:
            assert before == 0

    def test_peek_does_not_start_a_window(self, cache_store: CacheSubject) -> None:
        """A fixed window starts at the first hit, not at a peek before it."""
        window = 1.0
        if "fixed_window" in cache_store.capabilities:
            cache_store.peek_rate_limit("k", 2, window)
        if GROUPS in cache_store.capabilities:
            cache_store.peek_rate_limits("k", [Limit(2, window)])
        time.sleep(window * 0.6)
        if "fixed_window" in cache_store.capabilities:
            hit = cache_store.check_rate_limit("k", 2, window)
            assert hit.reset_after > window * 0.75, hit
        if GROUPS in cache_store.capabilities:
            grouped = cache_store.check_rate_limits("k", [Limit(2, window)])
            assert grouped.reset_after > window * 0.75, grouped

    def test_peek_sees_expiry(self, cache_store: CacheSubject) -> None:
        window = 0.4
        for algorithm in _algorithms(cache_store):
            cache_store.check_rate_limit(algorithm.value, 1, window, 1, algorithm)
            cache_store.check_rate_limit(algorithm.value, 1, window, 1, algorithm)
        time.sleep(2 * window + 0.15)
        for algorithm in _algorithms(cache_store):
            result = cache_store.peek_rate_limit(algorithm.value, 1, window, algorithm)
            assert (result.allowed, result.remaining) == (True, 1), (algorithm, result)

    def test_peek_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        _rejected_before_io(self, authstore_stores, authstore_unreachable_url, PEEK)
