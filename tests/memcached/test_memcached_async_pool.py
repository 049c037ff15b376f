"""The async store's callers share the pool's connections, not one.

aiomcache's pool only opens a connection beyond ``pool_minsize`` when it holds none at
all: with ``pool_minsize=1`` every async caller queued on one connection, so 100 async
callers 1 ms from the server went no faster than one sync caller (0.9x in the benchmark).

The server is frozen (SIGSTOP) while the callers run, so each holds its connection
until it thaws: the requests then wait in the kernel's receive queues of the server's
sockets, one queue per connection that carries one, which the test counts. (It used to
count memcached's ``curr_connections`` before and after, which is not deterministic:
memcached counts a connection out only once a worker thread has handled its close, so
the fixture's startup ping could still be counted in "before", on a busy machine.)
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import authstore
from tests.memcached.conftest import PrivateMemcached

_PROC_NET_TCP = "/proc/net/tcp"
_ESTABLISHED = "01"


def _connections_with_requests_waiting(port: int) -> int:
    """The server's established connections (IPv4, local port ``port``) with bytes in
    their receive queue: requests sent that the server has not read."""
    waiting = 0
    with open(_PROC_NET_TCP) as table:
        next(table)  # the header
        for line in table:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.rpartition(":")[2], 16) != port or state != _ESTABLISHED:
                continue
            if int(queues.partition(":")[2], 16) > 0:
                waiting += 1
    return waiting


@pytest.mark.skipif(not os.path.exists(_PROC_NET_TCP), reason="needs Linux's /proc/net/tcp")
def test_concurrent_async_callers_use_the_whole_pool(private_memcached: PrivateMemcached) -> None:
    port = private_memcached.port
    url = f"memcached://127.0.0.1:{port}?pool_size=8&timeout=60"

    async def scenario() -> tuple[int, int, list[object]]:
        async with authstore.open_async_cache(url, namespace="pool") as cache:
            await cache.set("k", 1)
            private_memcached.freeze()
            try:
                callers = asyncio.gather(*(cache.get("k") for _ in range(200)))
                # until every connection that will carry a request carries one
                deadline = time.monotonic() + 10
                used = 0
                while used < 8 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    used = _connections_with_requests_waiting(port)
                await asyncio.sleep(0.2)  # and no more than the pool holds, ever
                most = _connections_with_requests_waiting(port)
            finally:
                private_memcached.thaw()
            return used, most, await callers

    used, most, values = asyncio.run(scenario())
    assert used == most == 8, f"{used} (then {most}) connections for 200 concurrent callers"
    assert values == [1] * 200
