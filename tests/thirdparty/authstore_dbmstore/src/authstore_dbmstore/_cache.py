"""The cache store: key/value, incr, batches, three rate limiters, token revocation."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from authstore.authoring import (
    MAX_ID_BYTES,
    MAX_LIMIT,
    MAX_WINDOW,
    RateLimitAlgorithm,
    RateLimitResult,
    Value,
    blacklist_seconds,
    check_count,
    check_key,
    check_keys,
    check_text,
    check_ttl,
    decode_value,
    encode_many,
    encode_value,
    fixed_window_result,
    gcra_result,
    sliding_window_result,
    step_fixed_window,
    step_gcra,
    step_sliding_window,
)
from authstore_dbmstore._files import AsyncBase, Db, SyncBase, live

EXPIRY = struct.Struct("<d")  # a cache entry is its expiry (inf: none) then encode_value's bytes
INT64 = (-(2**63), 2**63 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIMITER_PREFIX = {
    RateLimitAlgorithm.FIXED_WINDOW: "rf:",
    RateLimitAlgorithm.SLIDING_WINDOW: "rs:",
    RateLimitAlgorithm.GCRA: "rg:",
}
PURGED_PREFIXES = ("c:", "rf:", "rs:", "rg:", "b:", "u:")


def _expiry(now: float, ttl: float | None) -> float:
    return math.inf if ttl is None else now + ttl


def _entry(db: Db, key: str) -> tuple[float, bytes] | None:
    """The live cache entry ``(expiry, encoded value)`` of ``key``, or None."""
    raw = db.raw("c:" + key)
    if raw is None or len(raw) < EXPIRY.size:
        return None
    (expires,) = EXPIRY.unpack_from(raw)
    return (expires, raw[EXPIRY.size :]) if expires > db.now else None


def _put_entry(db: Db, key: str, expires: float, encoded: bytes) -> None:
    db.put_raw("c:" + key, EXPIRY.pack(expires) + encoded)


def _check_user(user_id: object) -> str:
    return check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)


def _microseconds(at: object) -> int | None:
    """``at`` as whole microseconds since the epoch; None means "now on the store's clock"."""
    if at is None:
        return None
    if not isinstance(at, datetime):
        raise TypeError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware (naive datetimes are ambiguous)")
    return (at - EPOCH) // timedelta(microseconds=1)


class DbmCache(SyncBase):
    """Sync cache store; every method is one locked transaction on the namespace's file."""

    # Listed, not CACHE_CAPABILITIES itself: a capability authstore adds later (as it did
    # rate-limit groups and peeks) is then a skip until this backend implements it.
    capabilities = frozenset(
        {
            "kv",
            "incr",
            "batch",
            "fixed_window",
            "sliding_window",
            "gcra",
            "blacklist",
            "user_revocation",
        }
    )

    def get(self, key: str) -> Value | None:
        key = check_key(key)
        entry = self._run(lambda db: _entry(db, key))
        return None if entry is None else decode_value(entry[1])

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        key, encoded, seconds = check_key(key), encode_value(value), check_ttl(ttl)
        self._run(lambda db: _put_entry(db, key, _expiry(db.now, seconds), encoded))

    def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        key, encoded, seconds = check_key(key), encode_value(value), check_ttl(ttl)

        def add(db: Db) -> bool:
            if _entry(db, key) is not None:
                return False
            _put_entry(db, key, _expiry(db.now, seconds), encoded)
            return True

        return self._run(add)

    def delete(self, key: str) -> bool:
        key = check_key(key)

        def delete(db: Db) -> bool:
            was_live = _entry(db, key) is not None
            return db.delete("c:" + key) and was_live

        return self._run(delete)

    def exists(self, key: str) -> bool:
        key = check_key(key)
        return self._run(lambda db: _entry(db, key) is not None)

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        key = check_key(key)
        delta = check_count(delta, "delta", minimum=-(2**62), maximum=2**62)
        seconds = check_ttl(ttl)

        def incr(db: Db) -> int:
            entry = _entry(db, key)
            if entry is None:
                expires, current = _expiry(db.now, seconds), 0
            else:
                expires, stored = entry[0], decode_value(entry[1])
                if type(stored) is not int or encode_value(stored) != entry[1]:
                    raise ValueError(f"incr: the value of {key!r} is not an integer")
                current = stored
            total = current + delta
            if not INT64[0] <= total <= INT64[1]:
                raise ValueError(f"incr: {current} + {delta} is outside signed 64 bits")
            _put_entry(db, key, expires, encode_value(total))
            return total

        return self._run(incr)

    def expire(self, key: str, ttl: float | None) -> bool:
        key, seconds = check_key(key), check_ttl(ttl)

        def expire(db: Db) -> bool:
            entry = _entry(db, key)
            if entry is None:
                return False
            _put_entry(db, key, _expiry(db.now, seconds), entry[1])
            return True

        return self._run(expire)

    def ttl(self, key: str) -> float | None:
        key = check_key(key)

        def ttl(db: Db) -> float | None:
            entry = _entry(db, key)
            return None if entry is None else entry[0] - db.now

        return self._run(ttl)

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        checked = check_keys(keys)

        def get_many(db: Db) -> dict[str, bytes]:
            entries = {key: _entry(db, key) for key in checked}
            return {key: entry[1] for key, entry in entries.items() if entry is not None}

        return {key: decode_value(raw) for key, raw in self._run(get_many).items()}

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        encoded, seconds = encode_many(mapping), check_ttl(ttl)

        def set_many(db: Db) -> None:
            for key, raw in encoded.items():
                _put_entry(db, key, _expiry(db.now, seconds), raw)

        self._run(set_many)

    def delete_many(self, keys: Iterable[str]) -> int:
        checked = check_keys(keys)

        def delete_many(db: Db) -> int:
            live_keys = [key for key in checked if _entry(db, key) is not None]
            for key in checked:
                db.delete("c:" + key)
            return len(live_keys)

        return self._run(delete_many)

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult:
        key = check_key(key)
        limit = check_count(limit, "limit", maximum=MAX_LIMIT)
        span = check_ttl(window, "window", optional=False, maximum=MAX_WINDOW)
        assert span is not None  # not optional
        cost = check_count(cost, "cost", maximum=limit)
        if not isinstance(algorithm, str):
            raise TypeError(f"algorithm must be a str, got {type(algorithm).__name__}")
        kind = RateLimitAlgorithm(algorithm)
        name = LIMITER_PREFIX[kind] + key

        def hit(db: Db) -> RateLimitResult:
            stored = db.record(name)
            # A limiter's clock never runs backwards: use the later of now and the last write.
            now = max(db.now, stored["at"]) if stored is not None else db.now
            state = stored["state"] if live(stored, db.now) and stored is not None else None
            if kind is RateLimitAlgorithm.FIXED_WINDOW:
                allowed, count, end = step_fixed_window(
                    None if state is None else (state[0], state[1]), now, limit, span, cost
                )
                new_state: list[Any] = [count, end]
                expires = end
                result = fixed_window_result((allowed, count, end, now), limit, cost)
            elif kind is RateLimitAlgorithm.SLIDING_WINDOW:
                allowed, previous, current, start = step_sliding_window(
                    None if state is None else (state[0], state[1], state[2]),
                    now,
                    limit,
                    span,
                    cost,
                )
                new_state, expires = [previous, current, start], start + 2 * span
                result = sliding_window_result(
                    (allowed, previous, current, start, now), limit, span, cost
                )
            else:
                allowed, anchor, units = step_gcra(
                    None if state is None else (state[0], state[1]), now, limit, span, cost
                )
                new_state, expires = [anchor, units], anchor + units * span / limit + span
                result = gcra_result((allowed, anchor, units, now), limit, span, cost)
            db.put(name, {"state": new_state, "at": now, "exp": expires})
            return result

        return self._run(hit)

    def reset_rate_limit(self, key: str) -> None:
        key = check_key(key)

        def reset(db: Db) -> None:
            for prefix in LIMITER_PREFIX.values():
                db.delete(prefix + key)

        self._run(reset)

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        jti = check_key(jti, "jti")
        seconds = blacklist_seconds(expires_in, expires_at)
        if seconds is None:
            return  # an instant already past: nothing to revoke

        def add(db: Db) -> None:
            old = db.record("b:" + jti)
            expires = db.now + seconds
            if live(old, db.now) and old is not None:
                expires = max(expires, old["exp"])  # never shortened
            db.put("b:" + jti, {"exp": expires})

        self._run(add)

    def is_blacklisted(self, jti: str) -> bool:
        jti = check_key(jti, "jti")
        return self._run(lambda db: live(db.record("b:" + jti), db.now))

    def remove_from_blacklist(self, jti: str) -> bool:
        jti = check_key(jti, "jti")

        def remove(db: Db) -> bool:
            was_live = live(db.record("b:" + jti), db.now)
            db.delete("b:" + jti)
            return was_live

        return self._run(remove)

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        user_id = _check_user(user_id)
        given = _microseconds(at)
        seconds = check_ttl(expires_in, "expires_in")

        def revoke(db: Db) -> int:
            old = db.record("u:" + user_id)
            instant = given if given is not None else int(db.now * 1_000_000)
            expires = None if seconds is None else db.now + seconds
            if live(old, db.now) and old is not None:
                instant = max(instant, old["at_us"])  # never moved backwards
                expires = (
                    None if expires is None or old["exp"] is None else max(expires, old["exp"])
                )
            db.put("u:" + user_id, {"at_us": instant, "exp": expires})
            return instant

        return EPOCH + timedelta(microseconds=self._run(revoke))

    def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        user_id = _check_user(user_id)

        def read(db: Db) -> int | None:
            record = db.record("u:" + user_id)
            return record["at_us"] if live(record, db.now) and record is not None else None

        instant = self._run(read)
        return None if instant is None else EPOCH + timedelta(microseconds=instant)

    def purge_expired(self) -> int:
        def purge(db: Db) -> int:
            expired = []
            for name in db.names():
                if name.startswith("c:"):
                    if _entry(db, name[2:]) is None:
                        expired.append(name)
                elif name.startswith(PURGED_PREFIXES) and not live(db.record(name), db.now):
                    expired.append(name)
            for name in expired:
                db.delete(name)
            return len(expired)

        return self._run(purge)


class AsyncDbmCache(AsyncBase[DbmCache]):
    """Async cache store: the sync code on a worker thread."""

    capabilities = DbmCache.capabilities

    async def get(self, key: str) -> Value | None:
        return await self._call(self._sync.get, key)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        await self._call(self._sync.set, key, value, ttl)

    async def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        return await self._call(self._sync.add, key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self._call(self._sync.delete, key)

    async def exists(self, key: str) -> bool:
        return await self._call(self._sync.exists, key)

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return await self._call(self._sync.incr, key, delta, ttl)

    async def expire(self, key: str, ttl: float | None) -> bool:
        return await self._call(self._sync.expire, key, ttl)

    async def ttl(self, key: str) -> float | None:
        return await self._call(self._sync.ttl, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        return await self._call(self._sync.get_many, keys)

    async def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        await self._call(self._sync.set_many, mapping, ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self._call(self._sync.delete_many, keys)

    async def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult:
        return await self._call(self._sync.check_rate_limit, key, limit, window, cost, algorithm)

    async def reset_rate_limit(self, key: str) -> None:
        await self._call(self._sync.reset_rate_limit, key)

    async def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        await self._call(self._sync.add_to_blacklist, jti, expires_in, expires_at=expires_at)

    async def is_blacklisted(self, jti: str) -> bool:
        return await self._call(self._sync.is_blacklisted, jti)

    async def remove_from_blacklist(self, jti: str) -> bool:
        return await self._call(self._sync.remove_from_blacklist, jti)

    async def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        return await self._call(self._sync.revoke_user_tokens, user_id, at, expires_in)

    async def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        return await self._call(self._sync.user_tokens_revoked_at, user_id)

    async def purge_expired(self) -> int:
        return await self._call(self._sync.purge_expired)
