"""``authstore check`` removes what its tests wrote: after a run, the rows, keys or
documents of its namespaces are counted straight from each server, not through authstore."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# tests that write to every store, and to a second namespace (namespaces_never_meet)
SUBSET = (
    "namespaces_never_meet or kv_set or blacklist or revoke or fixed_window or "
    "session_create or totp or magic_issue"
)
SQL_TABLES = ("cache", "rate_limits", "sessions", "totp", "totp_backup_codes", "magic_links")
MONGO_COLLECTIONS = ("cache", "sessions", "totp", "magic_links", "locks")


def check(url: str) -> str:
    """Run ``authstore check URL`` on SUBSET; the run id of its namespaces."""
    result = subprocess.run(
        [sys.executable, "-m", "authstore", "check", url, "-k", SUBSET],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^left behind\s+0 ", result.stdout, re.M), output
    for store in ("cache", "sessions", "totp", "magic_links"):
        assert re.search(rf"^{store}\s+ok ", result.stdout, re.M), output
    found = re.search(r"^namespaces\s+t([0-9a-f]{8})\*", result.stdout, re.M)
    assert found, output
    return found.group(1)


def test_memory_keeps_nothing() -> None:
    code = f"""
import sys
from authstore.cli import main
code = main(["check", "memory://cleanup", "-k", {SUBSET!r}])
from authstore.adapters.memory import backend
data, _ = backend._named["cleanup"]
tables = (data.values, data.guarded, data.sessions, data.session_ids, data.user_sessions,
          data.totp, data.links, data.user_links)
print("RAW", sum(len(table) for table in tables))
sys.exit(code)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left behind  0 " in result.stdout
    assert "RAW 0" in result.stdout, result.stdout


def test_sqlite_keeps_no_row(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "check.db"
    check(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        rows = [
            connection.execute(f"SELECT count(*) FROM authstore_{t}").fetchone()[0]
            for t in SQL_TABLES
        ]
    assert rows == [0] * len(SQL_TABLES)


@pytest.fixture
def prefix() -> str:
    return f"chk{uuid.uuid4().hex[:8]}_"


def _sql_rows(cursor: Any, prefix: str) -> list[int]:
    counts = []
    for table in SQL_TABLES:
        cursor.execute(f"SELECT count(*) FROM {prefix}{table}")
        counts.append(cursor.fetchone()[0])
    return counts


def _sql_drop(cursor: Any, prefix: str) -> None:
    for table in (*SQL_TABLES, "schema_version"):
        cursor.execute(f"DROP TABLE IF EXISTS {prefix}{table}")


def test_postgres_keeps_no_row(server_url: Callable[[str], str], prefix: str) -> None:
    import psycopg

    url = server_url("postgres")
    try:
        check(f"{url}?table_prefix={prefix}")
        with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
            assert _sql_rows(cursor, prefix) == [0] * len(SQL_TABLES)
    finally:
        with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
            _sql_drop(cursor, prefix)


def test_mariadb_keeps_no_row(server_url: Callable[[str], str], prefix: str) -> None:
    import pymysql

    url = server_url("mariadb")
    parts = urlsplit(url)

    def connect() -> Any:
        return pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=parts.path.strip("/"),
            autocommit=True,
        )

    try:
        check(f"{url}?table_prefix={prefix}")
        with connect() as connection, connection.cursor() as cursor:
            assert _sql_rows(cursor, prefix) == [0] * len(SQL_TABLES)
    finally:
        with connect() as connection, connection.cursor() as cursor:
            _sql_drop(cursor, prefix)


def _redis_keys(client: Any, run: str, primaries: Any = None) -> list[Any]:
    target = {} if primaries is None else {"target_nodes": primaries}
    keys: list[Any] = []
    for initial in ("t", "o"):
        for pattern in (f"{initial}{run}*", f"{{{initial}{run}*"):
            keys += client.scan_iter(match=pattern, count=1000, **target)
    return keys


@pytest.mark.parametrize("name", ["redis", "redis_cluster"])
def test_redis_keeps_no_key(server_url: Callable[[str], str], name: str) -> None:
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    url = server_url(name)
    run = check(url)
    if name == "redis_cluster":
        nodes = [
            ClusterNode(h, int(p)) for h, p in (a.split(":") for a in url.split("//")[1].split(","))
        ]
        with RedisCluster(startup_nodes=nodes) as cluster:
            assert _redis_keys(cluster, run, RedisCluster.PRIMARIES) == []
    else:
        with redis.Redis.from_url(url) as client:
            assert _redis_keys(client, run) == []


@pytest.fixture
def mongo(server_url: Callable[[str], str], prefix: str) -> Iterator[tuple[str, Any]]:
    import pymongo

    url = server_url("mongodb")
    client: Any = pymongo.MongoClient(url.split("?")[0], serverSelectionTimeoutMS=5000)
    try:
        yield url, client[urlsplit(url).path.strip("/") or "authstore"]
    finally:
        for name in MONGO_COLLECTIONS:
            client[urlsplit(url).path.strip("/") or "authstore"].drop_collection(f"{prefix}{name}")
        client.close()


def test_mongodb_keeps_no_document(mongo: tuple[str, Any], prefix: str) -> None:
    url, database = mongo
    check(f"{url}?collection_prefix={prefix}")
    counts = [database[f"{prefix}{name}"].count_documents({}) for name in MONGO_COLLECTIONS]
    assert counts == [0] * len(MONGO_COLLECTIONS)


def test_memcached_says_it_cannot_count(server_url: Callable[[str], str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "authstore", "check", server_url("memcached"), "-k", "kv_set"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^left behind\s+unknown: memcached:// cannot list", result.stdout, re.M)


def test_a_third_party_backend_clears_through_the_documented_methods() -> None:
    code = f"""
import sys
from authstore.cli import main
code = main(["check", "dictcache://cleanup", "-k", {SUBSET!r}])
from authstore_dictcache import backend
print("RAW", len(backend._named["cleanup"].entries))
sys.exit(code)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^left behind\s+0 ", result.stdout, re.M), result.stdout
    assert "RAW 0" in result.stdout, result.stdout
