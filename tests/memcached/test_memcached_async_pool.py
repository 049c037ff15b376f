"""The async store's callers share the pool's connections, not one.

aiomcache's pool only opens a connection beyond ``pool_minsize`` when it holds none at
all: with ``pool_minsize=1`` every async caller queued on one connection, so 100 async
callers 1 ms from the server went no faster than one sync caller (0.9x in the benchmark).
"""

from __future__ import annotations

import asyncio
import socket

import authstore
from tests.memcached.conftest import PrivateMemcached


def _connections(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
        client.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += client.recv(65536)
    for line in reply.decode().splitlines():
        if line.startswith("STAT curr_connections "):
            return int(line.split()[-1]) - 1  # this stats connection
    raise AssertionError("no curr_connections in memcached's stats")


def test_concurrent_async_callers_use_the_whole_pool(private_memcached: PrivateMemcached) -> None:
    port = private_memcached.port
    url = f"memcached://127.0.0.1:{port}?pool_size=8"
    before = _connections(port)

    async def scenario() -> int:
        async with authstore.open_async_cache(url, namespace="pool") as cache:
            await cache.set("k", 1)
            await asyncio.gather(*(cache.get("k") for _ in range(200)))
            return _connections(port)

    during = asyncio.run(scenario())
    assert during - before == 8, f"{during - before} connections for 200 concurrent callers"
