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


@contextlib.contextmanager
def backend_url(
    name: str, server_url: Callable[[str], str], folder: Path, **options: Any
) -> Iterator[str]:
    """The URL of backend ``name`` with ``options`` (and a private table prefix where
    the backend has tables), cleaned up on exit."""
    base = EMBEDDED[name](folder) if name in EMBEDDED else server_url(name)
    prefix = None
    if name in CLEANUPS:
        prefix = f"p{uuid.uuid4().hex[:10]}_"
        options = {"table_prefix": prefix, **options}
    url = with_options(base, **options)
    try:
        yield url
    finally:
        if prefix is not None:
            CLEANUPS[name](base, prefix)


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
