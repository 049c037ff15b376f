"""MySQL / MariaDB: authstore against the raw drivers doing the same SQL round trip.

    python benchmarks/bench_mysql.py        # or: section() from benchmarks/run.py

The raw side replays the exact command authstore sends (captured from the operation,
not retyped) on one plain autocommit connection with the same flags: PyMySQL's
``cursor.execute()`` + ``fetchall()`` (every result set of a multi-statement command
read, as it must be), and aiomysql's. A rate-limit hit is one command of four
statements (BEGIN; upsert; SELECT; COMMIT) on both sides: one round trip each.
authstore pays for its pool, its argument checks and its decoding on top. Goal: at
most 1.15x (docs/performance.md lists the goals). The server comes from AUTHSTORE_TEST_MARIADB_URL
(default: the local authstore_test database); tables get a throwaway prefix.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.execution import Statement, statements

DEFAULT_URL = "mysql://root@127.0.0.1:3306/authstore_test"
GOAL = 1.15
HITS = 2000
CALLERS = 100


def _server() -> str:
    return os.environ.get("AUTHSTORE_TEST_MARIADB_URL") or DEFAULT_URL


def _connect_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "charset": "utf8mb4",
        "autocommit": True,
    }


def _statement(store: Any, op: Op[Any]) -> Statement:
    """The one command an operation sends, as the driver receives it."""
    dialect: Dialect = store._runner.dialect
    program = statements(op, dialect)
    statement = next(program)
    program.close()
    return statement


def _operations(store: Any, sessions: Any, token: str) -> dict[str, Callable[[], Op[Any]]]:
    """name -> a fresh operation; the same work as the store method of that name."""
    cache, people = store._logic, sessions._logic
    return {
        "cache get": lambda: cache.get("hot"),
        "cache set (ttl)": lambda: cache.set("warm", {"user": "alice", "n": 3}, 300),
        "rate limit fixed window": lambda: cache.check_rate_limit(
            "login", 10**9, 60, 1, "fixed_window"
        ),
        "rate limit sliding window": lambda: cache.check_rate_limit(
            "login", 10**9, 60, 1, "sliding_window"
        ),
        "rate limit gcra": lambda: cache.check_rate_limit("login", 10**9, 60, 1, "gcra"),
        "session get": lambda: people.get(token),
    }


def _calls(store: Any, sessions: Any, token: str) -> dict[str, Callable[[], Any]]:
    return {
        "cache get": lambda: store.get("hot"),
        "cache set (ttl)": lambda: store.set("warm", {"user": "alice", "n": 3}, ttl=300),
        "rate limit fixed window": lambda: store.check_rate_limit("login", 10**9, 60),
        "rate limit sliding window": lambda: store.check_rate_limit(
            "login", 10**9, 60, 1, "sliding_window"
        ),
        "rate limit gcra": lambda: store.check_rate_limit("login", 10**9, 60, 1, "gcra"),
        "session get": lambda: sessions.get(token),
    }


def _drop(url: str, prefix: str) -> None:
    import pymysql

    connection = pymysql.connect(**_connect_kwargs(url), database=urlsplit(url).path[1:])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND LEFT(table_name, %s) = %s",
                (len(prefix), prefix),
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        connection.close()


def _sync_part(url: str) -> tuple[list[Comparison], float, dict[str, float]]:
    import pymysql
    from pymysql.constants import CLIENT

    results = []
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.set("hot", {"user": "alice", "roles": ["admin"], "n": 3}, ttl=3600)
    token = sessions.create("alice", ttl=3600).token
    raw = pymysql.connect(
        **_connect_kwargs(_server()),
        database=urlsplit(_server()).path[1:],
        client_flag=CLIENT.MULTI_STATEMENTS,
        ssl_disabled=True,
    )
    try:
        operations = _operations(cache, sessions, token)
        for name, call in _calls(cache, sessions, token).items():
            statement = _statement(cache if name != "session get" else sessions, operations[name]())
            text, args = statement.text, statement.args

            def replay(text: str = text, args: tuple[object, ...] = args) -> object:
                with raw.cursor() as cursor:
                    cursor.execute(text, args)
                    rows = cursor.fetchall()
                    while cursor.nextset():
                        rows = cursor.fetchall() or rows
                return rows

            results.append(
                compare(f"mysql sync {name}", call, replay, "raw PyMySQL", goal=GOAL, count=1000)
            )
        calls = _calls(cache, sessions, token)
        for algorithm in ("sliding window", "gcra"):
            # their commands are the longest: within 1.3x of fixed window
            results.append(
                compare(
                    f"mysql sync rate limit {algorithm} vs fixed window",
                    calls[f"rate limit {algorithm}"],
                    calls["rate limit fixed window"],
                    "authstore fixed window",
                    goal=1.3,
                    count=1000,
                )
            )
        started = time.perf_counter()
        for _ in range(HITS):
            cache.check_rate_limit("seq", 10**9, 60)
        sequential = time.perf_counter() - started
        rates = {
            "sync rate limit": 1 / next(r.ours for r in results if "rate" in r.name),
            "sync session get": 1 / next(r.ours for r in results if "session" in r.name),
            "sync rate limit, sequential": HITS / sequential,
        }
    finally:
        raw.close()
        cache.close()
        sessions.close()
    return results, sequential, rates


def _literal(connection: Any, value: object) -> str:
    # aiomysql 0.3 cannot escape bytes under PyMySQL 1.2; written as PyMySQL does
    if isinstance(value, (bytes, bytearray)):
        return f"X'{value.hex()}'"
    text: str = connection.escape(value)
    return text


async def _async_part(url: str) -> tuple[list[Comparison], float, dict[str, float]]:
    import aiomysql

    results = []
    cache = authstore.open_async_cache(url, pool_size=CALLERS // 4)
    sessions = authstore.open_async_sessions(url)
    await cache.set("hot", {"user": "alice", "roles": ["admin"], "n": 3}, ttl=3600)
    token = (await sessions.create("alice", ttl=3600)).token
    raw = await aiomysql.connect(**_connect_kwargs(_server()), db=urlsplit(_server()).path[1:])
    try:
        operations = _operations(cache, sessions, token)
        for name, call in _calls(cache, sessions, token).items():
            statement = _statement(cache if name != "session get" else sessions, operations[name]())
            text, args = statement.text, statement.args

            async def replay(text: str = text, args: tuple[object, ...] = args) -> object:
                async with raw.cursor() as cursor:
                    await cursor.execute(text % tuple(_literal(raw, a) for a in args))
                    rows = await cursor.fetchall()
                    while await cursor.nextset():
                        rows = await cursor.fetchall() or rows
                return rows

            results.append(
                await compare_async(
                    f"mysql async {name}", call, replay, "raw aiomysql", goal=GOAL, count=1000
                )
            )

        async def caller(key: str, hits: int) -> int:
            return sum([bool(await cache.check_rate_limit(key, 10**9, 60)) for _ in range(hits)])

        # one hot key (every hit waits for the same row lock), then a key per caller
        started = time.perf_counter()
        passed = await asyncio.gather(*(caller("conc", HITS // CALLERS) for _ in range(CALLERS)))
        concurrent = time.perf_counter() - started
        started = time.perf_counter()
        spread = await asyncio.gather(*(caller(f"own{n}", HITS // CALLERS) for n in range(CALLERS)))
        own_keys = time.perf_counter() - started
        assert sum(passed) == sum(spread) == HITS
        rates = {
            "async rate limit": 1 / next(r.ours for r in results if "rate" in r.name),
            "async session get": 1 / next(r.ours for r in results if "session" in r.name),
            f"async rate limit, {CALLERS} callers, one key": HITS / concurrent,
            f"async rate limit, {CALLERS} callers, a key each": HITS / own_keys,
        }
    finally:
        raw.close()
        await cache.aclose()
        await sessions.aclose()
    return results, concurrent, rates


def section() -> list[Comparison]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    url = f"{_server()}{'&' if '?' in _server() else '?'}table_prefix={prefix}"
    try:
        results, sequential, rates = _sync_part(url)
        async_results, concurrent, async_rates = asyncio.run(_async_part(url))
    finally:
        _drop(_server(), prefix)
    results += async_results
    rates.update(async_rates)
    print(
        f"mysql {HITS} rate-limit hits: sequential sync {sequential:.3f} s, "
        f"async with {CALLERS} concurrent callers {concurrent:.3f} s "
        f"({sequential / concurrent:.1f}x faster)"
    )
    for name, per_second in rates.items():
        print(f"mysql {name}: about {per_second:,.0f} ops/s")
    return results


if __name__ == "__main__":
    sys.exit(report(section()))
