"""Every backend as a URL private to one test module: for suites that run the same
tests over all backends (tests/test_properties.py, tests/test_load.py), through the
``backend`` fixture.

A backend joins by its name: an embedded one (no server) gets its URL from
``EMBEDDED``; a server backend is a name of ``tests.servers.SERVERS``, resolved by the
``server_url`` fixture (its environment variable, else a testcontainer, else skip, or
fail when strict). SQL servers get a table prefix of their own, dropped afterwards;
any backend can add a clean-up to ``CLEANUPS``. Every store is also opened in a fresh
namespace by the suites, so runs never see each other's data.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "BACKENDS",
    "CLEANUPS",
    "EMBEDDED",
    "backend",
    "backend_fixture",
    "backend_url",
    "new_prefix",
    "prefix_fixtures",
    "private_prefix",
    "with_options",
]

EMBEDDED: dict[str, Callable[[Path], str]] = {
    "memory": lambda _folder: "memory://",
    "sqlite": lambda folder: f"sqlite:///{folder / 'authstore.db'}",
}

BACKENDS = [
    "memory",
    "sqlite",
    "postgres",
    "mariadb",
    "redis",
    "redis_cluster",
    "mongodb",
    "memcached",
]
"""The backends every cross-backend suite runs on. Add a server backend (``redis``,
``mongodb``, ``memcached``) by its tests.servers name once its scheme is registered."""


def _drop_postgres(url: str, prefix: str) -> None:
    from tests.postgres.conftest import drop_tables

    drop_tables(url, prefix)


def _drop_mysql(url: str, prefix: str) -> None:
    from tests.mysql.conftest import drop_tables

    drop_tables(url, prefix)


CLEANUPS: dict[str, Callable[[str, str], None]] = {
    "postgres": _drop_postgres,
    "mariadb": _drop_mysql,
    "mysql": _drop_mysql,
}
"""Backends whose URL takes a ``table_prefix``: how to drop that prefix's tables."""


def with_options(url: str, **options: object) -> str:
    """``url`` with ``options`` added to its query."""
    if not options:
        return url
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def new_prefix() -> str:
    """A table prefix no other run uses."""
    return f"t{uuid.uuid4().hex[:12]}_"


@contextlib.contextmanager
def private_prefix(server: str, drop: Callable[[str, str], None]) -> Iterator[str]:
    """A new table prefix on ``server``, whose tables ``drop(server, prefix)`` drops
    on exit."""
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        drop(server, prefix)


def prefix_fixtures(server: str, drop: Callable[[str, str], None]) -> tuple[Any, Any]:
    """A SQL server's ``table_prefix`` fixture (one prefix per module) and its
    ``fresh_prefix`` fixture (one per test, for a database nothing has migrated yet),
    on the server URL of the fixture named ``server``; ``drop`` drops the tables."""

    @pytest.fixture(scope="module", name="table_prefix")
    def module_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
        with private_prefix(request.getfixturevalue(server), drop) as prefix:
            yield prefix

    @pytest.fixture(name="fresh_prefix")
    def test_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
        with private_prefix(request.getfixturevalue(server), drop) as prefix:
            yield prefix

    return module_prefix, test_prefix


@contextlib.contextmanager
def backend_url(
    name: str, server_url: Callable[[str], str], folder: Path, **options: Any
) -> Iterator[str]:
    """The URL of backend ``name`` with ``options`` (and a private table prefix where
    the backend has tables), cleaned up on exit."""
    base = EMBEDDED[name](folder) if name in EMBEDDED else server_url(name)
    if name not in CLEANUPS:
        yield with_options(base, **options)
        return
    with private_prefix(base, CLEANUPS[name]) as prefix:
        yield with_options(base, **{"table_prefix": prefix, **options})


def backend_fixture(name: str, backends: list[str]) -> Any:
    """A module-scoped fixture ``name``: a URL of each of ``backends`` in turn, private
    to the test module."""

    @pytest.fixture(scope="module", params=backends, name=name)
    def fixture(
        request: pytest.FixtureRequest,
        server_url: Callable[[str], str],
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[str]:
        backend: str = request.param
        with backend_url(backend, server_url, tmp_path_factory.mktemp(backend)) as url:
            yield url

    return fixture


backend = backend_fixture("backend", BACKENDS)
"""A URL of each backend in turn (a plugin of tests/conftest.py, so every
cross-backend suite shares it)."""
