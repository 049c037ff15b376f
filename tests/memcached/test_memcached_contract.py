"""The cache contract, sync (pymemcache) and async (aiomcache), on one real memcached
and on two behind the hashing client. Sessions, TOTP and magic links are not stores
memcached has: ``test_memcached_backend`` checks they refuse to open."""

from __future__ import annotations

import pytest

from authstore.contracts.testing import CacheContract

UNREACHABLE = "memcached://127.0.0.1:1?timeout=1&connect_timeout=1"
"""Nothing listens on port 1: connections are refused at once."""


class TestMemcached(CacheContract):
    # The suite's default short_ttl (0.3 s) holds: reads compare the stored expiry, so
    # memcached's whole-second expiry never shows. No coarser setting is needed.

    @pytest.fixture
    def authstore_url(self, memcached_url: str) -> str:
        return memcached_url

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        return UNREACHABLE


class TestMemcachedTwoServers(CacheContract):
    @pytest.fixture
    def authstore_url(self, memcached_multi_url: str) -> str:
        return memcached_multi_url

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        return "memcached://127.0.0.1:1,127.0.0.1:2?timeout=1&connect_timeout=1"
