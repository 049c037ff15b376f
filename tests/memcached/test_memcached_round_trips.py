"""Round trips on the wire: rate limits and incr take one (tests/counted_operations.py's
``rate_limit_operations``), on keys this store was the last to write; two when
another store wrote in between, never more. And a refused hit or a failed incr is
never decided on the entry a store remembers, only on one it has just read.

A proxy between the store and memcached counts round trips: a round trip starts when
the client sends after the server last answered (or first). The store's writes are
each one ``sendall`` of a few dozen bytes on loopback, so the count does not depend
on timing.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

import authstore
from tests.counted_operations import rate_limit_operations
from tests.relay import Relay


class CountingProxy(Relay):
    """A relay to ``target`` counting round trips over all its connections: one starts
    when a client sends after the server answered it (or first)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.trips = 0
        self._answered: dict[int, bool] = {}
        super().__init__(target)

    def from_client(self, number: int, data: bytes, server: socket.socket) -> None:
        with self.lock:
            if self._answered.get(number, True):
                self.trips += 1
            self._answered[number] = False
        server.sendall(data)

    def from_server(self, number: int, data: bytes, client: socket.socket) -> None:
        with self.lock:  # before the client can read it and send again
            self._answered[number] = True
        client.sendall(data)

    def count(self, action: Callable[[], object]) -> int:
        before = self.trips
        result = action()
        if inspect.isawaitable(result):
            raise TypeError("count_async for coroutines")
        return self.trips - before

    async def count_async(self, action: Callable[[], object]) -> int:
        before = self.trips
        result = action()
        assert inspect.isawaitable(result)
        await result
        return self.trips - before


@pytest.fixture
def proxy(memcached_url: str) -> Iterator[CountingProxy]:
    host, _, port = memcached_url.partition("://")[2].split("?")[0].rpartition(":")
    counting = CountingProxy((host, int(port)))
    yield counting
    counting.close()


def _namespace() -> str:
    return f"trips{uuid.uuid4().hex[:10]}"


def test_rate_limits_and_incr_take_one_round_trip(proxy: CountingProxy) -> None:
    url = f"memcached://127.0.0.1:{proxy.port}"
    with authstore.open_cache(url, namespace=_namespace()) as cache:
        operations = rate_limit_operations(cache)
        for action in operations.values():
            action()  # the first call may create the key
        trips = {name: proxy.count(action) for name, action in operations.items()}
    assert trips == dict.fromkeys(operations, 1)


def test_async_rate_limits_and_incr_take_one_round_trip(proxy: CountingProxy) -> None:
    url = f"memcached://127.0.0.1:{proxy.port}"

    async def scenario() -> dict[str, int]:
        async with authstore.open_async_cache(url, namespace=_namespace()) as cache:
            operations = rate_limit_operations(cache)
            for action in operations.values():
                await action()  # type: ignore[misc]
            return {name: await proxy.count_async(action) for name, action in operations.items()}

    trips = asyncio.run(scenario())
    assert trips == dict.fromkeys(trips, 1)
    assert "fixed_window allowed" in trips


def test_another_writer_costs_one_more_round_trip(proxy: CountingProxy, memcached_url: str) -> None:
    """The remembered entry is stale: the first attempt stores nothing and reads the
    current entry back, the second stores on it (two, as a read then a write took)."""
    namespace = _namespace()
    url = f"memcached://127.0.0.1:{proxy.port}"
    with (
        authstore.open_cache(url, namespace=namespace) as mine,
        authstore.open_cache(memcached_url, namespace=namespace) as other,
    ):
        assert mine.check_rate_limit("k", 4, 60).remaining == 3
        assert other.check_rate_limit("k", 4, 60).remaining == 2
        assert mine.incr("n") == 1
        assert other.incr("n") == 2
        hit = proxy.count(lambda: mine.check_rate_limit("k", 4, 60))
        assert mine.check_rate_limit("k", 4, 60).remaining == 0
        assert proxy.count(lambda: mine.incr("n")) == 2
        assert mine.get("n") == 3
    assert hit == 2


def test_refusals_are_decided_on_an_entry_just_read(memcached_url: str) -> None:
    """A store remembers a full limiter and a counter holding text; another store
    resets the one and writes a number to the other: the first store's next hit is
    allowed and its incr counts on (no refusal or ValueError from what it remembers)."""
    namespace = _namespace()
    with (
        authstore.open_cache(memcached_url, namespace=namespace) as mine,
        authstore.open_cache(memcached_url, namespace=namespace) as other,
    ):
        for algorithm in ("fixed_window", "sliding_window", "gcra"):
            # full after mine's own last write (2 hits), then after a refusal (3)
            for hits in (2, 3):
                results = [
                    mine.check_rate_limit("k", 2, 60, algorithm=algorithm) for _ in range(hits)
                ]
                assert [hit.allowed for hit in results] == [True, True, False][:hits]
                other.reset_rate_limit("k")
                again = mine.check_rate_limit("k", 2, 60, algorithm=algorithm)
                assert again.allowed and again.remaining == 1, (algorithm, hits)
                other.reset_rate_limit("k")
        mine.set("x", "text")
        with pytest.raises(ValueError):
            mine.incr("x")
        other.set("x", 5)
        assert mine.incr("x") == 6


def test_swap_wire_format() -> None:
    """What a Swap writes (the add mode for no token; a token from pymemcache or a meta
    reply as bytes, from aiomcache as an int) and how its replies read."""
    from authstore.adapters.memcached.commands import (
        Swap,
        swap_answer,
        swap_request,
        value_size,
    )
    from authstore.contracts.errors import BackendError

    assert swap_request(Swap("ns:r:k", b"-\n1", 62)) == (
        b"ms ns:r:k 3 T62 ME c\r\n-\n1\r\nmg ns:r:k v c\r\n"
    )
    assert swap_request(Swap("k", b"v", 0, b"41")) == b"ms k 1 T0 C41 c\r\nv\r\nmg k v c\r\n"
    assert swap_request(Swap("k", b"v", 0, 41)) == b"ms k 1 T0 C41 c\r\nv\r\nmg k v c\r\n"
    assert swap_answer(b"HD c42", b"VA 1 c42", b"v") == (b"42", (b"v", b"42"))
    for refused in (b"NS c0", b"EX c0", b"NF c0", b"NS", b"EX"):
        assert swap_answer(refused, b"EN", None) == (None, None)
    assert value_size(b"VA 12 c7") == 12 and value_size(b"EN") is None
    for garbage in (b"HD", b"STORED", b""):
        with pytest.raises(BackendError):
            swap_answer(garbage, b"EN", None)
    with pytest.raises(BackendError):
        value_size(b"VALUE k 0 1")


def test_meta_replies_reads_whole_replies_only() -> None:
    """How both runners cut a Swap's or a meta get's replies out of what they received:
    each line and its value block; until a reply is whole, how many more bytes it needs
    (1: a line not ended yet); an error line ends the reply."""
    from authstore.adapters.memcached.commands import meta_replies

    swap = b"HD c42\r\nVA 5 c42\r\na\r\nbc\r\n"
    assert meta_replies(swap, 2) == [(b"HD c42", None), (b"VA 5 c42", b"a\r\nbc")]
    assert meta_replies(b"EN\r\n", 1) == [(b"EN", None)]
    assert meta_replies(b"EX c0\r\nEN\r\n", 2) == [(b"EX c0", None), (b"EN", None)]
    for cut in range(len(swap)):
        needs = meta_replies(swap[:cut], 2)
        assert isinstance(needs, int) and 1 <= needs <= len(swap) - cut, cut
    assert meta_replies(b"VA 5 c1\r\nab", 1) == 5  # 3 of the value, then CRLF
    assert meta_replies(b"SERVER_ERROR out of memory\r\n", 2) == [
        (b"SERVER_ERROR out of memory", None)
    ]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_long_values_read_over_many_receives(memcached_url: str, asynchronous: bool) -> None:
    """A meta get of a value longer than one receive (``add`` and ``expire`` read the
    entry with its CAS token): every byte arrives, in sync and async."""
    value = bytes(range(256)) * 1500  # 384,000 bytes, CRLFs inside
    namespace = f"long{uuid.uuid4().hex[:8]}"

    def steps(cache: object) -> Iterator[object]:
        yield cache.set("v", value, ttl=60)  # type: ignore[attr-defined]
        assert (yield cache.add("v", b"other", ttl=60)) is False  # type: ignore[attr-defined]
        assert (yield cache.expire("v", 120)) is True  # type: ignore[attr-defined]
        assert (yield cache.get("v")) == value  # type: ignore[attr-defined]

    if asynchronous:

        async def scenario() -> None:
            async with authstore.open_async_cache(memcached_url, namespace=namespace) as cache:
                run = steps(cache)
                sent = None
                try:
                    while True:
                        sent = await run.send(sent)
                except StopIteration:
                    pass

        asyncio.run(scenario())
    else:
        with authstore.open_cache(memcached_url, namespace=namespace) as cache:
            run = steps(cache)
            sent = None
            try:
                while True:
                    sent = run.send(sent)
            except StopIteration:
                pass


def test_async_connections_receive_in_heap_sized_reads(memcached_url: str) -> None:
    """An async store's connections ask each receive for 64 KiB, not asyncio's 256 KiB
    (a buffer that size is mmapped, and unmapped, on every reply), from their first use."""
    from authstore.adapters.memcached.aio import READ_SIZE

    async def scenario() -> list[int]:
        async with authstore.open_async_cache(memcached_url, namespace="reads") as cache:
            await asyncio.gather(*(cache.check_rate_limit(f"k{i}", 10, 60) for i in range(3)))
            client = next(iter(cache._runner._clients.values()))
            return [
                conn.writer.transport.max_size
                for conn in client._pool._pool._queue
                if hasattr(conn.writer, "_authstore_idle")  # used
            ]

    sizes = asyncio.run(scenario())
    assert sizes and set(sizes) == {READ_SIZE} and READ_SIZE <= 65536


def test_async_sequential_calls_keep_one_connection(memcached_url: str) -> None:
    """Calls one after the other on an async store take the connection released last
    (warm), not the next of the pool in turn."""

    async def scenario() -> int:
        async with authstore.open_async_cache(
            memcached_url, namespace="warm", pool_size=4
        ) as cache:
            for i in range(10):
                await cache.check_rate_limit(f"k{i}", 10, 60)
            client = next(iter(cache._runner._clients.values()))
            return sum(hasattr(c.writer, "_authstore_idle") for c in client._pool._pool._queue)

    assert asyncio.run(scenario()) == 1
