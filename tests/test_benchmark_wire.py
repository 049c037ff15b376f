"""The benchmark's raw-driver replays send what authstore sends, byte for byte.

A recording forwarder sits between the clients and the server. For each replayed
operation authstore's call is recorded on the wire twice in a row, then the raw replay of
the same operation (``benchmarks.suite.raw``); the bytes the clients sent must be the
same. The expected bytes are never written here: they are whatever authstore sends today
(its memcached and PostgreSQL protocols change), so the test follows the library and only
fails when a replay stops repeating it. The clock is frozen for both (memcached keeps
expiries and limiter state on the client's clock, in the values it writes).

An operation whose bytes depend on the server's state (authstore's two calls in a row
differ: a counter written back, a compare-and-set token the server issued) cannot be
repeated exactly by a replay, which sends the requests recorded once: for those the
digits are compared masked (same commands, keys, flags and layout; the numbers the
state decides may differ), and the test says which operations these are.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.suite.ops import OPS, contenders, run_async, run_sync, seed
from benchmarks.suite.raw import open_raw
from benchmarks.suite.targets import Target, close_stores, discover, open_stores

Wire = dict[str, tuple[bytes, bytes, bytes, bytes]]
NOW = 1_800_000_000.25
"""The frozen clock: any fixed time works, the same for both contenders."""


class Recorder:
    """A TCP forwarder on loopback keeping what clients send, in the order it arrives
    (one caller at a time: a pool's connections take turns)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sent: list[bytes] = []
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.address)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, keep: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if keep:
                    with self.lock:
                        self.sent.append(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def mark(self) -> int:
        """Where the recording stands (a reply's arrival means its request went through
        the pump; a short pause lets a request sent without awaiting a reply through)."""
        time.sleep(0.02)
        with self.lock:
            return len(self.sent)

    def between(self, start: int, end: int) -> bytes:
        with self.lock:
            return b"".join(self.sent[start:end])

    def close(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


def _freeze(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every clock authstore reads for this store returns ``NOW``."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    seen: set[int] = set()

    def walk(thing: Any, depth: int) -> None:
        if depth > 3 or id(thing) in seen or not hasattr(thing, "__dict__"):
            return
        seen.add(id(thing))
        for name, value in list(vars(thing).items()):
            if name == "clock" and callable(value):
                monkeypatch.setattr(thing, name, lambda: NOW)
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item, depth + 1)
            elif not isinstance(value, (str, bytes, int, float, tuple, list)):
                walk(value, depth + 1)

    walk(store._logic, 0)


def _wire(recorder: Recorder, *marks: int) -> tuple[bytes, bytes, bytes, bytes]:
    """authstore's two calls, the capture and the replay: the bytes each sent."""
    first, second, third, fourth = marks
    end = recorder.mark()
    return (
        recorder.between(first, second),
        recorder.between(second, third),
        recorder.between(third, fourth),
        recorder.between(fourth, end),
    )


def _masked(data: bytes) -> bytes:
    return re.sub(rb"[0-9]+", b"#", data)


def _replayed(target: Target) -> list[str]:
    stores = target.stores
    return [op.name for op in OPS if op.raw and not op.concurrent_only and op.store in stores]


@pytest.fixture
def recorded(
    server_url: Callable[[str], str], request: pytest.FixtureRequest
) -> Iterator[tuple[Target, Recorder]]:
    name = request.param
    (target,), skipped = discover([server_url(name)])
    assert not skipped
    recorder = Recorder(target.address)
    try:
        yield target, recorder
    finally:
        recorder.close()
        target.cleanup()


def _wire_sync(target: Target, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Wire:
    stores = open_stores(target.via(recorder.port), target.stores, False)
    raw = open_raw(target.server_via(recorder.port), False)
    found: Wire = {}
    try:
        _freeze(stores.cache, monkeypatch)
        run_sync(seed(stores, 1))
        ours = contenders(stores, 1)
        for name in _replayed(target):
            call = ours[name].call
            call(0)  # a script gets loaded, a connection made
            store = getattr(stores, next(o.store for o in OPS if o.name == name))
            first = recorder.mark()
            call(0)
            second = recorder.mark()
            call(0)
            third = recorder.mark()
            replay = raw.contender(store, call)  # the capture: the op once, on the raw driver
            fourth = recorder.mark()
            replay.call(0)
            found[name] = _wire(recorder, first, second, third, fourth)
    finally:
        raw.close()
        close_stores(stores)
    return found


def _wire_async(target: Target, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Wire:
    async def body() -> Wire:
        stores = open_stores(target.via(recorder.port), target.stores, True)
        raw = await open_raw(target.server_via(recorder.port), True)
        found: Wire = {}
        try:
            _freeze(stores.cache, monkeypatch)
            await run_async(seed(stores, 1))
            ours = contenders(stores, 1)
            for name in _replayed(target):
                call = ours[name].call
                await call(0)
                store = getattr(stores, next(o.store for o in OPS if o.name == name))
                first = recorder.mark()
                await call(0)
                second = recorder.mark()
                await call(0)
                third = recorder.mark()
                replay = await raw.contender(store, call)
                fourth = recorder.mark()
                await replay.call(0)
                found[name] = _wire(recorder, first, second, third, fourth)
        finally:
            await raw.close()
            await close_stores(stores)
        return found

    return asyncio.run(body())


@pytest.mark.parametrize("recorded", ["redis", "memcached"], indirect=True)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_raw_replays_send_authstore_s_bytes(
    recorded: tuple[Target, Recorder], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, recorder = recorded
    wire = (_wire_sync if mode == "sync" else _wire_async)(target, recorder, monkeypatch)
    assert set(wire) == set(_replayed(target))
    differ: dict[str, str] = {}
    stateful: list[str] = []
    for name, (one, two, capture, replay) in wire.items():
        assert one and replay, name  # something was recorded
        # the replay repeats its capture (which may open the raw driver's connection first)
        assert capture.endswith(replay), name
        if one == two:  # authstore sends the same bytes each time: so must the replay
            same = two == replay
        else:  # the bytes follow the server's state: the replay's can only match in form
            stateful.append(name)
            same = _masked(two) == _masked(replay)
        if not same:
            differ[name] = f"authstore sent {two!r}, the replay {replay!r}"
    assert not differ, "\n".join(f"{k}: {v}" for k, v in differ.items())
    print(f"{target.name} {mode}: compared in form only (state-dependent): {stateful}")
