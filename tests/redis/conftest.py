"""Fixtures for the Redis tests: one URL per topology, from ``tests/servers.py``.

Each topology is its own server (``scripts/services up`` starts them all): a plain
server, a 3-master Redis Cluster, a Sentinel-managed master with a replica, a
TLS-only server and a unix-socket server. Every contract test works in a namespace
of its own, so they share the servers safely.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

TOPOLOGIES = ("redis", "redis_cluster", "redis_sentinel", "redis_tls", "redis_unix")


@pytest.fixture(scope="module", params=TOPOLOGIES)
def redis_url(request: pytest.FixtureRequest, server_url: Callable[[str], str]) -> str:
    """The URL of each Redis topology in turn (every test using it runs on all five)."""
    return server_url(request.param)


@pytest.fixture(scope="module")
def single_url(server_url: Callable[[str], str]) -> str:
    """The plain single server, for tests about one server's behaviour."""
    return server_url("redis")
