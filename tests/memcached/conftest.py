"""Fixtures for the memcached tests: one real memcached, and two behind the hashing.

The URLs come from ``tests/servers.py`` (``AUTHSTORE_TEST_MEMCACHED_URL`` and
``AUTHSTORE_TEST_MEMCACHED_MULTI_URL``, else testcontainers); every test works in a
namespace of its own, so runs on a shared server never see each other's keys.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("pymemcache")  # the memcached extra; strict CI installs it
pytest.importorskip("aiomcache")


@pytest.fixture(scope="session")
def memcached_url(server_url: Callable[[str], str]) -> str:
    return server_url("memcached")


@pytest.fixture(scope="session")
def memcached_multi_url(server_url: Callable[[str], str]) -> str:
    return server_url("memcached_multi")


@pytest.fixture(scope="session")
def memcached_servers(memcached_multi_url: str) -> list[tuple[str, int]]:
    """The (host, port) of each server of the two-server URL."""
    hosts = memcached_multi_url.partition("://")[2].split("?")[0].split(",")
    return [(host.rpartition(":")[0], int(host.rpartition(":")[2])) for host in hosts]
