"""Shared test configuration.

Real servers come from ``tests/servers.py``: ``server_url("postgres")`` is the URL of a
PostgreSQL that answers, from ``AUTHSTORE_TEST_POSTGRES_URL`` or a testcontainer;
otherwise the test skips, or fails under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1``
with a message naming the server. pytester runs the contract plugin in isolated sessions.
Every session gets a fresh MongoDB test server (tests/mongodb/private.py).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator

import pytest

from authstore.contracts.testing import unavailable
from tests.servers import SERVERS, ServerPool, Unavailable

pytest_plugins = ["pytester", "tests.backends"]

SERIAL = (
    "tests/test_faults.py",
    "tests/test_load.py",
    "tests/test_attack_shape.py",
    "tests/test_connections.py",
    "tests/test_redis_topology.py",
    "tests/test_refused_configuration.py",
    "tests/*/test_*_outages.py",
    "tests/*/test_*_faults.py",
    "tests/*/test_*_deadlocks.py",
    "tests/*/test_*_abandoned_transactions.py",
    "tests/redis/test_redis_backend.py",
    "tests/mysql/test_mysql_backend.py",
    "tests/memcached/test_memcached_backend.py",
    "tests/memcached/test_memcached_async_pool.py",
    "tests/examples/*",
    "tests/integrations/*",
    "tests/contract/test_plugin.py",
    "tests/unit/test_cli.py",
    "tests/unit/test_cli_ping.py",
    "tests/unit/test_watchdog.py",
    "tests/thirdparty/test_jsonfile_processes.py",
    "tests/thirdparty/test_planted_races.py",
    "tests/mongodb/*",
    "tests/postgres/test_postgres_concurrency.py::test_one_connection_serves_many_*",
    "tests/postgres/test_failover.py",
)
"""Tests that freeze, kill or restart servers, count connections, start servers or apps
on ports, bound how long a call may take, need a race to interleave (a planted bug must
be caught), or load the MongoDB test server (a single-threaded Python stand-in that a
busy neighbour slows past the default timeout): they run alone (marked ``serial``).
A pattern matches a test file or a test id.
``scripts/test`` runs everything else first on four pytest-xdist workers (the suite
mostly waits on servers and expiries), then these in one process, where a neighbour's
load cannot make a timing bound fail or a connection count move."""


LOADED_SHORT_TTL = 0.6
"""The contract suite's short ttl on a pytest-xdist worker (its default is 0.3 s): four
workers on two cores can stall a test for longer than 0.3 s between writing a key and
reading its ttl back, and a key read after its ttl proves nothing."""


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from authstore.contracts.testing.base import ContractBase

        ContractBase.short_ttl = max(ContractBase.short_ttl, LOADED_SHORT_TTL)
    config.addinivalue_line(
        "markers", "serial: runs alone, after the parallel part of scripts/test (see SERIAL)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        try:
            path = item.path.relative_to(root).as_posix()
        except ValueError:
            continue
        test_id = f"{path}::{item.name}"
        if any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(test_id, p) for p in SERIAL):
            item.add_marker(pytest.mark.serial)


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
