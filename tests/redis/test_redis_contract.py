"""The whole contract suite, sync (redis-py) and async (redis.asyncio), on every topology:
one server, Redis Cluster, Sentinel, TLS and a unix socket."""

from __future__ import annotations

import pytest

from authstore.contracts.testing import StoreContract


class TestRedis(StoreContract):
    @pytest.fixture
    def authstore_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        # Nothing listens on port 1: connections are refused at once.
        return "redis://127.0.0.1:1/0?timeout=1"
