"""The four contracts' operations on Redis, written once for the sync and async runners.

A single-record operation is one command or one Lua script (atomic, one round
trip); scripts read the server's clock. Keys an operation touches together share
a hash tag, so every script runs on Redis Cluster too: a cache entry is its own
key, one user's TOTP state sits under that user's tag. Sessions and magic links have
two layouts (the URL's ``layout``): ``namespace`` keeps those of a namespace under the
namespace's tag (one slot); ``spread`` keeps a user's under its bucket's tag, one of
``routing.BUCKETS`` spread evenly over the slots, and finds a record by token through
the bucket its hash names (``routing``). Either way a lookup by token reaches the
user's other sessions (``max_sessions``, ``revoke_all``) in the same atomic step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from authstore.adapters.common.logic import LIMITER_KINDS
from authstore.adapters.common.ops import (
    FixedWindowState,
    GcraState,
    LinkDraft,
    Op,
    SessionDraft,
    SlidingWindowState,
    security_write,
)
from authstore.adapters.common.ratelimit import EPSILON, limiter_state
from authstore.adapters.redis.commands import Batch, Call, Script, lua
from authstore.adapters.redis.routing import (
    TAGS,
    Routing,
    hash_bucket,
    id_bucket,
    user_bucket,
)
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import (
    MagicLinkRecord,
    RateLimitAlgorithm,
    SessionRecord,
    TotpState,
    from_epoch,
)

__all__ = [
    "LAYOUTS",
    "Layout",
    "RedisCacheOps",
    "RedisMagicLinkOps",
    "RedisSessionOps",
    "RedisTotpOps",
    "milliseconds",
]

MICRO = 1_000_000
"""Scripts reply times in whole microseconds (a Lua number reply becomes an integer)."""
NONE = ""
"""Stands for None in script arguments: every optional text authstore stores is non-empty."""


def milliseconds(ttl: float | None) -> str:
    """A TTL for PX / PEXPIRE: whole milliseconds, never shorter than asked (at least 1)."""
    if ttl is None:
        return NONE
    return str(max(1, math.ceil(round(ttl * 1000, 6))))


def _text(value: Any) -> str | None:
    return None if value is None else bytes(value).decode("utf-8")


def _epoch(value: Any) -> float:
    return float(value)


def _optional(value: str | None) -> str:
    return NONE if value is None else value


class _Health:
    """The ping every Redis store shares (one PING on the store's client)."""

    def ping(self) -> Op[None]:
        yield Call(("PING",))


class RedisCacheOps(_Health):
    """Keys arrive namespaced (``namespace:kind:key``) and are used as they are."""

    def __repr__(self) -> str:
        return "<RedisCacheOps>"

    def get(self, key: str) -> Op[bytes | None]:
        raw: bytes | None = yield Call(("GET", key))
        return raw

    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]:
        found: list[bytes | None] = yield Batch(tuple(Call(("GET", key)) for key in keys))
        return {key: raw for key, raw in zip(keys, found, strict=True) if raw is not None}

    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]:
        yield Call(_set(key, value, ttl))

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Op[None]:
        yield Batch(tuple(Call(_set(key, value, ttl)) for key, value in items.items()))

    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]:
        written = yield Call((*_set(key, value, ttl), "NX"))
        return written is not None

    def delete(self, key: str) -> Op[bool]:
        deleted: int = yield Call(("DEL", key))
        return deleted > 0

    def delete_many(self, keys: list[str]) -> Op[int]:
        deleted: list[int] = yield Batch(tuple(Call(("DEL", key)) for key in keys))
        return sum(deleted)

    def exists(self, key: str) -> Op[bool]:
        found: int = yield Call(("EXISTS", key))
        return found > 0

    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        value = yield Script(lua("incr"), (key,), (str(delta), milliseconds(ttl)))
        if value is None:
            raise ValueError("the cached value is not an integer, or adding delta leaves 64 bits")
        return int(value)

    def expire(self, key: str, ttl: float | None) -> Op[bool]:
        applied: int = yield Script(lua("expire"), (key,), (milliseconds(ttl),))
        return applied == 1

    def ttl(self, key: str) -> Op[float | None]:
        remaining: int = yield Call(("PTTL", key))
        if remaining == -2:
            return None
        return math.inf if remaining == -1 else remaining / 1000

    @security_write
    def raise_to(self, key: str, at: float | None, ttl: float | None) -> Op[float]:
        at_text = NONE if at is None else repr(at)
        stored = yield Script(lua("raise_to"), (key,), (at_text, milliseconds(ttl)))
        return float(stored)

    def read_epoch(self, key: str) -> Op[float | None]:
        raw = yield Call(("GET", key))
        return None if raw is None else float(raw)

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        reply = yield Script(lua("fixed_window"), (key,), (limit, milliseconds(window), cost))
        allowed, count, left = reply
        # the window's end relative to the server's now: its key's time to live
        return allowed == 1, int(count), left / 1000, 0.0

    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]:
        slack = repr(limit * (1 + EPSILON))
        reply = yield Script(lua("sliding_window"), (key,), (slack, repr(window), cost))
        allowed, previous, current, start, now = reply
        return allowed == 1, int(previous), int(current), start / MICRO, now / MICRO

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        slack = repr(window * (1 + EPSILON))
        reply = yield Script(lua("gcra"), (key,), (limit, repr(window), cost, slack))
        allowed, anchor, units, now = reply
        return allowed == 1, anchor / MICRO, int(units), now / MICRO

    def read_limiter(
        self, key: str, algorithm: RateLimitAlgorithm
    ) -> Op[tuple[tuple[Any, ...] | None, float]]:
        reply = yield Script(lua("limiter_read"), (key,), (LIMITER_KINDS[algorithm],))
        if reply[0] == 0:
            return None, 0.0  # no state: what a hit would see does not depend on the clock
        if algorithm is RateLimitAlgorithm.FIXED_WINDOW:
            # the window's end relative to the server's now, as fixed_window gives it
            return (int(reply[1]), reply[2] / 1000), 0.0
        return limiter_state(algorithm, reply[1:-1]), reply[-1] / MICRO

    def read_record(self, key: str, writing: bool = True) -> Op[tuple[bytes | None, object, float]]:
        body, now = yield Script(lua("record_read"), (key,), ())
        return body, body, now / MICRO

    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> Op[bool]:
        expected = (b"0", b"") if token is None else (b"1", bytes(token))  # type: ignore[call-overload]
        written = yield Script(lua("record_replace"), (key,), (*expected, body, milliseconds(ttl)))
        return bool(written == 1)

    def purge_expired(self) -> Op[int]:
        """Redis expires every cache entry and limiter itself: nothing is left to purge."""
        return 0
        yield  # pragma: no cover - makes this a generator function


def _set(key: str, value: bytes, ttl: float | None) -> tuple[str | bytes, ...]:
    if ttl is None:
        return ("SET", key, value)
    return ("SET", key, value, "PX", milliseconds(ttl))


# --- sessions ---------------------------------------------------------------------------


def _session(row: Sequence[Any]) -> SessionRecord:
    public_id, user, created, seen, expires, device, app, ip, agent, meta = row
    return SessionRecord(
        id=bytes(public_id).decode(),
        user_id=bytes(user).decode(),
        created_at=from_epoch(_epoch(created)),
        last_seen_at=from_epoch(_epoch(seen)),
        expires_at=from_epoch(_epoch(expires)),
        device_id=_text(device),
        application_id=_text(app),
        ip_address=_text(ip),
        user_agent=_text(agent),
        metadata=json.loads(meta),
    )


Layout = Literal["namespace", "spread"]
LAYOUTS: tuple[Layout, ...] = ("namespace", "spread")


def _redirect(reply: Any) -> int | None:
    """The bucket a script sent the op to (its reply ``[bucket]``), else None."""
    if type(reply) is list and len(reply) == 1 and type(reply[0]) is int:
        return reply[0]
    return None


class _TaggedOps(_Health):
    """Ops whose keys sit under one hash tag per namespace and store kind (layout
    ``namespace``), or under one per bucket of users (layout ``spread``)."""

    kind = what = claim = ""

    def __init__(self, namespace: str, layout: Layout = "namespace") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.namespace = namespace
        self.layout = layout
        self.spread = layout == "spread"
        if self.spread:
            self.prefixes = tuple(f"{namespace}:{self.kind}:{{{tag}}}:" for tag in TAGS)
        else:
            self.prefixes = (f"{{{namespace}:{self.kind}}}:",)
        self.prefix = self.prefixes[0]
        self._anchors = tuple(prefix + "seq" for prefix in self.prefixes)
        """Name each tag's slot for a script whose keys are built inside it."""
        self.routing: Routing | None = Routing() if self.spread else None
        """What the logic mints tokens and public ids with (spread layout only)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self.namespace!r} layout={self.layout}>"

    def _hash_bucket(self, token_hash: str) -> int:
        return hash_bucket(token_hash) if self.spread else 0

    def _user_bucket(self, user_id: str) -> int:
        return user_bucket(user_id) if self.spread else 0

    def _id_bucket(self, public_id: str) -> int:
        return id_bucket(public_id) if self.spread else 0

    def _script(self, bucket: int, name: str, *args: str | bytes | int) -> Script:
        return Script(lua(name), (self._anchors[bucket],), (self.prefixes[bucket], *args))

    def _found(self, bucket: int, name: str, *args: str | bytes | int) -> Op[Any]:
        """Run script ``name`` in ``bucket``, then, when it answers that the record lives
        in another bucket (a pointer: the spread layout, a token authstore did not
        mint), there: one more round trip. None when the pointer leads nowhere."""
        reply = yield self._script(bucket, name, *args)
        target = _redirect(reply)
        if target is None:
            return reply
        if target == bucket or not 0 <= target < len(self.prefixes):
            return None  # a pointer authstore never writes
        reply = yield self._script(target, name, *args)
        return None if _redirect(reply) is not None else reply

    def _claim(self, token_hash: str, user_id: str, ttl: float) -> Op[int]:
        """The bucket of a new record of ``user_id``; in the spread layout, when the
        hash falls in another bucket, the hash claimed there first (one more round
        trip): a pointer to the user's bucket. Raises TokenInUseError when taken."""
        bucket = self._user_bucket(user_id)
        home = self._hash_bucket(token_hash)
        if home == bucket:
            return bucket
        stale, lifetime = NONE, repr(ttl)
        for _ in range(3):
            reply = yield self._script(home, self.claim, token_hash, str(bucket), lifetime, stale)
            if reply == 1:
                return bucket
            elsewhere = _redirect(reply)
            if elsewhere is None or not 0 <= elsewhere < len(self.prefixes):
                break
            # a pointer past its record's expiry: replace it unless the record is still there
            held = yield self._script(elsewhere, self.claim, token_hash, NONE, lifetime, NONE)
            if held == 1:
                break
            stale = str(elsewhere)
        raise TokenInUseError(f"a {self.what} that has not expired holds this token")


class RedisSessionOps(_TaggedOps):
    kind, what, claim = "sessions", "session", "session_claim"

    @security_write
    def create(self, draft: SessionDraft, max_sessions: int | None) -> Op[SessionRecord]:
        bucket = yield from self._claim(draft.token_hash, draft.user_id, draft.ttl)
        row = yield self._script(
            bucket,
            "session_create",
            draft.token_hash,
            draft.session_id,
            draft.user_id,
            repr(draft.ttl),
            NONE if max_sessions is None else str(max_sessions),
            _optional(draft.device_id),
            _optional(draft.application_id),
            _optional(draft.ip_address),
            _optional(draft.user_agent),
            draft.metadata,
        )
        if row is None:
            raise TokenInUseError("a session that has not expired holds this token")
        return _session(row)

    def get(self, token_hash: str) -> Op[SessionRecord | None]:
        row = yield from self._found(self._hash_bucket(token_hash), "session_get", token_hash)
        return None if row is None else _session(row)

    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]:
        ttl_text = NONE if ttl is None else repr(ttl)
        bucket = self._hash_bucket(token_hash)
        row = yield from self._found(bucket, "session_touch", token_hash, ttl_text)
        return None if row is None else _session(row)

    @security_write
    def revoke(self, token_hash: str) -> Op[bool]:
        bucket = self._hash_bucket(token_hash)
        revoked = yield from self._found(bucket, "session_revoke", token_hash, NONE, NONE)
        return bool(revoked == 1)

    @security_write
    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]:
        if user_id is None:
            bucket = self._id_bucket(session_id)
            revoked = yield from self._found(bucket, "session_revoke", NONE, session_id, NONE)
        else:
            bucket = self._user_bucket(user_id)
            revoked = yield self._script(bucket, "session_revoke", NONE, session_id, user_id)
        return bool(revoked == 1)

    @security_write
    def revoke_all(self, user_id: str, except_hash: str | None, except_id: str | None) -> Op[int]:
        revoked: int = yield self._script(
            self._user_bucket(user_id),
            "session_revoke_all",
            user_id,
            _optional(except_hash),
            _optional(except_id),
        )
        return revoked

    def list(self, user_id: str) -> Op[list[SessionRecord]]:
        rows = yield self._script(self._user_bucket(user_id), "session_list", user_id, "list")
        return [_session(row) for row in rows]

    def count(self, user_id: str) -> Op[int]:
        found: int = yield self._script(
            self._user_bucket(user_id), "session_list", user_id, "count"
        )
        return found

    def purge_expired(self) -> Op[int]:
        """Sessions expire by themselves in Redis; indexes are pruned by every script
        that reads them and expire with their last session."""
        return 0
        yield  # pragma: no cover - makes this a generator function


# --- TOTP -------------------------------------------------------------------------------


class RedisTotpOps(_Health):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<RedisTotpOps namespace={self.namespace!r}>"

    def _keys(self, user_id: str) -> tuple[str, str, str]:
        tag = f"{{{self.namespace}:totp:{user_id}}}"
        return f"{tag}:s", f"{tag}:c", f"{tag}:o"

    def _script(self, name: str, user_id: str, *args: str | bytes) -> Script:
        return Script(lua(name), self._keys(user_id), args)

    def save_pending(self, user_id: str, secret: bytes) -> Op[None]:
        yield self._script("totp_save_pending", user_id, secret)

    @security_write
    def enable(self, user_id: str) -> Op[bool]:
        enabled: int = yield self._script("totp_enable", user_id)
        return enabled == 1

    @security_write
    def disable(self, user_id: str) -> Op[bool]:
        existed: int = yield self._script("totp_disable", user_id)
        return existed == 1

    def load(self, user_id: str) -> Op[TotpState | None]:
        row = yield self._script("totp_load", user_id)
        if row is None:
            return None
        enabled, secret, pending, last_step, created, updated, enabled_at, codes, hashes = row
        return TotpState(
            user_id=user_id,
            enabled=enabled == b"1",
            secret=None if secret is None else bytes(secret),
            pending_secret=None if pending is None else bytes(pending),
            last_step=None if last_step is None else int(last_step),
            backup_codes_left=int(codes),
            created_at=from_epoch(_epoch(created)),
            updated_at=from_epoch(_epoch(updated)),
            enabled_at=None if enabled_at is None else from_epoch(_epoch(enabled_at)),
            backup_code_hashes=tuple(bytes(code).decode() for code in hashes),
        )

    @security_write
    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]:
        yield self._script("totp_replace_codes", user_id, *code_hashes)

    @security_write
    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        # One SREM: among concurrent callers only one removes the member.
        removed: int = yield Call(("SREM", self._keys(user_id)[1], code_hash))
        return removed == 1

    @security_write
    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        claimed: int = yield self._script("totp_claim_step", user_id, str(step))
        return claimed == 1


# --- magic links ------------------------------------------------------------------------


def _link(row: Sequence[Any]) -> MagicLinkRecord:
    public_id, user, email, created, expires, app, ip, agent, consumed = row
    return MagicLinkRecord(
        id=bytes(public_id).decode(),
        user_id=bytes(user).decode(),
        email=bytes(email).decode(),
        created_at=from_epoch(_epoch(created)),
        expires_at=from_epoch(_epoch(expires)),
        application_id=_text(app),
        ip_address=_text(ip),
        user_agent=_text(agent),
        consumed_at=None if consumed is None else from_epoch(_epoch(consumed)),
    )


class RedisMagicLinkOps(_TaggedOps):
    kind, what, claim = "links", "magic link", "link_claim"

    @security_write
    def issue(self, draft: LinkDraft, revoke_previous: bool) -> Op[MagicLinkRecord]:
        bucket = yield from self._claim(draft.token_hash, draft.user_id, draft.ttl)
        row = yield self._script(
            bucket,
            "link_issue",
            draft.token_hash,
            draft.link_id,
            draft.user_id,
            draft.email,
            repr(draft.ttl),
            _optional(draft.application_id),
            _optional(draft.ip_address),
            _optional(draft.user_agent),
            "1" if revoke_previous else "0",
        )
        if row is None:
            raise TokenInUseError("a magic link that has not expired holds this token")
        return _link(row)

    def peek(self, token_hash: str) -> Op[MagicLinkRecord | None]:
        row = yield from self._found(self._hash_bucket(token_hash), "link_peek", token_hash)
        return None if row is None else _link(row)

    @security_write
    def consume(self, token_hash: str, application_id: str | None) -> Op[MagicLinkRecord | None]:
        bucket, app = self._hash_bucket(token_hash), _optional(application_id)
        row = yield from self._found(bucket, "link_consume", token_hash, app)
        return None if row is None else _link(row)

    @security_write
    def revoke_user(self, user_id: str) -> Op[int]:
        revoked: int = yield self._script(self._user_bucket(user_id), "link_revoke_user", user_id)
        return revoked

    def purge_expired(self) -> Op[int]:
        """Links expire by themselves in Redis (a consumed one at its own expiry)."""
        return 0
        yield  # pragma: no cover - makes this a generator function
