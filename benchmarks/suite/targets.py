"""The backends a run measures: where each server is, how the run isolates its data
(a throwaway namespace, table or collection prefix) and removes it afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import authstore
from benchmarks.suite.ops import Stores
from tests.servers.defaults import default_url, env_var

__all__ = ["NAMES", "Target", "analyze", "discover", "open_stores", "close_stores"]

NAMES = ("memory", "sqlite", "postgresql", "mariadb", "redis", "memcached", "mongodb")
NETWORK = ("postgresql", "mariadb", "redis", "memcached", "mongodb")

DEFAULTS = {
    target: (env_var(server), default_url(server))
    for target, server in (
        ("postgresql", "postgres"),
        ("mariadb", "mariadb"),
        ("redis", "redis"),
        ("memcached", "memcached"),
        ("mongodb", "mongodb"),
    )
}
"""Each network target's variable and the address ``scripts/services up`` gives it."""
SCHEMES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mariadb",
    "mariadb": "mariadb",
    "redis": "redis",
    "memcached": "memcached",
    "mongodb": "mongodb",
}


@dataclass
class Target:
    name: str
    server: str
    """The URL as given (no isolation options): what the raw drivers and peers use."""
    url: str
    """authstore's URL: the server plus this run's isolation options."""
    tag: str
    """This run's throwaway name: namespace, table and collection prefix."""
    stores: tuple[str, ...] = ("cache", "sessions", "totp", "magic")
    folder: str = ""
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def network(self) -> bool:
        return self.name in NETWORK

    @property
    def address(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.server)
        host = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
        name, _, port = host.rpartition(":")
        return name.strip("[]") or "127.0.0.1", int(port)

    def via(self, port: int) -> str:
        """authstore's URL through the proxy listening on ``port``."""
        parts = urllib.parse.urlsplit(self.url)
        user, at, _ = parts.netloc.rpartition("@")
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{port}"))
        if self.name == "mongodb":
            url += "&directConnection=true"
        return url

    def server_via(self, port: int) -> Target:
        """This target with its server (what raw drivers use) behind the proxy."""
        parts = urllib.parse.urlsplit(self.server)
        user, at, _ = parts.netloc.rpartition("@")
        server = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{port}"))
        if self.name == "mongodb":
            server += ("&" if "?" in server else "?") + "directConnection=true"
        return dataclasses.replace(self, server=server, cleanups=[])

    def cleanup(self) -> None:
        for step in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                step()


def _with(url: str, **options: str) -> str:
    query = urllib.parse.urlencode(options)
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


def discover(selected: list[str]) -> tuple[list[Target], list[str]]:
    """The chosen targets (names or URLs; none means all), and why others were skipped."""
    wanted: dict[str, str | None] = {}
    for item in selected:
        if "://" in item:
            scheme = item.split("://", 1)[0].split("+", 1)[0]
            if scheme not in SCHEMES:
                raise SystemExit(f"no benchmark for URL scheme {scheme!r}")
            wanted[SCHEMES[scheme]] = item
        elif item in SCHEMES:
            wanted[SCHEMES[item]] = None
        else:
            raise SystemExit(f"unknown section {item!r}; choose from {', '.join(NAMES)} or a URL")
    if not wanted:
        wanted = dict.fromkeys(NAMES)
    targets, skipped = [], []
    for name in NAMES:
        if name not in wanted:
            continue
        tag = f"bench{uuid.uuid4().hex[:8]}"
        if name == "memory":
            targets.append(Target(name, "memory://", _with("memory://", namespace=tag), tag))
            continue
        if name == "sqlite":
            given = wanted[name]
            folder = "" if given else tempfile.mkdtemp(prefix="authstore-bench-")
            server = given or f"sqlite:///{folder}/bench.db"
            target = Target(name, server, _with(server, namespace=tag), tag, folder=folder)
            if folder:
                target.cleanups.append(lambda f=folder: shutil.rmtree(f, ignore_errors=True))
            targets.append(target)
            continue
        variable, default = DEFAULTS[name]
        server = wanted[name] or os.environ.get(variable) or default
        target = Target(name, server, "", tag)
        if not _reachable(target.address):
            skipped.append(f"{name}: nothing answers at {target.address[0]}:{target.address[1]}")
            continue
        if name in ("postgresql", "mariadb"):
            target.url = _with(server, table_prefix=f"{tag}_", namespace=tag)
            target.cleanups.append(lambda t=target: _drop_tables(t))
        elif name == "mongodb":
            target.url = _with(server, collection_prefix=f"{tag}_", namespace=tag)
            target.cleanups.append(lambda t=target: _drop_collections(t))
        else:
            target.url = _with(server, namespace=tag)
            if name == "redis":
                target.cleanups.append(lambda t=target: _delete_keys(t))
            else:
                target.stores = ("cache",)
        targets.append(target)
    return targets, skipped


KINDS = {"cache": "cache", "sessions": "sessions", "totp": "totp", "magic": "magic_links"}
"""The benchmark's name of each store and authstore's."""


def open_stores(url: str, stores: tuple[str, ...], asynchronous: bool, **options: Any) -> Stores:
    """The stores as an application opens them: one group, one client or pool."""
    opener = authstore.open_async_stores if asynchronous else authstore.open_stores
    group = opener(url, kinds=[KINDS[kind] for kind in stores], **options)
    opened = {kind: getattr(group, KINDS[kind]) for kind in stores}
    return Stores(asynchronous=asynchronous, group=group, **opened)


def close_stores(stores: Stores) -> Any:
    """Close the group (its one pool); an awaitable for async stores."""
    return stores.group.aclose() if stores.asynchronous else stores.group.close()


def analyze(target: Target) -> None:
    """ANALYZE every table this run filled on the target, authstore's and the peers' alike
    (Django's, pyrate-limiter's): no contender is measured on statistics gathered while
    its tables were empty, or on none (autovacuum off, as on the test server)."""
    if target.name == "sqlite":
        import sqlite3

        path = Path(target.server.split("sqlite:///", 1)[1].split("?", 1)[0])
        for file in sorted(path.parent.glob(f"{path.stem}*{path.suffix}")):  # and the peers'
            database = sqlite3.connect(file, timeout=30)
            try:
                database.execute("ANALYZE")
                database.commit()
            finally:
                database.close()
    elif target.name == "postgresql":
        import psycopg

        with psycopg.connect(target.server, autocommit=True) as connection:
            names = connection.execute(
                "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
                "WHERE schemaname = %s OR (schemaname = current_schema() "
                "AND (starts_with(tablename, %s) OR tablename LIKE %s))",
                [target.tag, target.tag, f"%pyrate_{target.tag}%"],
            ).fetchall()
            if names:
                connection.execute(f"ANALYZE {', '.join(name for (name,) in names)}")
    elif target.name == "mariadb":
        import pymysql

        server = pymysql.connect(**mysql_arguments(target.server), autocommit=True)
        try:
            with server.cursor() as cursor:
                cursor.execute(
                    "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') "
                    "FROM information_schema.tables WHERE table_schema = %s "
                    "OR (table_schema = DATABASE() AND LEFT(table_name, %s) = %s)",
                    (target.tag, len(target.tag), target.tag),
                )
                listed: list[str] = [name for (name,) in cursor.fetchall()]
                if listed:
                    cursor.execute(f"ANALYZE TABLE {', '.join(listed)}")
                    cursor.fetchall()
        finally:
            server.close()


def _drop_tables(target: Target) -> None:
    if target.name == "postgresql":
        import psycopg

        with psycopg.connect(target.server, autocommit=True) as connection:
            names = connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND starts_with(tablename, %s)",
                [target.tag],
            ).fetchall()
            for (name,) in names:
                connection.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
            connection.execute(f'DROP SCHEMA IF EXISTS "{target.tag}" CASCADE')
        return
    import pymysql

    connection = pymysql.connect(**mysql_arguments(target.server), autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW TABLES LIKE %s", (f"{target.tag}%",))
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        connection.close()


def mysql_arguments(server: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(server)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": urllib.parse.unquote(parts.username or "root"),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "charset": "utf8mb4",
    }


def mongo_database(server: str) -> tuple[str, str]:
    """The client address and the database name of a MongoDB URL."""
    base = server.split("?", 1)[0]
    address, _, database = base.rpartition("/")
    return address, database or "authstore"


def _drop_collections(target: Target) -> None:
    import pymongo

    address, name = mongo_database(target.server)
    client: Any = pymongo.MongoClient(address)
    try:
        database = client[name]
        for collection in database.list_collection_names():
            if collection.startswith(target.tag):
                database.drop_collection(collection)
        client.drop_database(f"limits_{target.tag}")
    finally:
        client.close()


def _delete_keys(target: Target) -> None:
    import redis

    client = redis.Redis.from_url(target.server)
    try:
        for pattern in (f"{target.tag}*", f"{{{target.tag}*", f"*{target.tag}*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
    finally:
        client.close()
