"""The memory backend's operations: plain Python under the runner's lock, no I/O.

Expired entries are reclaimed by a heap sweep on writes, so memory stays bounded
even for keys written once and never read again. ``max_entries`` bounds plain
cache values; security state (blacklist, revocations, limiters, sessions) is
never evicted to make room: a full store refuses with StoreFullError instead.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from heapq import heappush
from typing import Any, Generic, TypeVar

from authstore.adapters.common import ratelimit
from authstore.adapters.common.ops import (
    FixedWindowState,
    GcraState,
    LinkDraft,
    Op,
    SessionDraft,
    SlidingWindowState,
    immediate,
)
from authstore.contracts.errors import StoreFullError, TokenInUseError
from authstore.contracts.records import (
    MagicLinkRecord,
    SessionRecord,
    TotpState,
    from_epoch,
)
from authstore.contracts.values import decode_json

__all__ = [
    "MemoryCacheOps",
    "MemoryData",
    "MemoryMagicLinkOps",
    "MemorySessionOps",
    "MemoryTotpOps",
]

Clock = Callable[[], float]
SWEEP_BATCH = 256
K = TypeVar("K", bound=Hashable)


class Sweeper(Generic[K]):
    """A heap of (expiry, key); stale items are skipped, the heap is rebuilt when mostly stale."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, K]] = []

    def schedule(self, key: K, expires_at: float | None) -> None:
        if expires_at is not None:
            heappush(self.heap, (expires_at, key))

    def due(self, now: float, limit: int = SWEEP_BATCH) -> list[tuple[float, K]]:
        found: list[tuple[float, K]] = []
        while self.heap and self.heap[0][0] <= now and len(found) < limit:
            found.append(heapq.heappop(self.heap))
        return found

    def compact(self, live: dict[K, float]) -> None:
        if len(self.heap) > 2 * len(live) + 1024:
            self.heap = [(at, key) for key, at in live.items()]
            heapq.heapify(self.heap)

    def rebuild_if_stale(self, live: int, items: Callable[[], list[tuple[float, K]]]) -> None:
        """Rebuild from ``items`` (the live due times) once the heap is mostly stale."""
        if len(self.heap) > 2 * live + 1024:
            self.heap = items()
            heapq.heapify(self.heap)

    def __len__(self) -> int:
        return len(self.heap)


class Entry:
    """A cache entry. ``swept_at`` is when its sweep is due: the time of its one live item
    in the sweeper's heap, at or before ``expires_at`` (None when it has no item)."""

    __slots__ = ("expires_at", "swept_at", "value")

    def __init__(self, value: Any, expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at
        self.swept_at: float | None = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass
class TotpRow:
    secret: bytes | None = None
    pending: bytes | None = None
    enabled: bool = False
    enabled_at: float | None = None
    last_step: int | None = None
    codes: dict[str, None] = field(default_factory=dict)  # a set in the order given
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class LinkRow:
    record: MagicLinkRecord
    expires: float
    used: bool = False


@dataclass
class SessionRow:
    record: SessionRecord
    order: tuple[float, int]
    expires: float


class MemoryData:
    """Everything one memory store holds; ``memory://NAME`` shares one per name in a process."""

    def __init__(self, max_entries: int | None = None, clock: Clock = time.time) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.values: OrderedDict[str, Entry] = OrderedDict()  # plain cache values, LRU order
        self.guarded: dict[str, Entry] = {}  # security state: never evicted
        self.cache_sweeper: Sweeper[str] = Sweeper()
        self.sessions: dict[tuple[str, str], SessionRow] = {}
        # The expiries of revoked sessions' and links' token hashes: a revoked record's
        # hash stays taken until the record would have expired (TokenInUseError).
        self.revoked_sessions: dict[tuple[str, str], float] = {}
        self.revoked_links: dict[tuple[str, str], float] = {}
        self.session_ids: dict[tuple[str, str], str] = {}
        self.user_sessions: dict[tuple[str, str], set[str]] = {}
        self.session_sweeper: Sweeper[tuple[str, str]] = Sweeper()
        self.sequence = itertools.count()
        self.totp: dict[tuple[str, str], TotpRow] = {}
        self.links: dict[tuple[str, str], LinkRow] = {}
        self.user_links: dict[tuple[str, str], set[str]] = {}
        self.link_sweeper: Sweeper[tuple[str, str]] = Sweeper()


def _is_plain_value(key: str) -> bool:
    """Full keys are ``namespace:kind:key`` and namespaces hold no ':'."""
    start = key.index(":") + 1
    return key[start : start + 2] == "k:"


class _Health:
    """Memory stores have no backend to reach: a ping only checks the store is open."""

    def ping(self) -> Op[None]:
        return None
        yield  # pragma: no cover - makes this a generator function


class MemoryCacheOps(_Health):
    """Operations written as generators that return without yielding (no I/O): one
    frame per operation, where ``@immediate`` would add a wrapping one."""

    def __init__(self, data: MemoryData) -> None:
        self.data = data

    # -- entry access -------------------------------------------------------------

    def _table(self, key: str) -> dict[str, Entry]:
        return self.data.values if _is_plain_value(key) else self.data.guarded

    def _find(self, key: str, now: float) -> Entry | None:
        # A key lives in one table only (its kind decides): two dict probes cost less
        # than parsing the kind out of the key.
        data = self.data
        table: dict[str, Entry] = data.values
        entry = table.get(key)
        if entry is None:
            table = data.guarded
            entry = table.get(key)
            if entry is None:
                return None
        elif data.max_entries is not None:
            data.values.move_to_end(key)
        expires_at = entry.expires_at
        if expires_at is not None and expires_at <= now:
            del table[key]
            return None
        return entry

    def _store(self, key: str, value: Any, expires_at: float | None, now: float) -> None:
        data = self.data
        heap = data.cache_sweeper.heap
        if heap and heap[0][0] <= now:
            self._sweep(now)
        entry = data.values.get(key) or data.guarded.get(key)
        if entry is None:
            if data.max_entries is not None:
                self._make_room(now)
            entry = self._table(key)[key] = Entry(value, expires_at)
        else:
            entry.value = value
            entry.expires_at = expires_at
            if data.max_entries is not None and key in data.values:
                data.values.move_to_end(key)
        if expires_at is not None and (entry.swept_at is None or entry.swept_at > expires_at):
            self._schedule(key, entry, expires_at)

    def _put(
        self, key: str, entry: Entry | None, value: Any, expires_at: float, now: float
    ) -> None:
        """Write limiter state: in place when the live entry keeps its expiry (nothing to
        sweep anew), else through ``_store``."""
        if entry is not None and entry.expires_at == expires_at:
            entry.value = value
        else:
            self._store(key, value, expires_at, now)

    def _schedule(self, key: str, entry: Entry, expires_at: float) -> None:
        """Make sure the entry is swept by ``expires_at``. An expiry moved later (each set of
        a key with a TTL, each limiter hit) keeps the earlier item: the sweep then finds the
        entry alive and reschedules it once, instead of a heap push per write."""
        if entry.swept_at is not None and entry.swept_at <= expires_at:
            return
        entry.swept_at = expires_at
        data = self.data
        heap = data.cache_sweeper.heap
        heappush(heap, (expires_at, key))
        if len(heap) > 2 * (len(data.values) + len(data.guarded)) + 1024:
            items = []
            for table in (data.values, data.guarded):
                for name, live in table.items():
                    live.swept_at = live.expires_at
                    if live.expires_at is not None:
                        items.append((live.expires_at, name))
            heapq.heapify(items)
            data.cache_sweeper.heap = items

    def _make_room(self, now: float) -> None:
        cap = self.data.max_entries
        if cap is None or len(self.data.values) + len(self.data.guarded) < cap:
            return
        if self.data.values:
            self.data.values.popitem(last=False)
            return
        raise StoreFullError(
            f"memory store is full ({cap} entries of security state); raise max_entries"
        )

    def _sweep(self, now: float) -> None:
        values, guarded = self.data.values, self.data.guarded
        for at, key in self.data.cache_sweeper.due(now):
            table = values if key in values else guarded
            entry = table.get(key)
            if entry is None or entry.swept_at != at:
                continue  # a stale item: the key was dropped, or is due at another time
            expires_at = entry.expires_at
            if expires_at is not None and expires_at <= now:
                del table[key]
            else:  # its expiry moved later (or went) since: due then
                entry.swept_at = None
                if expires_at is not None:
                    self._schedule(key, entry, expires_at)

    @staticmethod
    def _expiry(now: float, ttl: float | None) -> float | None:
        return None if ttl is None else now + ttl

    # -- key/value ----------------------------------------------------------------

    def get(self, key: str) -> Op[bytes | None]:
        data = self.data
        entry = data.values.get(key)  # a plain value: _find's first probe, inline
        if entry is not None and data.max_entries is None:
            expires_at = entry.expires_at
            if expires_at is None or expires_at > data.clock():
                return entry.value  # type: ignore[no-any-return]
        entry = self._find(key, data.clock())
        return None if entry is None else entry.value
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        now = self.data.clock()
        found = {key: self._find(key, now) for key in keys}
        return {key: entry.value for key, entry in found.items() if entry is not None}

    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]:
        now = self.data.clock()
        self._store(key, value, None if ttl is None else now + ttl, now)
        return
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def set_many(self, items: dict[str, bytes], ttl: float | None) -> None:
        now = self.data.clock()
        for key, value in items.items():
            self._store(key, value, self._expiry(now, ttl), now)

    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]:
        now = self.data.clock()
        if self._find(key, now) is not None:
            return False
        self._store(key, value, None if ttl is None else now + ttl, now)
        return True
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    def delete(self, key: str) -> Op[bool]:
        entry = self._find(key, self.data.clock())
        if entry is not None:
            del self._table(key)[key]
        return entry is not None
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def delete_many(self, keys: list[str]) -> int:
        now = self.data.clock()
        deleted = 0
        for key in keys:
            if self._find(key, now) is not None:
                del self._table(key)[key]
                deleted += 1
        return deleted

    def exists(self, key: str) -> Op[bool]:
        # every token check asks this (is_blacklisted): a miss costs two probes, a live
        # entry without LRU bookkeeping is answered inline
        data = self.data
        entry = data.values.get(key) or data.guarded.get(key)
        if entry is None:
            return False
        if data.max_entries is None and (
            entry.expires_at is None or entry.expires_at > data.clock()
        ):
            return True
        return self._find(key, data.clock()) is not None
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        now = self.data.clock()
        entry = self._find(key, now)
        if entry is None:
            self._store(key, str(delta).encode(), None if ttl is None else now + ttl, now)
            return delta
        current = _integer(entry.value)
        if current is None or not INT64_MIN <= current + delta <= INT64_MAX:
            raise ValueError("the cached value is not an integer, or adding delta leaves 64 bits")
        entry.value = str(current + delta).encode()
        return current + delta
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def expire(self, key: str, ttl: float | None) -> bool:
        now = self.data.clock()
        entry = self._find(key, now)
        if entry is None:
            return False
        entry.expires_at = self._expiry(now, ttl)
        if entry.expires_at is not None:
            self._schedule(key, entry, entry.expires_at)
        return True

    def ttl(self, key: str) -> Op[float | None]:
        now = self.data.clock()
        entry = self._find(key, now)
        if entry is None:
            return None
        return math.inf if entry.expires_at is None else entry.expires_at - now
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def raise_to(self, key: str, at: float | None, ttl: float | None) -> float:
        now = self.data.clock()
        instant = now if at is None else at
        expires_at = self._expiry(now, ttl)
        entry = self._find(key, now)
        if entry is not None:
            # Never move the instant back, nor let a later call end the revocation sooner.
            instant = max(instant, float(entry.value))
            if expires_at is not None and (
                entry.expires_at is None or entry.expires_at > expires_at
            ):
                expires_at = entry.expires_at
        self._store(key, instant, expires_at, now)
        return instant

    @immediate
    def read_epoch(self, key: str) -> float | None:
        entry = self._find(key, self.data.clock())
        return None if entry is None else float(entry.value)

    # -- rate limits: the reference transitions, under the runner's lock --------------

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        now = self.data.clock()
        entry = self._find(key, now)
        allowed, count, end = ratelimit.step_fixed_window(
            None if entry is None else entry.value, now, limit, window, cost
        )
        self._put(key, entry, (count, end), end, now)
        return allowed, count, end, now
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]:
        now = self.data.clock()
        entry = self._find(key, now)
        allowed, previous, current, start = ratelimit.step_sliding_window(
            None if entry is None else entry.value, now, limit, window, cost
        )
        self._put(key, entry, (previous, current, start), start + 2 * window, now)
        return allowed, previous, current, start, now
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        now = self.data.clock()
        entry = self._find(key, now)
        allowed, anchor, units = ratelimit.step_gcra(
            None if entry is None else entry.value, now, limit, window, cost
        )
        # Full again at the theoretical arrival time (now + backlog): a refused hit
        # leaves it where it was, so the entry is not rescheduled.
        self._put(key, entry, (anchor, units), anchor + units * window / limit, now)
        return allowed, anchor, units, now
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def read_limiter(self, key: str, algorithm: object) -> tuple[Any, float]:
        """The limiters above keep the reference state as it is."""
        now = self.data.clock()
        entry = self._find(key, now)
        return (None if entry is None else entry.value), now

    @immediate
    def read_record(self, key: str, writing: bool = True) -> tuple[bytes | None, object, float]:
        now = self.data.clock()
        entry = self._find(key, now)
        body = None if entry is None else entry.value
        return body, body, now

    @immediate
    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> bool:
        """Under the runner's lock nothing comes between the read and this write."""
        now = self.data.clock()
        entry = self._find(key, now)
        if (None if entry is None else entry.value) != token:
            return False
        self._store(key, body, now + ttl, now)
        return True

    @immediate
    def purge_expired(self) -> int:
        now = self.data.clock()
        purged = 0
        for table in (self.data.values, self.data.guarded):
            dead = [key for key, entry in table.items() if not entry.live(now)]
            for key in dead:
                del table[key]
            purged += len(dead)
        return purged


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
R = TypeVar("R", SessionRecord, MagicLinkRecord)


def _replaced(record: R, changes: dict[str, Any]) -> R:
    """``dataclasses.replace`` for the frozen records, without its per-call field walk
    and ``__init__``: a copy of the fields with ``changes`` (existing field names) applied."""
    fields = getattr(record, "__dict__", None)
    if fields is None:  # pragma: no cover - a record class with __slots__
        return dataclasses.replace(record, **changes)
    copy: R = object.__new__(type(record))
    copy.__dict__.update(fields, **changes)
    return copy


def _integer(raw: object) -> int | None:
    """Canonical signed 64-bit decimal text only, as Redis INCRBY and SQL BIGINT read it."""
    if type(raw) is not bytes or not raw.isascii():
        return None
    text = raw.decode()
    try:
        number = int(text)
    except ValueError:  # not decimal, or more digits than int() reads
        return None
    if str(number) != text:  # "+1", " 1", "01", "1_0", "-0" are not canonical
        return None
    return number if INT64_MIN <= number <= INT64_MAX else None


class MemorySessionOps(_Health):
    def __init__(self, data: MemoryData, namespace: str) -> None:
        self.data = data
        self.namespace = namespace

    def _live(self, token_hash: str, now: float) -> SessionRow | None:
        row = self.data.sessions.get((self.namespace, token_hash))
        if row is None:
            return None
        if row.expires <= now:
            self._drop(token_hash)
            return None
        return row

    def _drop(self, token_hash: str) -> None:
        row = self.data.sessions.pop((self.namespace, token_hash), None)
        if row is None:
            return
        self.data.session_ids.pop((self.namespace, row.record.id), None)
        owned = self.data.user_sessions.get((self.namespace, row.record.user_id))
        if owned is not None:
            owned.discard(token_hash)
            if not owned:
                del self.data.user_sessions[(self.namespace, row.record.user_id)]

    def _revoke(self, token_hash: str, now: float) -> None:
        """Drop a session, keeping its hash taken until it would have expired."""
        row = self.data.sessions.get((self.namespace, token_hash))
        if row is not None and row.expires > now:
            self.data.revoked_sessions[(self.namespace, token_hash)] = row.expires
        self._drop(token_hash)

    def _taken(self, token_hash: str, now: float) -> bool:
        """Whether a live or revoked, not yet expired, session holds the hash."""
        if self._live(token_hash, now) is not None:
            return True
        until = self.data.revoked_sessions.get((self.namespace, token_hash))
        if until is not None and until <= now:
            del self.data.revoked_sessions[(self.namespace, token_hash)]
            return False
        return until is not None

    def _sweep(self, now: float) -> None:
        for at, (namespace, token_hash) in self.data.session_sweeper.due(now):
            row = self.data.sessions.get((namespace, token_hash))
            if row is not None and row.expires == at:
                MemorySessionOps(self.data, namespace)._drop(token_hash)
            elif self.data.revoked_sessions.get((namespace, token_hash)) == at:
                del self.data.revoked_sessions[(namespace, token_hash)]

    def _compact_sweeper(self) -> None:
        """A sliding touch leaves its earlier sweep item stale: without a rebuild a
        session touched a million times would hold a million heap items."""
        data = self.data

        def items() -> list[tuple[float, tuple[str, str]]]:
            due = [(row.expires, key) for key, row in data.sessions.items()]
            return due + [(until, key) for key, until in data.revoked_sessions.items()]

        data.session_sweeper.rebuild_if_stale(
            len(data.sessions) + len(data.revoked_sessions), items
        )

    def _user_rows(self, user_id: str, now: float) -> list[tuple[str, SessionRow]]:
        hashes = list(self.data.user_sessions.get((self.namespace, user_id), ()))
        rows = [(h, self._live(h, now)) for h in hashes]
        live = [(h, row) for h, row in rows if row is not None]
        live.sort(key=lambda item: item[1].order, reverse=True)
        return live

    @immediate
    def create(self, draft: SessionDraft, max_sessions: int | None) -> SessionRecord:
        token_hash, user_id = draft.token_hash, draft.user_id
        now = self.data.clock()
        self._sweep(now)
        if self._taken(token_hash, now):
            raise TokenInUseError("a session that has not expired holds this token")
        moment, expires = from_epoch(now), now + draft.ttl
        meta = decode_json(draft.metadata)
        record = SessionRecord(
            id=draft.session_id,
            user_id=user_id,
            created_at=moment,
            last_seen_at=moment,
            expires_at=from_epoch(expires),
            device_id=draft.device_id,
            application_id=draft.application_id,
            ip_address=draft.ip_address,
            user_agent=draft.user_agent,
            metadata=meta if isinstance(meta, dict) else {},
        )
        if max_sessions is not None:
            for old_hash, _ in self._user_rows(user_id, now)[max_sessions - 1 :]:
                self._revoke(old_hash, now)
        order = (now, next(self.data.sequence))
        self.data.sessions[(self.namespace, token_hash)] = SessionRow(record, order, expires)
        self.data.session_ids[(self.namespace, draft.session_id)] = token_hash
        self.data.user_sessions.setdefault((self.namespace, user_id), set()).add(token_hash)
        self.data.session_sweeper.schedule((self.namespace, token_hash), expires)
        return record

    def get(self, token_hash: str) -> Op[SessionRecord | None]:
        row = self._live(token_hash, self.data.clock())
        return None if row is None else row.record
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]:
        now = self.data.clock()
        row = self._live(token_hash, now)
        if row is None:
            return None
        changes: dict[str, Any] = {"last_seen_at": from_epoch(now)}
        if ttl is not None:
            row.expires = now + ttl
            changes["expires_at"] = from_epoch(row.expires)
            self.data.session_sweeper.schedule((self.namespace, token_hash), row.expires)
            self._compact_sweeper()
        row.record = _replaced(row.record, changes)
        return row.record
        yield  # pragma: no cover - never reached: an operation that needs no I/O

    @immediate
    def revoke(self, token_hash: str) -> bool:
        now = self.data.clock()
        row = self._live(token_hash, now)
        if row is not None:
            self._revoke(token_hash, now)
        return row is not None

    @immediate
    def revoke_by_id(self, session_id: str, user_id: str | None) -> bool:
        token_hash = self.data.session_ids.get((self.namespace, session_id))
        if token_hash is None:
            return False
        now = self.data.clock()
        row = self._live(token_hash, now)
        if row is None or (user_id is not None and row.record.user_id != user_id):
            return False
        self._revoke(token_hash, now)
        return True

    @immediate
    def revoke_all(self, user_id: str, except_hash: str | None, except_id: str | None) -> int:
        revoked, now = 0, self.data.clock()
        for token_hash, row in self._user_rows(user_id, now):
            if token_hash != except_hash and row.record.id != except_id:
                self._revoke(token_hash, now)
                revoked += 1
        return revoked

    @immediate
    def list(self, user_id: str) -> list[SessionRecord]:
        return [row.record for _, row in self._user_rows(user_id, self.data.clock())]

    @immediate
    def count(self, user_id: str) -> int:
        return len(self._user_rows(user_id, self.data.clock()))

    @immediate
    def purge_expired(self) -> int:
        now = self.data.clock()
        dead = [
            token_hash
            for (namespace, token_hash), row in self.data.sessions.items()
            if namespace == self.namespace and row.expires <= now
        ]
        for token_hash in dead:
            self._drop(token_hash)
        for key, until in list(self.data.revoked_sessions.items()):
            if key[0] == self.namespace and until <= now:
                del self.data.revoked_sessions[key]
        return len(dead)


class MemoryTotpOps(_Health):
    def __init__(self, data: MemoryData, namespace: str) -> None:
        self.data = data
        self.namespace = namespace

    def _row(self, user_id: str) -> TotpRow | None:
        return self.data.totp.get((self.namespace, user_id))

    @immediate
    def save_pending(self, user_id: str, secret: bytes) -> None:
        now = self.data.clock()
        row = self.data.totp.setdefault(
            (self.namespace, user_id), TotpRow(created_at=now, updated_at=now)
        )
        row.pending = secret
        row.updated_at = now

    @immediate
    def enable(self, user_id: str) -> bool:
        row = self._row(user_id)
        if row is None or row.pending is None:
            return False
        now = self.data.clock()
        row.secret, row.pending, row.enabled = row.pending, None, True
        row.enabled_at = row.updated_at = now
        return True

    @immediate
    def disable(self, user_id: str) -> bool:
        return self.data.totp.pop((self.namespace, user_id), None) is not None

    @immediate
    def load(self, user_id: str) -> TotpState | None:
        row = self._row(user_id)
        if row is None:
            return None
        return TotpState(
            user_id=user_id,
            enabled=row.enabled,
            secret=row.secret,
            pending_secret=row.pending,
            last_step=row.last_step,
            backup_codes_left=len(row.codes),
            created_at=from_epoch(row.created_at),
            updated_at=from_epoch(row.updated_at),
            enabled_at=None if row.enabled_at is None else from_epoch(row.enabled_at),
            backup_code_hashes=tuple(row.codes),
        )

    @immediate
    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> None:
        row = self._row(user_id)
        if row is None:  # codes belong to a TOTP state: none without one
            return
        row.codes = dict.fromkeys(code_hashes)
        row.updated_at = self.data.clock()

    @immediate
    def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        row = self._row(user_id)
        if row is None or code_hash not in row.codes:
            return False
        del row.codes[code_hash]
        return True

    @immediate
    def claim_step(self, user_id: str, step: int) -> bool:
        row = self._row(user_id)
        if row is None or (row.last_step is not None and row.last_step >= step):
            return False
        row.last_step = step
        return True


class MemoryMagicLinkOps(_Health):
    def __init__(self, data: MemoryData, namespace: str) -> None:
        self.data = data
        self.namespace = namespace

    def _usable(self, token_hash: str, now: float) -> LinkRow | None:
        row = self.data.links.get((self.namespace, token_hash))
        if row is None or row.used or row.expires <= now:
            return None
        return row

    def _drop(self, token_hash: str, now: float | None = None) -> None:
        """Forget a link; with ``now``, its hash stays taken until its expiry."""
        row = self.data.links.pop((self.namespace, token_hash), None)
        if row is not None and now is not None and row.expires > now:
            self.data.revoked_links[(self.namespace, token_hash)] = row.expires
        if row is not None:
            owned = self.data.user_links.get((self.namespace, row.record.user_id))
            if owned is not None:
                owned.discard(token_hash)
                if not owned:
                    del self.data.user_links[(self.namespace, row.record.user_id)]

    def _revoke_user(self, user_id: str, now: float) -> int:
        hashes = list(self.data.user_links.get((self.namespace, user_id), ()))
        usable = [h for h in hashes if self._usable(h, now) is not None]
        for token_hash in hashes:
            self._drop(token_hash, now)
        return len(usable)

    def _taken(self, token_hash: str, now: float) -> bool:
        """Whether a link (used, revoked or not) that has not expired holds the hash."""
        key = (self.namespace, token_hash)
        row = self.data.links.get(key)
        if row is not None:
            if row.expires > now:
                return True
            self._drop(token_hash)
        until = self.data.revoked_links.get(key)
        if until is not None and until <= now:
            del self.data.revoked_links[key]
            return False
        return until is not None

    @immediate
    def issue(self, draft: LinkDraft, revoke_previous: bool) -> MagicLinkRecord:
        token_hash, user_id = draft.token_hash, draft.user_id
        now = self.data.clock()
        for at, (namespace, old_hash) in self.data.link_sweeper.due(now):
            old = self.data.links.get((namespace, old_hash))
            if old is not None and old.expires == at:
                MemoryMagicLinkOps(self.data, namespace)._drop(old_hash)
            elif self.data.revoked_links.get((namespace, old_hash)) == at:
                del self.data.revoked_links[(namespace, old_hash)]
        if self._taken(token_hash, now):
            raise TokenInUseError("a magic link that has not expired holds this token")
        # The record first: anything that can fail does so before a previous link is revoked.
        expires = now + draft.ttl
        record = MagicLinkRecord(
            id=draft.link_id,
            user_id=user_id,
            email=draft.email,
            created_at=from_epoch(now),
            expires_at=from_epoch(expires),
            application_id=draft.application_id,
            ip_address=draft.ip_address,
            user_agent=draft.user_agent,
        )
        if revoke_previous:
            self._revoke_user(user_id, now)
        self.data.links[(self.namespace, token_hash)] = LinkRow(record, expires)
        self.data.user_links.setdefault((self.namespace, user_id), set()).add(token_hash)
        self.data.link_sweeper.schedule((self.namespace, token_hash), expires)
        return record

    @immediate
    def peek(self, token_hash: str) -> MagicLinkRecord | None:
        row = self._usable(token_hash, self.data.clock())
        return None if row is None else row.record

    @immediate
    def consume(self, token_hash: str, application_id: str | None) -> MagicLinkRecord | None:
        now = self.data.clock()
        row = self._usable(token_hash, now)
        if row is None or row.record.application_id != application_id:
            return None
        row.used = True
        row.record = _replaced(row.record, {"consumed_at": from_epoch(now)})
        return row.record

    @immediate
    def revoke_user(self, user_id: str) -> int:
        return self._revoke_user(user_id, self.data.clock())

    @immediate
    def purge_expired(self) -> int:
        now = self.data.clock()
        dead = [
            token_hash
            for (namespace, token_hash), row in self.data.links.items()
            if namespace == self.namespace and (row.used or row.expires <= now)
        ]
        for token_hash in dead:
            self._drop(token_hash, now)  # a used link's hash stays taken until its expiry
        for key, until in list(self.data.revoked_links.items()):
            if key[0] == self.namespace and until <= now:
                del self.data.revoked_links[key]
        return len(dead)
