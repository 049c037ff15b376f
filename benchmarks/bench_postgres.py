"""PostgreSQL: authstore against the raw drivers doing the same SQL round trip.

    python benchmarks/bench_postgres.py        # or: section() from benchmarks/run.py

The raw side replays the exact statement authstore sends (captured from the
operation, not retyped) on one plain autocommit connection with the same timeout
authstore sets (psycopg: the server's statement_timeout; asyncpg: command_timeout),
using each driver's plainest call: psycopg's ``execute().fetchall()``, asyncpg's
``fetch()``, and decodes the JSON it reads, as the SQLite section does ("same lookup
+ decode"). authstore pays for its argument checks, its records (aware datetimes), its
operation machinery and its pool on top. Goal: at most 1.15x. Lines marked "pool" compare
with the same statement through the driver's own pool, the way an application uses a
raw driver (no goal: context). Then 2000 rate-limit hits over 100 users: sequential
sync against 100 concurrent async callers.

The server comes from AUTHSTORE_TEST_POSTGRES_URL (default: the local authstore_test
database); tables get a throwaway prefix, dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.sql.execution import Statement, statements
from authstore.contracts.records import JSONValue

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/authstore_test"
GOAL = 1.15
LIMITER_GOAL = 1.3
"""Sliding window and GCRA against fixed window, same store."""
TIMEOUT = 5.0
HITS = 2000
CALLERS = 100
COUNT = 1000
PAYLOAD: dict[str, JSONValue] = {"user": "alice", "roles": ["admin"], "n": 3}


def _server() -> str:
    return os.environ.get("AUTHSTORE_TEST_POSTGRES_URL") or DEFAULT_URL


def _statement(store: Any, op: Op[Any]) -> Statement:
    """The one statement an operation sends, in the driver's placeholder style."""
    program = statements(op, store._runner.dialect)
    statement = next(program)
    program.close()
    return statement


class _Subjects:
    """The four measured operations on one cache and one session store."""

    def __init__(self, cache: Any, sessions: Any, token: str) -> None:
        self.cache, self.sessions, self.token = cache, sessions, token

    def calls(self) -> dict[str, Callable[[], Any]]:
        cache, sessions, token = self.cache, self.sessions, self.token
        return {
            "cache get": lambda: cache.get("hot"),
            "cache set (ttl)": lambda: cache.set("warm", PAYLOAD, ttl=300),
            "rate limit fixed window": lambda: cache.check_rate_limit("login", 10**9, 60),
            "rate limit sliding window": lambda: cache.check_rate_limit(
                "login", 10**9, 60, 1, "sliding_window"
            ),
            "rate limit gcra": lambda: cache.check_rate_limit("login", 10**9, 60, 1, "gcra"),
            "session get": lambda: sessions.get(token),
        }

    def statements(self) -> dict[str, Statement]:
        cache, people = self.cache._logic, self.sessions._logic
        return {
            "cache get": _statement(self.cache, cache.get("hot")),
            "cache set (ttl)": _statement(self.cache, cache.set("warm", PAYLOAD, 300)),
            "rate limit fixed window": _statement(
                self.cache, cache.check_rate_limit("login", 10**9, 60, 1, "fixed_window")
            ),
            "rate limit sliding window": _statement(
                self.cache, cache.check_rate_limit("login", 10**9, 60, 1, "sliding_window")
            ),
            "rate limit gcra": _statement(
                self.cache, cache.check_rate_limit("login", 10**9, 60, 1, "gcra")
            ),
            "session get": _statement(self.sessions, people.get(self.token)),
        }


Decode = Callable[[Any], object]

DECODE: dict[str, Decode] = {
    "cache get": lambda rows: json.loads(rows[0][0]),
    "session get": lambda rows: (rows[0][0], json.loads(rows[0][9])),
}
"""What a raw-driver application does with the rows it reads (JSON values, metadata)."""


def _keep(rows: Any) -> object:
    return rows


def _psycopg_replay(connection: Any, statement: Statement, decode: Decode) -> Callable[[], object]:
    import psycopg

    text, args = statement.text, statement.args
    rows = statement.fetch in ("one", "all")

    def replay() -> object:
        # authstore's statements use the server's $1 placeholders (a raw cursor)
        cursor = psycopg.RawCursor(connection).execute(text, args)
        return decode(cursor.fetchall()) if rows else cursor.rowcount

    return replay


def _psycopg_pool_replay(pool: Any, statement: Statement, decode: Decode) -> Callable[[], object]:
    def replay() -> object:
        with pool.connection() as connection:
            return _psycopg_replay(connection, statement, decode)()

    return replay


def _sync_part(url: str) -> tuple[list[Comparison], float]:
    import psycopg
    import psycopg_pool

    results = []
    cache, sessions = authstore.open_cache(url), authstore.open_sessions(url)
    cache.set("hot", PAYLOAD, ttl=3600)
    subjects = _Subjects(cache, sessions, sessions.create("alice", ttl=3600).token)
    options = f"-c statement_timeout={int(TIMEOUT * 1000)}"
    raw = psycopg.connect(_server(), autocommit=True, options=options)
    pool = psycopg_pool.ConnectionPool(
        _server(), kwargs={"autocommit": True, "options": options}, min_size=1, open=True
    )
    try:
        calls = subjects.calls()
        for name, statement in subjects.statements().items():
            decode = DECODE.get(name, _keep)
            results.append(
                compare(
                    f"postgres sync {name}",
                    calls[name],
                    _psycopg_replay(raw, statement, decode),
                    "raw psycopg connection",
                    goal=GOAL,
                    count=COUNT,
                )
            )
            results.append(
                compare(
                    f"postgres sync {name} (pool)",
                    calls[name],
                    _psycopg_pool_replay(pool, statement, decode),
                    "raw psycopg_pool",
                    count=COUNT,
                )
            )
        for algorithm in ("sliding window", "gcra"):
            # their statements are the longest: within 1.3x of fixed window
            results.append(
                compare(
                    f"postgres sync rate limit {algorithm} vs fixed window",
                    calls[f"rate limit {algorithm}"],
                    calls["rate limit fixed window"],
                    "authstore fixed window",
                    goal=LIMITER_GOAL,
                    count=COUNT,
                )
            )
        started = time.perf_counter()
        for hit in range(HITS):
            cache.check_rate_limit(f"user{hit % CALLERS}", 10**9, 60)
        sequential = time.perf_counter() - started
    finally:
        pool.close()
        raw.close()
        cache.close()
        sessions.close()
    return results, sequential


def _asyncpg_replay(
    connection: Any, statement: Statement, decode: Decode
) -> Callable[[], Awaitable[object]]:
    text, args = statement.text, statement.args

    async def replay() -> object:
        return decode(await connection.fetch(text, *args))  # one round trip, writes too

    return replay


async def _async_part(url: str) -> tuple[list[Comparison], float]:
    import asyncpg

    results = []
    cache = authstore.open_async_cache(url, pool_size=CALLERS // 4)
    sessions = authstore.open_async_sessions(url)
    await cache.set("hot", PAYLOAD, ttl=3600)
    subjects = _Subjects(cache, sessions, (await sessions.create("alice", ttl=3600)).token)
    raw = await asyncpg.connect(_server(), command_timeout=TIMEOUT)
    pool = await asyncpg.create_pool(_server(), min_size=1, max_size=4, command_timeout=TIMEOUT)
    try:
        calls = subjects.calls()
        for name, statement in subjects.statements().items():
            decode = DECODE.get(name, _keep)
            results.append(
                await compare_async(
                    f"postgres async {name}",
                    calls[name],
                    _asyncpg_replay(raw, statement, decode),
                    "raw asyncpg connection",
                    goal=GOAL,
                    count=COUNT,
                )
            )
            results.append(
                await compare_async(
                    f"postgres async {name} (pool)",
                    calls[name],
                    _asyncpg_replay(pool, statement, decode),
                    "raw asyncpg pool",
                    count=COUNT,
                )
            )

        async def caller(user: int) -> int:
            hits = [
                await cache.check_rate_limit(f"user{user}", 10**9, 60)
                for _ in range(HITS // CALLERS)
            ]
            return sum(map(bool, hits))

        started = time.perf_counter()
        passed = await asyncio.gather(*(caller(user) for user in range(CALLERS)))
        concurrent = time.perf_counter() - started
        assert sum(passed) == HITS
    finally:
        await pool.close()
        await raw.close()
        await cache.aclose()
        await sessions.aclose()
    return results, concurrent


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


def section() -> list[Comparison]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    server = _server()
    url = f"{server}{'&' if '?' in server else '?'}table_prefix={prefix}"
    try:
        results, sequential = _sync_part(url)
        async_results, concurrent = asyncio.run(_async_part(url))
    finally:
        _drop(server, prefix)
    results += async_results
    print(
        f"postgres {HITS} rate-limit hits over {CALLERS} users: sequential sync "
        f"{sequential:.3f} s ({HITS / sequential:,.0f}/s), async with {CALLERS} concurrent "
        f"callers {concurrent:.3f} s ({HITS / concurrent:,.0f}/s): "
        f"{sequential / concurrent:.1f}x faster"
    )
    for result in results:
        if result.goal is not None and ("rate" in result.name or "session" in result.name):
            print(f"{result.name}: about {1 / result.ours:,.0f} ops/s")
    return results


if __name__ == "__main__":
    sys.exit(report(section()))
