"""Where the real servers for backend tests come from.

For each server, in order:
1. the environment variable ``AUTHSTORE_TEST_<NAME>_URL`` (``scripts/services env``
   prints them for the servers it started), checked with a protocol-level ping;
2. a throwaway container through testcontainers, where a Docker engine answers;
3. otherwise the server is unavailable: its tests skip with the reason, and fail
   under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1`` (what CI and scripts/test use).

No mock ever stands in for a server.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SERVERS", "Server", "ServerPool", "Unavailable"]

PROBE_TIMEOUT = 3.0
CONTAINER_READY_TIMEOUT = 60.0


class Unavailable(Exception):
    """The server cannot be had here; the message says why and how to get it."""


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _probe_postgres(url: str) -> None:
    psycopg = importlib.import_module("psycopg")
    with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT), autocommit=True) as connection:
        connection.execute("SELECT 1")


def _probe_mysql(url: str) -> None:
    pymysql = importlib.import_module("pymysql")
    parts = urlsplit(url)
    connection = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        connect_timeout=PROBE_TIMEOUT,
    )
    try:
        connection.ping(reconnect=False)
    finally:
        connection.close()


def _probe_redis(url: str) -> None:
    redis = importlib.import_module("redis")
    client = redis.Redis.from_url(
        url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def _probe_memcached(url: str) -> None:
    base = importlib.import_module("pymemcache.client.base")
    host, port = _host_port(url.split(",")[0], 11211)
    client = base.Client((host, port), connect_timeout=PROBE_TIMEOUT, timeout=PROBE_TIMEOUT)
    try:
        client.version()
    finally:
        client.close()


def _probe_memcached_all(url: str) -> None:
    """Every server of ``memcached://h1:p1,h2:p2`` answers."""
    hosts = url.partition("://")[2].split("?")[0].split(",")
    for host in hosts:
        _probe_memcached(f"memcached://{host}")


def _probe_mongodb(url: str) -> None:
    pymongo = importlib.import_module("pymongo")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=int(PROBE_TIMEOUT * 1000))
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _container(module: str, name: str) -> Any:
    """testcontainers moved its modules under ``community``; accept both layouts."""
    for prefix in ("testcontainers.community.", "testcontainers."):
        try:
            return getattr(importlib.import_module(prefix + module), name)
        except (ImportError, AttributeError):
            continue
    raise Unavailable(f"testcontainers has no {module}.{name}")


def _start_postgres(image: str) -> tuple[Any, str]:
    container = _container("postgres", "PostgresContainer")(image, driver=None).start()
    return container, container.get_connection_url()


def _start_mysql(image: str) -> tuple[Any, str]:
    container = _container("mysql", "MySqlContainer")(image).start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(3306)
    return container, (
        f"mysql://{container.username}:{container.password}@{host}:{port}/{container.dbname}"
    )


def _start_generic(port: int, scheme: str, suffix: str = "") -> Callable[[str], tuple[Any, str]]:
    def start(image: str) -> tuple[Any, str]:
        container = _container("core.container", "DockerContainer")(image).with_exposed_ports(port)
        container.start()
        host, mapped = container.get_container_host_ip(), container.get_exposed_port(port)
        return container, f"{scheme}://{host}:{mapped}{suffix}"

    return start


class _Containers:
    """Several containers that stop together."""

    def __init__(self, containers: list[Any]) -> None:
        self.containers = containers

    def stop(self) -> None:
        for container in self.containers:
            container.stop()


def _start_memcached_pair(image: str) -> tuple[Any, str]:
    started = [_start_generic(11211, "memcached")(image) for _ in range(2)]
    hosts = ",".join(url.partition("://")[2] for _, url in started)
    return _Containers([container for container, _ in started]), f"memcached://{hosts}"


@dataclass(frozen=True)
class Server:
    name: str
    image: str
    probe: Callable[[str], None]
    start: Callable[[str], tuple[Any, str]]
    optional: bool = False
    """Tested where it can be had, never required: MySQL 8 has no Debian package, so it
    runs where a Docker engine (or AUTHSTORE_TEST_MYSQL_URL) provides it; MariaDB
    stands for the MySQL family everywhere else."""

    @property
    def env(self) -> str:
        return f"AUTHSTORE_TEST_{self.name.upper()}_URL"


SERVERS = {
    server.name: server
    for server in (
        Server("postgres", "postgres:16-alpine", _probe_postgres, _start_postgres),
        Server("mariadb", "mariadb:11", _probe_mysql, _start_mysql),
        Server("mysql", "mysql:8.4", _probe_mysql, _start_mysql, optional=True),
        Server("redis", "redis:7-alpine", _probe_redis, _start_generic(6379, "redis", "/0")),
        Server(
            "memcached",
            "memcached:1.6-alpine",
            _probe_memcached,
            _start_generic(11211, "memcached"),
        ),
        Server(
            "memcached_multi",
            "memcached:1.6-alpine",
            _probe_memcached_all,
            _start_memcached_pair,
        ),
        Server(
            "mongodb",
            "mongo:7",
            _probe_mongodb,
            _start_generic(27017, "mongodb", "/authstore_test"),
        ),
    )
}


class ServerPool:
    """Resolves each server once per test session and stops the containers it started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, str | Unavailable] = {}
        self._containers: list[Any] = []

    def url(self, name: str) -> str:
        with self._lock:
            if name not in self._urls:
                try:
                    self._urls[name] = self._resolve(SERVERS[name])
                except Unavailable as reason:
                    self._urls[name] = reason
            found = self._urls[name]
        if isinstance(found, Unavailable):
            raise found
        return found

    def _resolve(self, server: Server) -> str:
        configured = os.environ.get(server.env)
        if configured:
            try:
                server.probe(configured)
            except Exception as error:
                raise Unavailable(
                    f"{server.name}: {server.env} is set but the server does not answer "
                    f"({type(error).__name__}: {_first_line(error)}); start it with "
                    f"`scripts/services up {server.name}`"
                ) from None
            return configured
        try:
            docker = importlib.import_module("docker")
            docker.from_env().ping()
        except Exception as error:
            raise Unavailable(
                f"{server.name}: {server.env} is not set and no Docker engine answers "
                f'({type(error).__name__}); run `eval "$(scripts/services up)"` or start Docker'
            ) from None
        try:
            container, url = server.start(server.image)
        except Exception as error:
            raise Unavailable(
                f"{server.name}: could not start {server.image} with testcontainers "
                f"({type(error).__name__}: {_first_line(error)})"
            ) from None
        self._containers.append(container)
        deadline = time.monotonic() + CONTAINER_READY_TIMEOUT
        while True:
            try:
                server.probe(url)
                return url
            except Exception as error:
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{server.name}: the {server.image} container did not answer within "
                        f"{CONTAINER_READY_TIMEOUT:.0f} s ({type(error).__name__})"
                    ) from None
                time.sleep(0.5)

    def close(self) -> None:
        for container in self._containers:
            try:
                container.stop()
            except Exception as error:  # a container that will not stop must not hide results
                print(f"servers: could not stop a container: {error}")
        self._containers.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
