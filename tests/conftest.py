"""Shared test configuration.

Real servers come from ``tests/servers.py``: ``server_url("postgres")`` is the URL of a
PostgreSQL that answers, from ``AUTHSTORE_TEST_POSTGRES_URL`` or a testcontainer;
otherwise the test skips, or fails under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1``
with a message naming the server. pytester runs the contract plugin in isolated sessions.
Every session gets a fresh MongoDB test server (tests/mongodb/private.py).
"""

from __future__ import annotations

import os
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
def server_url(server_pool: ServerPool) -> Iterator[Callable[[str], str]]:
    """``server_url(name)`` for a name in tests.servers.SERVERS. MongoDB is this
    session's own fresh secantusd when the configured one is the shared stand-in (see
    tests/mongodb/private.py, SessionServer)."""
    from tests.mongodb.private import SessionServer  # imports pymongo: only here

    mongodb = SessionServer()

    def resolve(name: str) -> str:
        if name not in SERVERS:
            raise KeyError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        if name == "mongodb":
            fresh = mongodb.url(os.environ.get(SERVERS[name].env))
            if fresh is not None:
                return fresh
        try:
            return server_pool.url(name)
        except Unavailable as reason:
            if SERVERS[name].optional:
                pytest.skip(f"optional server: {reason}")
            unavailable(str(reason))

    yield resolve
    mongodb.close()
