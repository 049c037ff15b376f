"""Fixtures for the PostgreSQL tests: the server's URL and throwaway table prefixes.

The URL comes from ``AUTHSTORE_TEST_POSTGRES_URL`` (default: the local trust-auth
server's ``authstore_test`` database). Every module works under its own table prefix
and drops its tables at the end, so parallel runs on one server never collide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from authstore.contracts.testing import unavailable
from tests.backends import prefix_fixtures, with_options

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/authstore_test"


def server_url() -> str:
    return os.environ.get("AUTHSTORE_TEST_POSTGRES_URL") or DEFAULT_URL


def drop_tables(url: str, prefix: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        names = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND starts_with(tablename, %s)",
            [prefix.lower()],
        ).fetchall()
        for (name,) in names:
            connection.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = server_url()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        unavailable(f"PostgreSQL at {url} does not answer ({type(error).__name__})")
    return url


@pytest.fixture(scope="module")
def pg_url(postgres_server: str, table_prefix: str) -> str:
    """The server URL with this module's table prefix."""
    return with_options(postgres_server, table_prefix=table_prefix)


table_prefix, fresh_prefix = prefix_fixtures("postgres_server", drop_tables)


@pytest.fixture
def admin(postgres_server: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection for looking behind the store's back."""
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        yield connection
