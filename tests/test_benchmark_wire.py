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
import itertools
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.suite.ops import OPS, Stores, contenders, run_async, run_sync, seed
from benchmarks.suite.raw import open_raw
from benchmarks.suite.targets import Target, close_stores, discover, open_stores
from tests.relay import Relay

Wire = dict[str, tuple[bytes, bytes, bytes, bytes]]
NOW = 1_800_000_000.25
"""The frozen clock: any fixed time works, the same for both contenders."""


class Recorder(Relay):
    """A relay on loopback keeping what clients send, in the order it arrives (one
    caller at a time: a pool's connections take turns)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sent: list[tuple[int, bytes]] = []
        """(connection number, bytes) as they arrived."""
        super().__init__(address)

    def from_client(self, number: int, data: bytes, server: socket.socket) -> None:
        with self.lock:
            self.sent.append((number, data))
        server.sendall(data)

    def mark(self) -> int:
        """Where the recording stands (a reply's arrival means its request went through
        the pump; a short pause lets a request sent without awaiting a reply through)."""
        time.sleep(0.02)
        with self.lock:
            return len(self.sent)

    def between(self, start: int, end: int) -> bytes:
        with self.lock:
            return b"".join(data for _, data in self.sent[start:end])

    def streams(self, end: int) -> dict[int, list[tuple[int, bytes]]]:
        """Each connection's chunks up to ``end``, with their positions."""
        found: dict[int, list[tuple[int, bytes]]] = {}
        with self.lock:
            for position, (number, data) in enumerate(self.sent[:end]):
                found.setdefault(number, []).append((position, data))
        return found


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


def _wire(recorder: Recorder, backend: str, *marks: int) -> tuple[bytes, bytes, bytes, bytes]:
    """authstore's two calls, the capture and the replay: the bytes each sent (the
    statements' text and parameters for the SQL servers)."""
    bounds = (*marks, recorder.mark())
    if backend in SQL:
        statements = SQL[backend](recorder, bounds[-1])
        pieces = []
        for a, b in itertools.pairwise(bounds):
            sent = [s for position, s in statements if a <= position < b]
            pieces.append(b"".join(repr(statement).encode() for statement in sent))
    else:
        pieces = [recorder.between(a, b) for a, b in itertools.pairwise(bounds)]
    one, two, capture, replay = pieces
    return one, two, capture, replay


Statement = tuple[int, tuple[bytes | None, tuple[bytes | None, ...]]]
"""Where the statement's first byte arrived, and its text and parameters."""


def _joined(chunks: list[tuple[int, bytes]]) -> tuple[bytes, Callable[[int], int]]:
    """A connection's bytes, and the arrival position of the chunk holding an offset."""
    data, starts = b"", []
    for position, chunk in chunks:
        starts.append((len(data), position))
        data += chunk

    def position_of(offset: int) -> int:
        return [p for o, p in starts if o <= offset][-1]

    return data, position_of


def _postgres(recorder: Recorder, end: int) -> list[Statement]:
    """Simple queries ('Q') and executions ('B'ind of a 'P'arsed statement) of the
    PostgreSQL frontend protocol: the statement's text and its parameter values."""
    found: list[Statement] = []
    for chunks in recorder.streams(end).values():
        data, position_of = _joined(chunks)
        names: dict[bytes, bytes] = {}
        i, startup = 0, True
        while i + 5 <= len(data):
            if startup:  # SSLRequest / GSSENCRequest, then the StartupMessage: no type byte
                length = int.from_bytes(data[i : i + 4], "big")
                startup = int.from_bytes(data[i + 4 : i + 8], "big") in (80877103, 80877104)
                i += length
                continue
            kind, length = data[i : i + 1], int.from_bytes(data[i + 1 : i + 5], "big")
            body, at = data[i + 5 : i + 1 + length], position_of(i)
            i += 1 + length
            if kind == b"Q":
                found.append((at, (body.split(b"\0")[0], (None,) * 0)))
            elif kind == b"P":
                name, text, _ = body.split(b"\0", 2)
                names[name] = text
            elif kind == b"B":
                _, statement, rest = body.split(b"\0", 2)
                formats = int.from_bytes(rest[:2], "big")
                j = 2 + 2 * formats
                count, j = int.from_bytes(rest[j : j + 2], "big"), j + 2
                values: list[bytes | None] = []
                for _ in range(count):
                    size = int.from_bytes(rest[j : j + 4], "big", signed=True)
                    values.append(None if size < 0 else rest[j + 4 : j + 4 + size])
                    j += 4 + max(size, 0)
                found.append((at, (names.get(statement), tuple(values))))
    return sorted(found, key=lambda s: s[0])


def _mysql(recorder: Recorder, end: int) -> list[Statement]:
    """COM_QUERY packets of the MySQL protocol (the drivers interpolate parameters
    into the text: the text is everything)."""
    found: list[Statement] = []
    for chunks in recorder.streams(end).values():
        data, position_of = _joined(chunks)
        i = 0
        while i + 4 <= len(data):
            length, sequence = int.from_bytes(data[i : i + 3], "little"), data[i + 3]
            body, at = data[i + 4 : i + 4 + length], position_of(i)
            i += 4 + length
            if sequence == 0 and body[:1] == b"\x03":
                found.append((at, (body[1:], ())))
    return sorted(found, key=lambda s: s[0])


SQL: dict[str, Callable[[Recorder, int], list[Statement]]] = {
    "postgresql": _postgres,
    "mariadb": _mysql,
}


def _masked(data: bytes) -> bytes:
    return re.sub(rb"[0-9]+", b"#", data)


def _freeze_all(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    for store in (stores.cache, stores.sessions, stores.totp, stores.magic):
        if store is not None:
            _freeze(store, monkeypatch)


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
        _freeze_all(stores, monkeypatch)
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
            found[name] = _wire(recorder, target.name, first, second, third, fourth)
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
            _freeze_all(stores, monkeypatch)
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
                found[name] = _wire(recorder, target.name, first, second, third, fourth)
        finally:
            await raw.close()
            await close_stores(stores)
        return found

    return asyncio.run(body())


@pytest.mark.parametrize("recorded", ["redis", "memcached", "postgres", "mariadb"], indirect=True)
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
        # the replay repeats its capture (which may open the raw driver's connection first,
        # and ends with two replays checking whether its writes still apply)
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
    print(f"  e.g. {_replayed(target)[-1]}: {wire[_replayed(target)[-1]][1][:300]!r}")
