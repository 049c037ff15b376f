"""The memcached cache operations, written once as generators for both runners.

Each operation yields ``commands`` and receives what memcached answered. Anything
that reads and then writes does it with compare-and-set, and starts over when
another client wrote in between: ``gets`` then ``add`` (no entry yet) or ``cas``
(the entry read) for expire and add; a ``Swap`` for incr, revocations and the three
rate limiters, which run ``common/ratelimit.py``'s ``step_*`` on the entry, so a hit
is exactly that transition, applied atomically. After ``CAS_ATTEMPTS`` conflicts in
a row an operation gives up with BackendUnavailableError, having written nothing: it
never lets a hit through that it could not record.

Contention (``_update``: the rate limiters, incr, revocations): many callers of one
store writing one key would all compute on the same entry, and only one of their
writes could win; each loser, computing again on what it read back, then waited for a
pooled connection behind the others and was overtaken again (100 async callers on one
key: 8 attempts a hit on average, and some gave up after 256 or timed out). So a lost
write takes the key's turn in its store (``Turn``; ``common.turns``), and while any
operation holds or waits for it, every write of the store to that key takes it too:
they go one at a time, each computing on what the one before wrote, which wins unless
another process wrote in between. A write lost with the turn held is another
process's: it tries again at once on the entry read back, then after a random pause
(``PAUSE_FIRST`` doubling to ``PAUSE_MAX``). The wait for the turn, the pauses and the
attempts all end with the store's ``timeout`` (BackendUnavailableError, nothing
written; the async runner's deadline bounds its operations as a whole anyway).

One round trip (``Swap``): memcached has no conditional arithmetic (``ma`` neither
stops at a bound nor goes below zero, so a refused hit could not be left
uncounted), but a compare-and-set needs the entry's CAS token only, not a read in the
same operation. Each store remembers the entry (and token) it last wrote or read at
each key it updates (``KNOWN_ENTRIES`` of them), and computes the hit on it, as if it
had just read it: the ``Swap`` stores the new state only if the key still holds that
very entry (or, for a key it knows nothing of, holds nothing), and reads the key back
in the same write. Right (this store was the last to write the key, or the key is
new): one round trip. Wrong: nothing is stored, and the entry read back is the
current one, on which the next attempt computes: two round trips, as a read then a
write always took. An outcome that writes nothing (a refused hit, incr of a value
that is no integer) is never decided on a remembered entry: it is read first.

A CAS token names one write of one memcached process: memcached hands them out from
one counter, counting up, so an entry written after the remembered one always has
another token. Only a restarted memcached starts the counter again, where a token
remembered from before could, in principle, come round again on the same key (the
restart has already lost every limit and counter it held).

Time is the client's clock (``time.time``): memcached has no command that reads its
clock with sub-second precision in the same round trip, and stored expiries are
compared on reads, so all clients of one memcached must keep their clocks in sync
(NTP), as they must for the JWTs whose revocations they store.
"""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from authstore.adapters.common import ratelimit
from authstore.adapters.common.ops import (
    FixedWindowState,
    GcraState,
    Op,
    SlidingWindowState,
    immediate,
)
from authstore.adapters.common.turns import Turns
from authstore.adapters.memcached.commands import (
    CHUNK_BYTES,
    Delete,
    Entry,
    Get,
    Manifest,
    Pause,
    SetMany,
    Store,
    Swap,
    Touch,
    Turn,
    Version,
    exptime,
    is_manifest,
    memcached_key,
    pack,
    unpack,
)
from authstore.adapters.memcached.settings import DEFAULT_TIMEOUT
from authstore.adapters.memory.ops import INT64_MAX, INT64_MIN
from authstore.adapters.memory.ops import _integer as integer_value
from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.records import RateLimitAlgorithm

__all__ = ["CAS_ATTEMPTS", "KNOWN_ENTRIES", "MemcachedCacheOps"]

CAS_ATTEMPTS = 256
"""Conflicts one operation tolerates before it gives up. Every conflict is another
client's successful write, so with N clients on one key N attempts always suffice."""

_tuple_new = tuple.__new__
"""Makes an ``Entry`` without the Python frame of its generated ``__new__``."""

PAUSE_FIRST = 0.0005
PAUSE_MAX = 0.02
"""The random pause before the next but one attempt of a write that keeps losing to other
processes': up to ``PAUSE_FIRST`` seconds, doubling with each loss, up to ``PAUSE_MAX``."""

KNOWN_ENTRIES = 4096
"""Keys whose last entry a store remembers (see the module's doc); past that it forgets
them all and starts again (a forgotten key costs one more round trip, once)."""

S = TypeVar("S")
R = TypeVar("R")
Clock = Callable[[], float]
Step = Callable[[S | None, float], tuple[R, S, float]]
"""(state or None, now) -> (what the caller gets, the new state, when it expires)."""
Change = Callable[[Entry | None, float], tuple[R, "float | None", "bytes | None"]]
"""(the entry at a key or None, now) -> (what the caller gets, the new entry's expiry
and body; body None: write nothing). It may raise ValueError (the entry does not fit)."""


_DECODE: dict[RateLimitAlgorithm, Callable[[list[bytes]], Any]] = {
    algorithm: ratelimit.limiter_decoder(algorithm) for algorithm in RateLimitAlgorithm
}
"""Each limiter's stored fields (decimal text) as the state ``ratelimit.step_*`` takes."""


def _namespace(full: str) -> str:
    return full.partition(":")[0]


def _order(entry: Entry) -> int:
    """When memcached wrote the entry, as its CAS token (one counter of the server,
    counting up; bytes from a meta reply or pymemcache, an int from aiomcache)."""
    token: Any = entry.token
    return -1 if token is None else int(token)


class MemcachedCacheOps:
    def __init__(
        self,
        clock: Clock = time.time,
        chunk_bytes: int = CHUNK_BYTES,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lock_factory: Callable[[], Any] = threading.Lock,
    ) -> None:
        self.clock = clock
        self.chunk_bytes = chunk_bytes
        self.timeout = timeout
        """What contention may cost a write at most (waiting for its turn, pauses,
        attempts), from the start of its operation."""
        self._turns = Turns(lock_factory)
        """The turns of the keys this store's writes contend for (see ``_update``)."""
        self._contended = self._turns.locks
        self._known: dict[str, Entry] = {}
        """memcached key -> the entry (with its CAS token) this store last saw there."""
        self._idle: set[str] = set()
        """Keys where this store's last update wrote nothing (a refused hit): the next
        is most likely refused too, and a refusal is decided on an entry read, so it
        reads first rather than compute on the remembered entry, then read."""

    def ping(self) -> Op[None]:
        yield Version()

    # -- reading and writing entries ---------------------------------------------------

    def _fetch(self, key: str, *, cas: bool = False) -> Op[Entry | None]:
        found = yield Get((key,), cas)
        item = found.get(key)
        return None if item is None else unpack(item[0], item[1])

    def _live(self, keys: list[str]) -> Op[dict[str, Entry]]:
        """The live entries of ``keys`` (memcached keys), in one ``get``."""
        found = yield Get(tuple(keys))
        now = self.clock()
        entries = {key: unpack(raw) for key, (raw, _) in found.items()}
        return {key: entry for key, entry in entries.items() if entry.live(now)}

    def _values(self, entries: dict[str, Entry]) -> Op[dict[str, bytes]]:
        """Entry bodies, a split value joined from its chunks (one more ``get``); a
        value whose chunks memcached evicted counts as missing."""
        values = {key: entry.body for key, entry in entries.items() if not entry.chunked}
        manifests = {
            key: Manifest.decode(_namespace(key), entry.body)
            for key, entry in entries.items()
            if entry.chunked
        }
        if manifests:
            found = yield Get(tuple(k for m in manifests.values() for k in m.keys))
            for key, manifest in manifests.items():
                parts = [found.get(k) for k in manifest.keys]
                joined = b"".join(p[0] for p in parts if p is not None)
                if None not in parts and len(joined) == manifest.length:
                    values[key] = joined
        return values

    def _body(self, key: str, value: bytes, expires: int) -> Op[bytes]:
        """What to store for ``value``: itself, or a manifest once its chunks are written."""
        if len(value) <= self.chunk_bytes:
            return value
        size = self.chunk_bytes
        manifest = Manifest(
            _namespace(key), secrets.token_hex(12), -(-len(value) // size), len(value)
        )
        pieces = (value[i * size : (i + 1) * size] for i in range(manifest.pieces))
        yield SetMany(tuple(zip(manifest.keys, pieces, strict=True)), expires)
        return manifest.encode()

    def _forget(self, body: bytes, key: str) -> Op[None]:
        """Delete the chunks of a body that was never stored."""
        if is_manifest(body):
            yield Delete(Manifest.decode(_namespace(key), body).keys)

    @staticmethod
    def _attempts() -> Iterator[int]:
        return iter(range(CAS_ATTEMPTS))

    @staticmethod
    def _give_up() -> BackendUnavailableError:
        return BackendUnavailableError(
            f"memcached: {CAS_ATTEMPTS} writes in a row to one key lost to other clients "
            "(contention); nothing was written"
        )

    @staticmethod
    def _write(key: str, entry: Entry | None, value: bytes, expires: int) -> Store:
        """Store ``value`` only if the key still holds ``entry`` (None: nothing)."""
        if entry is None:
            return Store("add", key, value, expires)
        return Store("cas", key, value, expires, entry.token)

    # -- key/value ---------------------------------------------------------------------

    def get(self, key: str) -> Op[bytes | None]:
        target = memcached_key(key)
        found = yield Get((target,))
        if not found:
            return None
        entry = unpack(found[target][0])
        if not entry.live(self.clock()):
            return None
        if not entry.chunked:
            return entry.body
        values = yield from self._values({target: entry})
        return values.get(target)

    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]:
        targets = {memcached_key(key): key for key in keys}
        entries = yield from self._live(list(targets))
        values = yield from self._values(entries)
        return {targets[target]: value for target, value in values.items()}

    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]:
        return self.set_many({key: value}, ttl)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Op[None]:
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        expires = exptime(expires_at, now)
        stored = []
        for key, value in items.items():
            body = (
                value
                if len(value) <= self.chunk_bytes
                else (yield from self._body(key, value, expires))
            )
            stored.append((memcached_key(key), pack(expires_at, body)))
        if len(stored) == 1:
            yield Store("set", stored[0][0], stored[0][1], expires)
        else:
            yield SetMany(tuple(stored), expires)

    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]:
        target, now = memcached_key(key), self.clock()
        expires_at = None if ttl is None else now + ttl
        expires = exptime(expires_at, now)
        body = yield from self._body(key, value, expires)
        packed = pack(expires_at, body)
        for _ in self._attempts():
            if (yield Store("add", target, packed, expires)):
                return True
            # memcached still holds the key: it may be past its stored expiry
            entry = yield from self._fetch(target, cas=True)
            if entry is not None and entry.live(self.clock()):
                yield from self._forget(body, key)
                return False
            if entry is not None and (yield self._write(target, entry, packed, expires)):
                return True
        raise self._give_up()

    def delete(self, key: str) -> Op[bool]:
        return (yield from self.delete_many([key])) == 1

    def delete_many(self, keys: list[str]) -> Op[int]:
        # Only live entries count (and an expired one is already gone for every reader).
        live = yield from self._live([memcached_key(key) for key in keys])
        if not live:
            return 0
        for target in live:
            self._known.pop(target, None)
        deleted: int = yield Delete(tuple(live))
        return deleted

    def exists(self, key: str) -> Op[bool]:
        return bool((yield from self._live([memcached_key(key)])))

    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        def change(entry: Entry | None, now: float) -> tuple[int, float | None, bytes]:
            if entry is None or not entry.live(now):
                expires_at = None if ttl is None else now + ttl
                return delta, expires_at, str(delta).encode()
            current = integer_value(entry.body)
            if current is None or not INT64_MIN <= current + delta <= INT64_MAX:
                raise ValueError(
                    "the cached value is not an integer, or adding delta leaves 64 bits"
                )
            value = current + delta
            return value, entry.expires_at, str(value).encode()

        return self._update(memcached_key(key), change)

    def expire(self, key: str, ttl: float | None) -> Op[bool]:
        target = memcached_key(key)
        for _ in self._attempts():
            entry = yield from self._fetch(target, cas=True)
            now = self.clock()
            if entry is None or not entry.live(now):
                return False
            expires_at = None if ttl is None else now + ttl
            expires = exptime(expires_at, now)
            if entry.chunked:
                keys = Manifest.decode(_namespace(key), entry.body).keys
                if (yield Touch(keys, expires)) < len(keys):
                    return False  # memcached evicted part of the value: it is gone
            if (yield self._write(target, entry, pack(expires_at, entry.body), expires)):
                return True
        raise self._give_up()

    def ttl(self, key: str) -> Op[float | None]:
        live = yield from self._live([memcached_key(key)])
        for entry in live.values():
            return math.inf if entry.expires_at is None else entry.expires_at - self.clock()
        return None

    # -- revocations -------------------------------------------------------------------

    def raise_to(self, key: str, at: float | None, ttl: float | None) -> Op[float]:
        def change(entry: Entry | None, now: float) -> tuple[float, float | None, bytes | None]:
            instant = now if at is None else at
            expires_at = None if ttl is None else now + ttl
            if entry is not None and entry.live(now):
                # Never move the instant back, nor let a later call end the revocation sooner.
                stored = float(entry.body)
                instant = max(instant, stored)
                if expires_at is not None and (
                    entry.expires_at is None or entry.expires_at > expires_at
                ):
                    expires_at = entry.expires_at
                if instant == stored and expires_at == entry.expires_at:
                    return stored, None, None
            return instant, expires_at, repr(instant).encode()

        return self._update(memcached_key(key), change)

    def read_epoch(self, key: str) -> Op[float | None]:
        live = yield from self._live([memcached_key(key)])
        for entry in live.values():
            return float(entry.body)
        return None

    # -- rate limits: ratelimit.step_* on the entry, stored by a Swap ------------------

    def _update(self, target: str, change: Change[R]) -> Op[R]:
        """``change`` applied to the entry at ``target`` atomically (see the module's
        doc): computed on the entry this store remembers there, stored by a ``Swap``
        only if the key still holds it, else computed again on the entry read back.
        An outcome that writes nothing (or a ValueError) counts only when computed on
        an entry read in this call.

        Contention (see the module's doc): a write lost takes the key's turn in this
        store, and so does every write while another operation of this store holds or
        waits for it; a write lost with the turn held was another process's, and the
        next but one waits a random pause first. All of it within ``timeout``."""
        entry = self._known.get(target)
        verified = False  # whether ``entry`` was read in this call
        idle = reading = target in self._idle  # the last call here wrote nothing: read first
        contended = self._contended
        joined = held = False  # this call's place in the key's turns, and whether it is its turn
        lost = 0  # writes lost in a row with the turn held
        started = time.monotonic()
        try:
            for _ in range(CAS_ATTEMPTS):
                if reading:  # (what it reads is remembered once written or read back)
                    found = yield _tuple_new(Get, ((target,), True))
                    entry = unpack(*found[target]) if found else None
                    verified, reading = True, False
                now = self.clock()
                try:
                    result, expires_at, body = change(entry, now)
                except ValueError:
                    if verified:
                        raise
                    reading = True
                    continue
                if body is None:  # writes nothing: decided on an entry just read only
                    if verified:
                        if not idle:
                            self._note_idle(target)
                        return result
                    reading = True
                    continue
                if not held and target in contended:
                    # other operations of this store write the key: after them, on what
                    # they wrote
                    lock = self._turns.join(target)
                    joined = True
                    held = yield Turn(lock, self._left(started))
                    if not held:
                        raise self._late()
                    entry, verified = self._latest(target, entry, verified)
                    continue
                packed = pack(expires_at, body)
                token, current = yield Swap(
                    target,
                    packed,
                    exptime(expires_at, now),
                    None if entry is None else entry.token,
                )
                if token is not None:
                    self._note(target, _tuple_new(Entry, (expires_at, body, token)))
                    if verified:
                        self._idle.discard(target)
                    return result
                # not stored: the entry read back is the current one
                entry = None if current is None else unpack(*current)
                self._note_lost(target, entry)
                verified = True
                if not held:
                    lock = self._turns.join(target)
                    joined = True
                    held = yield Turn(lock, self._left(started))
                    if not held:
                        raise self._late()
                    entry, verified = self._latest(target, entry, verified)
                    continue
                lost += 1
                left = self._left(started)
                if left <= 0:
                    raise self._late()
                if lost > 1:
                    ceiling = min(PAUSE_MAX, PAUSE_FIRST * 2 ** min(lost - 2, 16))
                    yield Pause(min(left, ceiling * random.random()))  # noqa: S311 - a jitter
            raise self._give_up()
        finally:
            if joined:
                self._turns.leave(target, held=held)

    def _left(self, started: float) -> float:
        """Seconds left of ``timeout`` for an operation started at ``started``."""
        return self.timeout - (time.monotonic() - started)

    def _late(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"memcached: a write to one key found no turn within the timeout "
            f"({self.timeout:g} s), its writes losing to other clients' (contention); "
            "nothing was written"
        )

    def _latest(
        self, target: str, entry: Entry | None, verified: bool
    ) -> tuple[Entry | None, bool]:
        """After waiting for the key's turn: the entry this store remembers there when it
        is newer than ``entry`` (another operation wrote or read it meanwhile), else
        ``entry``; and whether the one returned was read in this call."""
        known = self._known.get(target)
        if known is None or (entry is not None and _order(entry) >= _order(known)):
            return entry, verified
        return known, False

    def _note_lost(self, target: str, entry: Entry | None) -> None:
        """Remember the entry a lost write read back, unless this store already knows a
        newer one (another operation's, as concurrent as this)."""
        known = self._known.get(target)
        if entry is None or known is None or _order(entry) > _order(known):
            self._note(target, entry)

    def _note_idle(self, target: str) -> None:
        idle = self._idle
        if len(idle) >= KNOWN_ENTRIES:
            idle.clear()
        idle.add(target)

    def _note(self, target: str, entry: Entry | None) -> None:
        known = self._known
        if entry is None:
            known.pop(target, None)
            return
        if len(known) >= KNOWN_ENTRIES and target not in known:
            known.clear()  # never iterated: other threads may write it at the same time
        known[target] = entry

    def _transition(
        self,
        key: str,
        decode: Callable[[list[bytes]], S],
        step: Step[S, R],
        encode: Callable[[S], str],
    ) -> Op[R]:
        def change(entry: Entry | None, now: float) -> tuple[R, float | None, bytes | None]:
            live = entry is not None and entry.live(now)
            state = decode(entry.body.split()) if entry is not None and live else None
            result, new_state, expires_at = step(state, now)
            if live and new_state == state:
                return result, None, None  # a refused hit: nothing to record
            return result, expires_at, encode(new_state).encode()

        return self._update(memcached_key(key), change)

    def read_limiter(
        self, key: str, algorithm: RateLimitAlgorithm
    ) -> Op[tuple[tuple[Any, ...] | None, float]]:
        live = yield from self._live([memcached_key(key)])
        now = self.clock()
        for entry in live.values():
            return _DECODE[algorithm](entry.body.split()), now
        return None, now

    def read_record(self, key: str, writing: bool = True) -> Op[tuple[bytes | None, object, float]]:
        """The token is the entry read with its CAS token (None: no entry at all)."""
        target = memcached_key(key)
        found = yield Get((target,), True)
        entry = unpack(*found[target]) if found else None
        now = self.clock()
        return (entry.body if entry is not None and entry.live(now) else None), entry, now

    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> Op[bool]:
        """``add`` where there was no entry, else ``cas`` on the one read."""
        assert token is None or isinstance(token, Entry)
        now = self.clock()
        expires_at = now + ttl
        store = self._write(
            memcached_key(key), token, pack(expires_at, body), exptime(expires_at, now)
        )
        return bool((yield store))

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        def step(
            state: tuple[int, float] | None, now: float
        ) -> tuple[FixedWindowState, tuple[int, float], float]:
            allowed, count, end = ratelimit.step_fixed_window(state, now, limit, window, cost)
            return (allowed, count, end, now), (count, end), end

        return self._transition(
            key, _DECODE[RateLimitAlgorithm.FIXED_WINDOW], step, lambda s: f"{s[0]} {s[1]!r}"
        )

    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]:
        def step(
            state: tuple[int, int, float] | None, now: float
        ) -> tuple[SlidingWindowState, tuple[int, int, float], float]:
            allowed, previous, current, start = ratelimit.step_sliding_window(
                state, now, limit, window, cost
            )
            return (
                (allowed, previous, current, start, now),
                (previous, current, start),
                (start + 2 * window),
            )

        return self._transition(
            key,
            _DECODE[RateLimitAlgorithm.SLIDING_WINDOW],
            step,
            lambda s: f"{s[0]} {s[1]} {s[2]!r}",
        )

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        def step(
            state: tuple[float, int] | None, now: float
        ) -> tuple[GcraState, tuple[float, int], float]:
            allowed, anchor, units = ratelimit.step_gcra(state, now, limit, window, cost)
            full_at = now + ratelimit.gcra_backlog(anchor, units, now, limit, window)
            return (allowed, anchor, units, now), (anchor, units), full_at

        return self._transition(
            key, _DECODE[RateLimitAlgorithm.GCRA], step, lambda s: f"{s[0]!r} {s[1]}"
        )

    @immediate
    def purge_expired(self) -> int:
        """memcached drops expired entries itself, and reads never see them."""
        return 0
