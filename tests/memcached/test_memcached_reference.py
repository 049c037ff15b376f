"""memcached computes what the memory backend (the reference) computes: the same
random sequences of hits, revocations and counters, at the same instants of one fake
clock, give the same answers. The rate limiters run ``ratelimit.step_*`` between gets
and cas; this shows the state they keep in memcached round-trips exactly (counts,
epoch-scale floats) and that skipping the write of a refused hit changes nothing."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

import authstore

START = 1_800_000_000.123456


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _pair(memcached_url: str) -> tuple[Any, Any, FakeClock]:
    clock = FakeClock()
    reference = authstore.open_cache("memory://")
    reference._runner.data.clock = clock  # type: ignore[attr-defined]
    store = authstore.open_cache(memcached_url, namespace="r" + uuid.uuid4().hex[:12])
    store._logic.ops.clock = clock  # type: ignore[attr-defined]
    return reference, store, clock


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
@pytest.mark.parametrize("seed", range(3))
def test_rate_limits_match_the_reference(memcached_url: str, algorithm: str, seed: int) -> None:
    rng = random.Random(seed)
    reference, store, clock = _pair(memcached_url)
    limit, window = rng.choice([(3, 1.0), (10, 2.5), (7, 0.3), (100, 60.0)])
    with reference, store:
        for step in range(300):
            clock.now += rng.choice([0.0, 0.001, 0.05, 0.2, window / 3, window * 1.1])
            if rng.random() < 0.05:
                limit = rng.choice([limit, max(1, limit // 2), limit * 2])
            key = rng.choice(["a", "b"])
            cost = rng.randint(1, min(limit, 3))
            expected = reference.check_rate_limit(key, limit, window, cost, algorithm)
            got = store.check_rate_limit(key, limit, window, cost, algorithm)
            assert got == expected, (step, key, limit, window, cost)


def _act(store: Any, action: str, key: str, ttl: float | None, delta: int) -> Any:
    if action == "incr":
        return store.incr(key, delta, ttl=ttl)
    if action == "expire":
        return store.expire(key, ttl)
    if action == "ttl":
        return store.ttl(key)
    if action == "get":
        return store.get(key)
    if action == "revoke":
        return store.revoke_user_tokens(key, expires_in=ttl)
    if action == "blacklist":
        return store.add_to_blacklist(key, ttl or 1.0)
    return store.is_blacklisted(key), store.user_tokens_revoked_at(key)


def test_counters_and_revocations_match_the_reference(memcached_url: str) -> None:
    rng = random.Random(7)
    reference, store, clock = _pair(memcached_url)
    actions = ["incr", "expire", "ttl", "get", "revoke", "blacklist", "check"]
    with reference, store:
        for step in range(400):
            clock.now += rng.choice([0.0, 0.01, 0.3, 1.0])
            key, action = rng.choice(["x", "y"]), rng.choice(actions)
            ttl = rng.choice([None, 0.5, 2.0, 40 * 86400.0])
            delta = rng.randint(-5, 5)
            expected = _act(reference, action, key, ttl, delta)
            got = _act(store, action, key, ttl, delta)
            assert got == expected, (step, action, key, ttl)
