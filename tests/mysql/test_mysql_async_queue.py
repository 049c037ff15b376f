"""Async operations waiting for a pooled connection are served first come, first served.

aiomysql's own wait lets an operation that arrives as a connection is released take it
ahead of those already waiting: a caller that loops keeps its connection and the others
starve (with 100 callers on 10 connections, p99 went to seconds and some timed out).
"""

from __future__ import annotations

import asyncio

import authstore
from tests.backends import with_options


def test_callers_take_turns_on_a_busy_pool(mysql_url: str) -> None:
    async def scenario() -> list[int]:
        served: list[int] = []
        async with authstore.open_async_cache(with_options(mysql_url, pool_size=1)) as cache:
            await cache.exists("warm-up")

            async def caller(number: int) -> None:
                for _ in range(4):
                    await cache.exists(f"k{number}")
                    served.append(number)

            await asyncio.gather(*(caller(number) for number in range(3)))
        return served

    served = asyncio.run(scenario())
    assert served == [0, 1, 2] * 4, served
