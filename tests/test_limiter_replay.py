"""Every backend's rate limiters decide each hit exactly as ``ratelimit.step_*`` does.

One harness (tests/limiter_replay.py) for every backend of tests.backends (memory,
SQLite, PostgreSQL, MariaDB, Redis single and cluster, MongoDB, memcached): a seeded
random sequence of hits goes to the backend's limiter operation, and each answer
(decision, counts, instants) must be what ``step_*`` computes from the previous state
at the instant the backend reports. ``AUTHSTORE_REPLAY_PROFILE=long`` replays more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import authstore
from authstore.adapters.common.logic import LIMITER_KINDS
from authstore.contracts.records import RateLimitAlgorithm
from tests.limiter_replay import (
    ALGORITHMS,
    WINDOWS,
    clock_of,
    random_hits,
    replay,
    replay_hits,
    replay_seed,
)


@pytest.fixture
def cache(backend: str) -> Iterator[Any]:
    store = authstore.open_cache(backend, namespace=f"replay{uuid.uuid4().hex[:10]}")
    yield store
    store.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_hit_is_what_step_computes(backend: str, cache: Any, algorithm: str) -> None:
    """A few hundred hits per backend and algorithm, split over the windows of
    ``WINDOWS`` (one limiter key each)."""
    ops, runner = cache._logic.ops, cache._runner
    kind = LIMITER_KINDS[RateLimitAlgorithm(algorithm)]
    clock = clock_of(backend)
    for window in WINDOWS:
        seed = replay_seed(backend.split(":", 1)[0], algorithm, repr(window))
        hits = random_hits(seed, replay_hits() // len(WINDOWS), window)
        key = f"{cache.namespace}:{kind}:replay-{window}"
        replay(runner.run, ops, key, algorithm, hits, clock, seed)
