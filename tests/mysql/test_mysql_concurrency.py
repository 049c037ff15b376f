"""Exactly-once on one server under real contention: processes, each with its own pool,
and several stores in one process. Only InnoDB's row locks keep them honest.
(One store hammered by threads and by gathered coroutines is the contract suite's.)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import authstore
from authstore.contracts.values import hash_token

from .conftest import with_options

PROCESSES = 4
START_DELAY = 2.0  # seconds for spawned interpreters to import authstore
DAY = 86_400
"""The limits' period in the race tests: a race that ran long on a loaded machine must
not earn a hit back (GCRA gives one back every period/limit) or cross a window."""


def _wait_until(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def hit_rate_limit(url: str, algorithm: str, limit: int, hits: int, start: float) -> int:
    with authstore.open_cache(url) as cache:
        cache.exists("warm-up")  # connect and migrate before the start line
        _wait_until(start)
        with ThreadPoolExecutor(4) as pool:
            results = pool.map(
                lambda _: bool(cache.check_rate_limit("login", limit, DAY, algorithm=algorithm)),
                range(hits),
            )
            return sum(results)


def consume_link(url: str, token: str, attempts: int, start: float) -> int:
    with authstore.open_magic_links(url) as links:
        links.peek("warm-up-token")
        _wait_until(start)
        return sum(links.consume(token) is not None for _ in range(attempts))


def use_backup_code(url: str, code: str, start: float) -> tuple[int, int]:
    with authstore.open_totp(url) as totp:
        totp.load("warm-up")
        _wait_until(start)
        used = sum(totp.use_backup_code("alice", hash_token(code)) for _ in range(5))
        claimed = sum(totp.claim_step("alice", step) for step in range(100, 110))
        return used, claimed


def create_capped(url: str, start: float) -> int:
    with authstore.open_sessions(url) as sessions:
        sessions.count("warm-up")
        _wait_until(start)
        for _ in range(10):
            sessions.create("alice", ttl=60, max_sessions=3)
        return sessions.count("alice")


def _in_processes(target: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(arguments)) as pool:
        return pool.starmap(target, arguments, chunksize=1)


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_processes_share_one_rate_limit_exactly(mysql_url: str, algorithm: str) -> None:
    url = with_options(mysql_url, namespace=f"processes-{algorithm}")
    authstore.migrate(url)
    limit, hits = 25, 20
    start = time.time() + START_DELAY
    passed = _in_processes(
        hit_rate_limit, [(url, algorithm, limit, hits, start) for _ in range(PROCESSES)]
    )
    assert sum(passed) == limit, passed


def test_processes_use_single_use_secrets_once(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="processes-once")
    with authstore.open_magic_links(url) as links, authstore.open_totp(url) as totp:
        token = links.issue("alice", "alice@example.com", ttl=60).token
        totp.save_pending("alice", b"ciphertext")
        totp.enable("alice")
        totp.replace_backup_codes("alice", [hash_token("code-1")])
    start = time.time() + START_DELAY
    wins = _in_processes(consume_link, [(url, token, 5, start) for _ in range(PROCESSES)])
    assert sum(wins) == 1, wins
    start = time.time() + START_DELAY
    results = _in_processes(use_backup_code, [(url, "code-1", start) for _ in range(PROCESSES)])
    assert sum(used for used, _ in results) == 1, results
    assert sum(claimed for _, claimed in results) == 10, results  # each step once


def test_processes_creating_capped_sessions_keep_the_cap(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="processes-capped")
    authstore.migrate(url)
    start = time.time() + START_DELAY
    counts = _in_processes(create_capped, [(url, start) for _ in range(PROCESSES)])
    assert counts[-1] <= 3
    with authstore.open_sessions(url) as sessions:
        assert sessions.count("alice") == 3


def test_threads_on_several_stores_pass_exactly_the_limit(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="several-stores")
    caches = [authstore.open_cache(url, pool_size=4) for _ in range(4)]
    try:
        for cache in caches:
            cache.exists("warm-up")
        barrier = threading.Barrier(len(caches))

        def hammer(cache: Any) -> int:
            barrier.wait()
            return sum(bool(cache.check_rate_limit("k", 30, 60)) for _ in range(20))

        with ThreadPoolExecutor(len(caches)) as pool:
            passed = sum(pool.map(hammer, caches))
    finally:
        for cache in caches:
            cache.close()
    assert passed == 30


def test_coroutines_on_several_async_stores(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="several-async")

    async def scenario() -> tuple[int, bool, int]:
        stores = [authstore.open_async_cache(url, pool_size=5) for _ in range(3)]
        links = [authstore.open_async_magic_links(url) for _ in range(2)]
        try:
            hits = await asyncio.gather(
                *(s.check_rate_limit("k", 10, DAY, algorithm="gcra") for s in stores * 34)
            )
            counters = await asyncio.gather(*(s.incr("n") for s in stores * 20))
            token = (await links[0].issue("alice", "alice@example.com", ttl=60)).token
            consumed = await asyncio.gather(*(link.consume(token) for link in links * 25))
        finally:
            for store in stores:
                await store.aclose()
            for link_store in links:
                await link_store.aclose()
        return (
            sum(bool(h) for h in hits),
            sorted(counters) == list(range(1, 61)),
            sum(c is not None for c in consumed),
        )

    assert asyncio.run(scenario()) == (10, True, 1)
