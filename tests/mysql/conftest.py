"""Fixtures for the MySQL and MariaDB tests: the servers' URLs and throwaway table prefixes.

Servers come from ``tests/servers.py`` (an ``AUTHSTORE_TEST_<NAME>_URL``, else a
testcontainer): MariaDB always, falling back to the local server's ``authstore_test``
database (root without a password) when its variable is unset; MySQL 8 as well where
``AUTHSTORE_TEST_MYSQL_URL`` is set or a Docker engine answers. Every test that needs a
server runs once per server. Every module works under its own table prefix and drops
its tables at the end, so parallel runs on one server never collide.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest

from tests.backends import prefix_fixtures, with_options
from tests.servers import SERVERS, ping_docker

DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/authstore_test"
UNREACHABLE_URL = "mysql://root@127.0.0.1:1/authstore_test?connect_timeout=1"
"""Nothing listens on port 1: connecting is refused at once."""


def servers() -> list[str]:
    """The servers to test: MySQL 8 only where it can be had (it is optional)."""
    names = ["mariadb"]
    if os.environ.get("AUTHSTORE_TEST_MYSQL_URL") or _docker_answers():
        names.append("mysql")
    return names


def _docker_answers() -> bool:
    try:
        ping_docker()
    except Exception:
        return False
    return True


def admin_connection(url: str, **options: Any) -> pymysql.Connection[Any]:
    """A plain PyMySQL connection to the server behind ``url`` (its options dropped)."""
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        autocommit=True,
        charset="utf8mb4",
        **options,
    )


def table_names(cursor: Any, prefix: str) -> list[str]:
    """The tables of the connection's database whose names start with ``prefix``."""
    cursor.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND LEFT(table_name, %s) = %s",
        (len(prefix), prefix),
    )
    return [name for (name,) in cursor.fetchall()]


def drop_tables(url: str, prefix: str) -> None:
    connection = admin_connection(url)
    try:
        with connection.cursor() as cursor:
            for name in table_names(cursor, prefix):
                cursor.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        connection.close()


@pytest.fixture(scope="session", params=servers())
def mysql_server(request: pytest.FixtureRequest, server_url: Callable[[str], str]) -> str:
    """A server URL, once per server (MariaDB, and MySQL 8 where it can be had)."""
    name: str = request.param
    if name == "mariadb" and not os.environ.get(SERVERS[name].env):
        with contextlib.suppress(pymysql.MySQLError):
            admin_connection(DEFAULT_MARIADB_URL, connect_timeout=3).close()
            return DEFAULT_MARIADB_URL
    return server_url(name)


@pytest.fixture(scope="module")
def mysql_url(mysql_server: str, table_prefix: str) -> str:
    """The server URL with this module's table prefix."""
    return with_options(mysql_server, table_prefix=table_prefix)


table_prefix, fresh_prefix = prefix_fixtures("mysql_server", drop_tables)


@pytest.fixture
def admin(mysql_server: str) -> Iterator[pymysql.Connection[Any]]:
    """A plain autocommit connection for looking behind the store's back."""
    connection = admin_connection(mysql_server)
    yield connection
    connection.close()
