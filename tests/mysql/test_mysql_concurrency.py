"""Exactly-once on one server under real contention: processes, each with its own pool,
and several stores in one process. Only InnoDB's row locks keep them honest.
(One store hammered by threads and by gathered coroutines is the contract suite's.)
"""

from __future__ import annotations

import asyncio

import pytest

import authstore
from tests import contention
from tests.backends import with_options


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_processes_share_one_rate_limit_exactly(mysql_url: str, algorithm: str) -> None:
    url = with_options(mysql_url, namespace=f"processes-{algorithm}")
    contention.check_processes_share_one_rate_limit(url, algorithm, threads=4)


def test_processes_use_single_use_secrets_once(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="processes-once")
    contention.check_processes_consume_one_link_once(url)
    contention.check_processes_use_totp_secrets_once(url)


def test_processes_creating_capped_sessions_keep_the_cap(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="processes-capped")
    contention.check_processes_creating_capped_sessions_keep_the_cap(url, rounds=10, threads=1)


def test_threads_on_several_stores_pass_exactly_the_limit(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="several-stores", pool_size=4)
    contention.check_several_stores_pass_exactly_the_limit(url, stores=4, hits=20)


def test_coroutines_on_several_async_stores(mysql_url: str) -> None:
    url = with_options(mysql_url, namespace="several-async")

    async def scenario() -> tuple[int, bool, int]:
        stores = [authstore.open_async_cache(url, pool_size=5) for _ in range(3)]
        links = [authstore.open_async_magic_links(url) for _ in range(2)]
        try:
            hits = await asyncio.gather(
                *(
                    s.check_rate_limit("k", 10, contention.DAY, algorithm="gcra")
                    for s in stores * 34
                )
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
