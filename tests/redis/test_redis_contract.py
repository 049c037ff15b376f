"""The whole contract suite, sync (redis-py) and async (redis.asyncio), on every topology:
one server, Redis Cluster, Sentinel, TLS and a unix socket."""

from __future__ import annotations

import pytest

from authstore.contracts.testing import StoreContract
from authstore.registry import StoreURL, unreachable_url


class TestRedis(StoreContract):
    @pytest.fixture
    def authstore_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def authstore_unreachable_url(self, redis_url: str) -> StoreURL:
        # The backend's own twin (what `authstore check` uses): the same topology and
        # options on closed loopback ports, so a cluster or Sentinel client that cannot
        # connect must fail closed too; a unix socket in a missing directory.
        twin = unreachable_url(redis_url)
        assert twin is not None
        return twin
