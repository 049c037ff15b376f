"""A TCP forwarder on loopback that delays every chunk by a configurable one-way delay
and counts round trips, run as its own process so it never competes with the measured
one for the interpreter lock.

    python -m benchmarks.suite.proxy 127.0.0.1:6379 127.0.0.1:5432 ...

It prints ``echo <port>`` (an echo server of its own, proxied like the targets, to
measure the round trip the proxy really gives), ``listen <target> <port>`` per target
and ``ready``, then reads commands on
stdin, one per line, answering each on stdout:

- ``delay <seconds>``: one-way delay for chunks forwarded from now on (0.0005 gives a
  1 ms round trip); ``ok``;
- ``count``: ``<round trips> <connections>`` since the last ``reset``;
- ``reset``: zero the counters; ``ok``.

A round trip is counted when a client sends after the server last spoke (or first, on a
fresh connection): a pipelined batch or a request split over several chunks is one,
a request and its reply are one, whatever the protocol. The loop runs on ``select``,
whose timeout has microsecond resolution (epoll rounds up to whole milliseconds).
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import sys
from typing import Any


class Shared:
    def __init__(self) -> None:
        self.delay = 0.0
        self.trips = 0
        self.connections = 0


class Direction:
    """One way of one connection: chunks leave ``delay`` after they arrived, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, shared: Shared) -> None:
        self.loop, self.shared = loop, shared
        self.target: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.scheduled = False
        self.closing = False
        self.early: list[bytes] = []

    def push(self, data: bytes) -> None:
        delay = self.shared.delay
        if self.target is None:
            self.early.append(data)
            return
        if delay <= 0 and not self.queue:
            self.target.write(data)
            return
        self.queue.append((self.loop.time() + delay, data))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_at(self.queue[0][0], self.flush)

    def attach(self, target: asyncio.Transport) -> None:
        self.target = target
        for data in self.early:
            self.push(data)
        self.early.clear()
        if self.closing:
            self.close()

    def flush(self) -> None:
        self.scheduled = False
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now + 1e-5:
            assert self.target is not None
            self.target.write(self.queue.popleft()[1])
        if self.queue:
            self.scheduled = True
            self.loop.call_at(self.queue[0][0], self.flush)
        elif self.closing and self.target is not None:
            self.target.close()

    def close(self) -> None:
        self.closing = True
        if self.target is not None and not self.queue:
            self.target.close()


class Upstream(asyncio.Protocol):
    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream

    def data_received(self, data: bytes) -> None:
        self.downstream.awaiting = False
        self.downstream.to_client.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.to_client.close()


class Downstream(asyncio.Protocol):
    def __init__(self, target: tuple[str, int], shared: Shared) -> None:
        self.target, self.shared = target, shared
        self.loop = asyncio.get_running_loop()
        self.to_server = Direction(self.loop, shared)
        self.to_client = Direction(self.loop, shared)
        self.awaiting = False

    def connection_made(self, transport: Any) -> None:
        transport.set_write_buffer_limits(high=1 << 24)
        self.to_client.attach(transport)
        self.shared.connections += 1
        self.loop.create_task(self.connect(transport))

    async def connect(self, transport: asyncio.Transport) -> None:
        try:
            upstream, _ = await self.loop.create_connection(
                lambda: Upstream(self), self.target[0], self.target[1]
            )
        except OSError:
            transport.close()
            return
        self.to_server.attach(upstream)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if not self.awaiting:
            self.awaiting = True
            self.shared.trips += 1
        self.to_server.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.to_server.close()


class Echo(asyncio.Protocol):
    """Sends back what it receives: the far end of the proxy's own round-trip check."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(targets: list[tuple[str, int]]) -> None:
    loop = asyncio.get_running_loop()
    shared = Shared()
    echo = await loop.create_server(Echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    print(f"echo {echo_port}", flush=True)
    targets = [*targets, ("127.0.0.1", echo_port)]
    for host, port in targets:
        server = await loop.create_server(
            lambda t=(host, port): Downstream(t, shared), "127.0.0.1", 0
        )
        print(f"listen {host}:{port} {server.sockets[0].getsockname()[1]}", flush=True)
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        word, _, argument = line.partition(" ")
        if word == "delay":
            shared.delay = float(argument)
            answer = "ok"
        elif word == "count":
            answer = f"{shared.trips} {shared.connections}"
        elif word == "reset":
            shared.trips = shared.connections = 0
            answer = "ok"
        else:
            answer = f"error unknown command {word!r}"
        print(answer, flush=True)


def main(argv: list[str]) -> None:
    targets = []
    for item in argv:
        host, _, port = item.rpartition(":")
        targets.append((host, int(port)))
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(targets))
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
