"""Shared test configuration.

Real servers come from ``tests/servers.py``: ``server_url("postgres")`` is the URL of a
PostgreSQL that answers, from ``AUTHSTORE_TEST_POSTGRES_URL`` or a testcontainer;
otherwise the test skips, or fails under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1``
with a message naming the server. pytester runs the contract plugin in isolated sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from authstore.contracts.testing import unavailable
from tests.servers import SERVERS, ServerPool, Unavailable

pytest_plugins = ["pytester", "tests.backends"]


@pytest.fixture(scope="session")
def server_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def server_url(server_pool: ServerPool) -> Callable[[str], str]:
    """``server_url(name)`` for a name in tests.servers.SERVERS."""

    def resolve(name: str) -> str:
        if name not in SERVERS:
            raise KeyError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        try:
            return server_pool.url(name)
        except Unavailable as reason:
            if SERVERS[name].optional:
                pytest.skip(f"optional server: {reason}")
            unavailable(str(reason))

    return resolve
