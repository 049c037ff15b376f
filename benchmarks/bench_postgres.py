"""PostgreSQL: authstore against the raw drivers doing the same SQL round trip.

    python benchmarks/bench_postgres.py        # or: section() from benchmarks/run.py

The raw side replays the exact statement authstore sends (captured from the
operation, not retyped) on one plain autocommit connection: psycopg's
``execute().fetchall()`` and asyncpg's ``fetch()``, the fastest way each driver has.
authstore pays for its pool, its argument checks and its decoding on top. Goal: at
most 1.15x (DESIGN.md section 8). The server comes from AUTHSTORE_TEST_POSTGRES_URL
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

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.execution import Statement, statements

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/authstore_test"
GOAL = 1.15
HITS = 2000
CALLERS = 100


def _server() -> str:
    return os.environ.get("AUTHSTORE_TEST_POSTGRES_URL") or DEFAULT_URL


def _statement(store: Any, op: Op[Any]) -> Statement:
    """The one statement an operation sends, as the driver receives it."""
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
        "session get": lambda: people.get(token),
    }


def _calls(store: Any, sessions: Any, token: str) -> dict[str, Callable[[], Any]]:
    return {
        "cache get": lambda: store.get("hot"),
        "cache set (ttl)": lambda: store.set("warm", {"user": "alice", "n": 3}, ttl=300),
        "rate limit fixed window": lambda: store.check_rate_limit("login", 10**9, 60),
        "session get": lambda: sessions.get(token),
    }


def _drop(url: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        names = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND starts_with(tablename, %s)",
            [prefix],
        ).fetchall()
        for (name,) in names:
            connection.execute(f'DROP TABLE IF EXISTS "{name}"')


def _sync_part(url: str) -> tuple[list[Comparison], float, dict[str, float]]:
    import psycopg

    results = []
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.set("hot", {"user": "alice", "roles": ["admin"], "n": 3}, ttl=3600)
    token = sessions.create("alice", ttl=3600).token
    raw = psycopg.connect(_server(), autocommit=True)
    try:
        operations = _operations(cache, sessions, token)
        for name, call in _calls(cache, sessions, token).items():
            statement = _statement(cache if name != "session get" else sessions, operations[name]())
            text, args, rows = statement.text, statement.args, statement.fetch in ("one", "all")

            def replay(
                text: str = text, args: tuple[object, ...] = args, rows: bool = rows
            ) -> object:
                cursor = raw.execute(text, args)  # type: ignore[arg-type]
                return cursor.fetchall() if rows else cursor.rowcount

            results.append(
                compare(f"postgres sync {name}", call, replay, "raw psycopg", goal=GOAL, count=1000)
            )
        started = time.perf_counter()
        for _ in range(HITS):
            cache.check_rate_limit("seq", 10**9, 60)
        sequential = time.perf_counter() - started
        rates = {
            "sync rate limit": 1 / next(r.ours for r in results if "rate" in r.name),
            "sync session get": 1 / next(r.ours for r in results if "session" in r.name),
        }
    finally:
        raw.close()
        cache.close()
        sessions.close()
    return results, sequential, rates


async def _async_part(url: str) -> tuple[list[Comparison], float, dict[str, float]]:
    import asyncpg

    results = []
    cache = authstore.open_async_cache(url, pool_size=CALLERS // 4)
    sessions = authstore.open_async_sessions(url)
    await cache.set("hot", {"user": "alice", "roles": ["admin"], "n": 3}, ttl=3600)
    token = (await sessions.create("alice", ttl=3600)).token
    raw = await asyncpg.connect(_server())
    try:
        operations = _operations(cache, sessions, token)
        for name, call in _calls(cache, sessions, token).items():
            statement = _statement(cache if name != "session get" else sessions, operations[name]())
            text, args = statement.text, statement.args

            async def replay(text: str = text, args: tuple[object, ...] = args) -> object:
                return await raw.fetch(text, *args)  # the same round trip for a write too

            results.append(
                await compare_async(
                    f"postgres async {name}", call, replay, "raw asyncpg", goal=GOAL, count=1000
                )
            )

        async def caller(hits: int) -> int:
            return sum([bool(await cache.check_rate_limit("conc", 10**9, 60)) for _ in range(hits)])

        started = time.perf_counter()
        passed = await asyncio.gather(*(caller(HITS // CALLERS) for _ in range(CALLERS)))
        concurrent = time.perf_counter() - started
        assert sum(passed) == HITS
        rates = {
            "async rate limit": 1 / next(r.ours for r in results if "rate" in r.name),
            "async session get": 1 / next(r.ours for r in results if "session" in r.name),
            f"async rate limit, {CALLERS} callers": HITS / concurrent,
        }
    finally:
        await raw.close()
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
        f"postgres {HITS} rate-limit hits: sequential sync {sequential:.3f} s, "
        f"async with {CALLERS} concurrent callers {concurrent:.3f} s "
        f"({sequential / concurrent:.1f}x faster)"
    )
    for name, per_second in rates.items():
        print(f"postgres {name}: about {per_second:,.0f} ops/s")
    return results


if __name__ == "__main__":
    sys.exit(report(section()))
