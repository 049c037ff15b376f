"""Fixtures for the Redis tests: one URL per topology, from ``tests/servers.py``.

Each topology is its own server (``scripts/services up`` starts them all): a plain
server, a 3-master Redis Cluster, a Sentinel-managed master with a replica, a
TLS-only server and a unix-socket server. Every contract test works in a namespace
of its own, so they share the servers safely.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

ALL_TOPOLOGIES = ("redis", "redis_cluster", "redis_sentinel", "redis_tls", "redis_unix")
TOPOLOGIES = tuple(
    name
    for name in os.environ.get("AUTHSTORE_TEST_REDIS_TOPOLOGIES", ",".join(ALL_TOPOLOGIES)).split(
        ","
    )
    if name
)
"""AUTHSTORE_TEST_REDIS_TOPOLOGIES=redis,redis_cluster narrows a run (scripts/lowest)."""
unknown = set(TOPOLOGIES) - set(ALL_TOPOLOGIES)
if unknown:
    raise ValueError(f"AUTHSTORE_TEST_REDIS_TOPOLOGIES: unknown {sorted(unknown)}")


@pytest.fixture(scope="module", params=TOPOLOGIES)
def redis_url(request: pytest.FixtureRequest, server_url: Callable[[str], str]) -> str:
    """The URL of each Redis topology in turn (every test using it runs on all five)."""
    return server_url(request.param)


@pytest.fixture(scope="module")
def single_url(server_url: Callable[[str], str]) -> str:
    """The plain single server, for tests about one server's behaviour."""
    return server_url("redis")
