"""The sqlite:// backend: URLs, options, migrations, imports, and SQL equal to step_*."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import authstore
from authstore.adapters.common.stores import Cache, MagicLinks, Sessions
from authstore.adapters.sql import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, Tables
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.adapters.sqlite.sync import SyncSQLiteRunner
from authstore.contracts.errors import ConfigurationError
from authstore.contracts.records import Value
from tests.fresh_imports import loaded_after_import
from tests.limiter_replay import expected_hit, hit


def test_importing_the_backend_imports_no_async_driver() -> None:
    assert loaded_after_import("authstore.adapters.sqlite", ["aiosqlite", "sqlite3"]) == []


def test_migrate_is_idempotent(db_url: str, db_path: Path) -> None:
    assert authstore.migrate(db_url) == ["sqlite: schema at version 3 (applied 3)"]
    assert authstore.migrate(db_url) == ["sqlite: schema at version 3 (applied 0)"]
    with sqlite3.connect(db_path) as check:
        versions = check.execute("SELECT version FROM authstore_schema_version").fetchall()
        tables = {
            name for (name,) in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        journal = check.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == [(1,), (2,), (3,)]
    assert {
        "authstore_cache",
        "authstore_rate_limits",
        "authstore_sessions",
        "authstore_totp",
        "authstore_totp_backup_codes",
        "authstore_magic_links",
    } <= tables
    assert journal == "wal"


def test_table_prefixes_keep_apps_apart(db_url: str) -> None:
    with (
        authstore.open_cache(db_url, table_prefix="one_") as one,
        authstore.open_cache(db_url, table_prefix="two_") as two,
    ):
        one.set("k", "one")
        assert two.get("k") is None
    assert authstore.migrate(f"{db_url}?table_prefix=one_") == [
        "sqlite: schema at version 3 (applied 0)"
    ]


def test_namespaces_keep_tenants_apart(db_url: str) -> None:
    with (
        authstore.open_sessions(db_url, namespace="a") as a,
        authstore.open_sessions(db_url, namespace="b") as b,
    ):
        new = a.create("alice", ttl=60)
        assert b.get(new.token) is None and b.count("alice") == 0
        assert b.revoke_all("alice") == 0 and a.count("alice") == 1


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("sqlite:///x.db", {"pool_size": 3}, "unknown option"),
        ("sqlite:///x.db?colour=blue", {}, "unknown option"),
        ("sqlite:///x.db", {"table_prefix": "bad-prefix"}, "table_prefix"),
        ("sqlite:///x.db", {"table_prefix": "x" * 33}, "table_prefix"),
        ("sqlite:///x.db", {"namespace": "a:b"}, "namespace"),
        ("sqlite:///x.db", {"timeout": "soon"}, "timeout"),
        ("sqlite:///x.db", {"timeout": 0}, "timeout"),
        ("sqlite://", {}, "needs a database"),
        ("sqlite:///", {}, "needs a database"),
        ("sqlite://host/x.db", {}, "not a server"),
        ("sqlite://user:secret@/x.db", {}, "not a server"),
    ],
)
def test_bad_configuration_is_refused_before_any_io(
    url: str, options: dict[str, Any], message: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=message) as raised:
        authstore.open_cache(url, **options)
    assert "secret" not in str(raised.value)
    assert not (tmp_path / "x.db").exists()


def test_url_forms(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with authstore.open_cache("sqlite:///data/relative.db") as cache:
        cache.set("k", 1)
    assert (tmp_path / "data" / "relative.db").exists()
    absolute = tmp_path / "absolute.db"
    with authstore.open_cache(f"sqlite:///{absolute}") as cache:  # sqlite:////tmp/...
        cache.set("k", 1)
    assert absolute.exists()
    with (
        authstore.open_cache("sqlite:///:memory:") as first,
        authstore.open_cache("sqlite:///:memory:") as second,
    ):
        first.set("k", 1)
        assert first.get("k") == 1 and second.get("k") is None  # private per store
    assert not (tmp_path / ":memory:").exists()


def test_an_existing_connection_is_used_and_left_open(db_path: Path) -> None:
    connection = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    with authstore.open_cache("sqlite://", connection=connection) as cache:
        cache.set("k", "v")
    assert connection.execute("SELECT COUNT(*) FROM authstore_cache").fetchone() == (1,)
    connection.close()


def test_an_existing_connection_must_suit(db_path: Path) -> None:
    legacy = sqlite3.connect(db_path)  # implicit transactions would swallow our commits
    with pytest.raises(ConfigurationError, match="isolation_level=None"):
        authstore.open_cache("sqlite://", connection=legacy)
    with pytest.raises(ConfigurationError, match="not both"):
        authstore.open_cache(f"sqlite:///{db_path}", connection=legacy)
    with pytest.raises(ConfigurationError, match=r"aiosqlite\.Connection"):
        authstore.open_async_cache("sqlite://", connection=legacy)
    with pytest.raises(ConfigurationError, match=r"sqlite3\.Connection"):
        authstore.open_cache("sqlite://", connection="not a connection")
    legacy.close()


def test_an_existing_async_connection(db_path: Path) -> None:
    async def scenario() -> Any:
        connection = await aiosqlite.connect(db_path, isolation_level=None)
        async with authstore.open_async_cache("sqlite://", connection=connection) as cache:
            await cache.set("k", [1, 2])
            value = await cache.get("k")
        async with connection.execute("SELECT 1") as cursor:  # still open
            assert await cursor.fetchone() == (1,)
        await connection.close()
        return value

    assert asyncio.run(scenario()) == [1, 2]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[True, False], ids=["step-in-python", "standard-sql"])
def clocked(
    request: pytest.FixtureRequest, db_path: Path, clock: FakeClock
) -> tuple[SyncSQLiteRunner, SqlCacheOps]:
    """SQLite decides rate limits with step_* in Python (Dialect.local); with ``local``
    off it runs the standard-SQL UPSERTs PostgreSQL runs, so their formulas are checked
    against step_* here too, on a clock the test controls."""
    runner = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    runner.dialect.clock = clock
    runner.dialect.local = request.param
    return runner, SqlCacheOps(runner.dialect, Tables())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_sql_computes_exactly_what_step_computes(
    clocked: tuple[SyncSQLiteRunner, SqlCacheOps], clock: FakeClock, algorithm: str, seed: int
) -> None:
    runner, ops = clocked
    rng = random.Random(seed)
    limit = rng.choice([1, 3, 10, 1000])
    window = rng.choice([0.1, 1.0, 7.3, 60.0])
    state: Any = None
    expected: tuple[Any, ...]
    for _ in range(300):
        if rng.random() < 0.1:  # a changed limit: GCRA's "lowered limit" arm, refused hits
            limit = rng.choice([1, 3, 10, 1000])  # that move the row without consuming
        clock.now += rng.choice([0.0, rng.uniform(0, window / limit), rng.uniform(0, window)])
        cost = rng.randint(1, min(limit, 3))
        now = clock.now
        state, expected = expected_hit(algorithm, state, now, limit, window, cost)
        got = runner.run(hit(ops, algorithm, f"ns:{algorithm[0]}:k", limit, window, cost))
        assert got == expected
    runner.close()


def test_expired_rows_are_invisible_before_any_purge(db_path: Path, clock: FakeClock) -> None:
    runner = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    runner.dialect.clock = clock
    cache = Cache(SqlCacheOps(runner.dialect, Tables()), runner)
    sessions = Sessions(SqlSessionOps(runner.dialect, Tables(), "authstore"), runner)
    cache.set("k", "old", ttl=10)
    cache.set("n", 41, ttl=10)
    cache.add_to_blacklist("jti", 10)
    new = sessions.create("alice", ttl=10)
    clock.now += 10  # expires_at == now counts as expired
    assert cache.get("k") is None and not cache.exists("k") and cache.ttl("k") is None
    assert cache.get_many(["k", "n"]) == {} and not cache.expire("k", 5)
    assert not cache.is_blacklisted("jti")
    assert cache.incr("n", 1, ttl=5) == 1 and cache.ttl("n") == 5.0  # a new key, new expiry
    assert cache.add("k", "new") and cache.get("k") == "new"
    assert sessions.get(new.token) is None and sessions.touch(new.token) is None
    assert sessions.list("alice") == [] and sessions.count("alice") == 0
    assert not sessions.revoke(new.token)
    assert sessions.purge_expired() == 1
    runner.close()


def test_incr_tells_missing_from_not_an_integer(db_url: str) -> None:
    with authstore.open_cache(db_url) as cache:
        assert cache.incr("fresh", 5, ttl=60) == 5
        cache.set("n", 10, ttl=100)
        assert cache.incr("n", -3, ttl=1) == 7
        assert (cache.ttl("n") or 0) > 50  # an existing key keeps its expiry
        values: list[Value] = ["abc", "12", 1.5, True, [1], b"7", 2**63, 2**63 - 1]
        for value in values:
            cache.set("bad", value)
            with pytest.raises(ValueError, match="not an integer"):
                cache.incr("bad")
            assert cache.get("bad") == value  # untouched
        cache.set("big", 2**62)
        assert cache.incr("big", 2**62 - 1) == 2**63 - 1  # the whole signed 64-bit range


def test_the_branch_for_databases_without_returning(db_path: Path) -> None:
    """MySQL has no RETURNING: the write and a SELECT share one short transaction.
    SQLite can run that branch too, so it is proven before MySQL arrives."""
    runner = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    runner.dialect.returning = False
    tables = Tables()
    cache = Cache(SqlCacheOps(runner.dialect, tables), runner)
    sessions = Sessions(SqlSessionOps(runner.dialect, tables, "authstore"), runner)
    links = MagicLinks(SqlMagicLinkOps(runner.dialect, tables, "authstore"), runner)
    cache.exists("warm-up")
    assert runner.connection is not None
    sent: list[str] = []
    runner.connection.set_trace_callback(sent.append)
    assert cache.incr("n", 2) == 2
    assert [s.split()[0] for s in sent] == ["BEGIN", "INSERT", "SELECT", "COMMIT"]
    assert cache.incr("n", 3) == 5
    cache.set("word", "abc")
    with pytest.raises(ValueError, match="not an integer"):
        cache.incr("word")
    for algorithm in ("fixed_window", "sliding_window", "gcra"):
        results = [cache.check_rate_limit("k", 5, 60, algorithm=algorithm) for _ in range(7)]
        assert [r.allowed for r in results] == [True] * 5 + [False] * 2, algorithm
        assert results[4].remaining == 0
    first = cache.revoke_user_tokens("u")
    assert cache.revoke_user_tokens("u") >= first
    new = sessions.create("alice", ttl=60, max_sessions=1)
    sessions.create("alice", ttl=60, max_sessions=1)
    assert sessions.get(new.token) is None and sessions.count("alice") == 1
    newest = sessions.list("alice")[0]
    assert sessions.touch("no-such-token") is None
    link = links.issue("alice", "alice@example.com", ttl=60, application_id="app")
    assert links.consume(link.token) is None  # application mismatch leaves it usable
    consumed = links.consume(link.token, application_id="app")
    assert consumed is not None and consumed.consumed_at is not None
    assert links.consume(link.token, application_id="app") is None
    assert newest.user_id == "alice"
    runner.connection.set_trace_callback(None)
    runner.close()
