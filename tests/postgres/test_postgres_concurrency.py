"""Exactly-once and at-most-N under READ COMMITTED, with real contention: threads,
gathered coroutines, and spawned processes (each its own pool) starting together."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

import authstore
from tests import contention
from tests.backends import with_options


def test_processes_migrating_a_fresh_database_at_once(
    postgres_server: str, fresh_prefix: str
) -> None:
    url = with_options(postgres_server, table_prefix=fresh_prefix)
    contention.check_processes_migrate_a_fresh_database_once(url, "postgresql")
    with psycopg.connect(postgres_server) as check:
        versions = check.execute(f"SELECT version FROM {fresh_prefix}schema_version").fetchall()
    assert versions == [(1,), (2,), (3,)]


def test_first_use_migrates_once_under_threads(postgres_server: str, fresh_prefix: str) -> None:
    url = f"{postgres_server}?table_prefix={fresh_prefix}"
    stores = [authstore.open_cache(url, namespace=f"n{i}") for i in range(8)]
    try:
        with ThreadPoolExecutor(8) as executor:
            list(executor.map(lambda store: store.set("k", 1), stores))
        assert all(store.get("k") == 1 for store in stores)
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_processes_share_one_rate_limit_exactly(pg_url: str, algorithm: str) -> None:
    contention.check_processes_share_one_rate_limit(
        with_options(pg_url, namespace="procs"), algorithm
    )


def test_forty_concurrent_creates_keep_exactly_three_sessions(pg_url: str) -> None:
    namespace = f"cap{uuid.uuid4().hex[:8]}"
    with authstore.open_sessions(pg_url, namespace=namespace, pool_size=20) as sessions:
        sessions.count("warm-up")
        created = contention.race(40, lambda: sessions.create("alice", ttl=60, max_sessions=3))
        assert len(created) == 40
        assert sessions.count("alice") == 3
        newest = sorted(created, key=lambda new: new.record.created_at)[-1]
        assert sessions.get(newest.token) is not None


def test_forty_concurrent_async_creates_keep_exactly_three_sessions(pg_url: str) -> None:
    namespace = f"cap{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[int, int]:
        async with authstore.open_async_sessions(
            pg_url, namespace=namespace, pool_size=20
        ) as sessions:
            created = await asyncio.gather(
                *(sessions.create("alice", ttl=60, max_sessions=3) for _ in range(40))
            )
            return len(created), await sessions.count("alice")

    assert asyncio.run(scenario()) == (40, 3)


def test_processes_creating_sessions_keep_the_cap(pg_url: str) -> None:
    url = with_options(pg_url, namespace=f"cap{uuid.uuid4().hex[:8]}", pool_size=10)
    contention.check_processes_creating_capped_sessions_keep_the_cap(url, rounds=1, threads=10)


def test_concurrent_issues_leave_one_usable_link(pg_url: str) -> None:
    namespace = f"links{uuid.uuid4().hex[:8]}"
    with authstore.open_magic_links(pg_url, namespace=namespace, pool_size=10) as links:
        links.peek("warm-up-token")
        issued = contention.race(20, lambda: links.issue("alice", "a@example.com", ttl=60))
        usable = [link for link in issued if links.peek(link.token) is not None]
        assert len(usable) == 1, len(usable)


def test_fifty_concurrent_consumes_yield_one_record_async(pg_url: str) -> None:
    async def scenario() -> int:
        async with authstore.open_async_magic_links(pg_url, pool_size=10) as links:
            token = (await links.issue("bob", "b@example.com", ttl=60)).token
            results = await asyncio.gather(*(links.consume(token) for _ in range(50)))
            return sum(result is not None for result in results)

    assert asyncio.run(scenario()) == 1


def test_one_connection_serves_many_threads_without_false_timeouts(pg_url: str) -> None:
    """The runner keeps its connection at hand between operations; with pool_size=1 an
    operation waiting for the pool must still get it as soon as it is free."""
    with authstore.open_cache(pg_url, namespace="one", pool_size=1, timeout=2) as cache:
        cache.set("n", 0)
        with ThreadPoolExecutor(8) as executor:
            results = list(executor.map(lambda _: cache.incr("n"), range(400)))
        assert sorted(results) == list(range(1, 401))


def test_one_connection_serves_many_coroutines_without_false_timeouts(pg_url: str) -> None:
    async def scenario() -> list[int]:
        async with authstore.open_async_cache(
            pg_url, namespace="one-async", pool_size=1, timeout=2
        ) as cache:
            await cache.set("n", 0)
            return await asyncio.gather(*(cache.incr("n") for _ in range(400)))

    assert sorted(asyncio.run(scenario())) == list(range(1, 401))
