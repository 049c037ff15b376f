"""Each contract's operations, checked and encoded once for every backend.

A logic method is a generator: its checks run on the first ``next()``, before the
backend operation it delegates to yields its first command, so bad input fails
before any I/O on every backend, sync or async alike.

A logic method's signature is its contract method's (names, kinds, defaults,
annotations, with ``Op[...]`` around the answer): the sync and async store classes
in ``stores`` are made from it, so it is written here once. The annotations say what
a caller should pass; every argument is still checked, as an untyped caller may pass
anything.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from authstore.adapters.common import ratelimit
from authstore.adapters.common.ops import (
    CacheOps,
    LinkDraft,
    MagicLinkOps,
    Op,
    SessionDraft,
    SessionOps,
    TotpOps,
)
from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.records import (
    IssuedMagicLink,
    JSONValue,
    MagicLinkRecord,
    NewSession,
    RateLimitAlgorithm,
    RateLimitResult,
    SessionRecord,
    TotpState,
    Value,
    from_epoch,
)
from authstore.contracts.values import (
    MAX_BACKUP_CODES,
    MAX_CALLER_TOKEN_CHARS,
    MAX_CODE_HASH_BYTES,
    MAX_EMAIL_BYTES,
    MAX_ID_BYTES,
    MAX_IP_BYTES,
    MAX_LIMIT,
    MAX_SECRET_BYTES,
    MAX_TTL,
    MAX_USER_AGENT_BYTES,
    MAX_WINDOW,
    MIN_CALLER_TOKEN_CHARS,
    MIN_TTL,
    check_count,
    check_key,
    check_keys,
    check_metadata,
    check_namespace,
    check_optional_text,
    check_text,
    check_ttl,
    decode_value,
    encode_many,
    encode_value,
    hash_token,
    new_public_id,
    new_token,
)
from authstore.limits import Limit, LimitsLike, parse_limits

__all__ = [
    "GROUP_ATTEMPTS",
    "CacheLogic",
    "MagicLinkLogic",
    "SessionLogic",
    "TotpLogic",
    "blacklist_seconds",
    "check_caller_token",
    "check_group",
    "check_token_hash",
]

_HEX = frozenset("0123456789abcdef")

# Kinds of cache entry, so a user key never meets a blacklist entry or a limiter.
KV, BLACKLIST, USER_REVOCATION, LIMIT_GROUP = "k", "b", "u", "r"
LIMITER_KINDS = {
    RateLimitAlgorithm.FIXED_WINDOW: "f",
    RateLimitAlgorithm.SLIDING_WINDOW: "s",
    RateLimitAlgorithm.GCRA: "g",
}


FIXED, SLIDING = RateLimitAlgorithm.FIXED_WINDOW, RateLimitAlgorithm.SLIDING_WINDOW


def _id(value: object, what: str) -> str:
    return check_text(value, what, max_bytes=MAX_ID_BYTES)


def _optional_id(value: object, what: str) -> str | None:
    return check_optional_text(value, what, max_bytes=MAX_ID_BYTES)


_ALGORITHMS = {str(algorithm): algorithm for algorithm in RateLimitAlgorithm}
"""Names to members without the enum's call machinery (a str argument's common case)."""


def _algorithm(value: object) -> RateLimitAlgorithm:
    if isinstance(value, RateLimitAlgorithm):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"algorithm must be a RateLimitAlgorithm or str, not {type(value).__name__}"
        )
    member = _ALGORITHMS.get(value)
    if member is not None:
        return member
    try:
        return RateLimitAlgorithm(value)
    except ValueError:
        known = ", ".join(a.value for a in RateLimitAlgorithm)
        raise ValueError(f"unknown rate-limit algorithm {value!r}; known: {known}") from None


GROUP_ATTEMPTS = 256
"""Compare-and-set conflicts a group hit tolerates before it gives up. Every conflict
is another client's successful hit, so with N clients on one group N attempts suffice."""


def check_group(limits: object) -> tuple[Limit, ...]:
    """A group's limits in canonical order (longest window first, duplicates dropped):
    the same limits given in any order or form are one group with one record."""
    parsed = parse_limits(limits)  # type: ignore[arg-type]
    return tuple(sorted(set(parsed), key=lambda x: (-x.window, x.limit, x.algorithm)))


@functools.lru_cache(maxsize=1024)
def _group_tag(limits: tuple[Limit, ...]) -> str:
    """8 hex digits of the group's signature: with the kind and a 1024-byte key it fits
    the longest key every backend takes (SQL's 1100-byte column)."""
    signature = ratelimit.group_signature(limits).encode()
    return hashlib.sha256(signature).hexdigest()[:8]


def _epoch(at: object, what: str = "at") -> float:
    if not isinstance(at, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (naive datetimes are ambiguous)")
    return at.timestamp()


def check_algorithm(value: object) -> RateLimitAlgorithm:
    """``check_rate_limit``'s ``algorithm``: a RateLimitAlgorithm or its value as a str
    (``"fixed_window"``, ``"sliding_window"``, ``"gcra"``). TypeError for any other type
    (1, None), ValueError for an unknown name."""
    return _algorithm(value)


def check_instant(value: object, what: str = "at") -> float:
    """An aware datetime as epoch seconds (``revoke_user_tokens``' ``at``). TypeError for
    anything but a datetime (a str, a float, a date), ValueError for a naive one."""
    return _epoch(value, what)


def check_flag(value: object, what: str) -> bool:
    """A real bool (``issue``'s ``revoke_previous``): TypeError for 1, "yes" or None."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, not {type(value).__name__}")
    return value


def check_caller_token(token: object) -> tuple[str, str]:
    """A caller-supplied token and its stored hash: a str of 32 to 512 characters."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if not MIN_CALLER_TOKEN_CHARS <= len(token) <= MAX_CALLER_TOKEN_CHARS:
        raise ValueError(
            f"token must be {MIN_CALLER_TOKEN_CHARS} to {MAX_CALLER_TOKEN_CHARS} characters"
            f" (a short token is a guessable bearer secret), got {len(token)}"
        )
    return token, hash_token(token)


def _token_or_new(token: object) -> tuple[str, str]:
    return new_token() if token is None else check_caller_token(token)


def check_token_hash(value: object) -> str:
    """A token hash as ``hash_token`` makes it: SHA-256 as 64 lowercase hex characters."""
    if not isinstance(value, str):
        raise TypeError(f"token_hash must be a str, not {type(value).__name__}")
    if len(value) != 64 or not _HEX.issuperset(value):
        raise ValueError("token_hash must be a SHA-256 hex digest: 64 lowercase hex characters")
    return value


def blacklist_seconds(expires_in: object, expires_at: object) -> float | None:
    """The entry's life in seconds, or None when ``expires_at`` is already past."""
    if (expires_in is None) == (expires_at is None):
        raise TypeError("give exactly one of expires_in or expires_at")
    if expires_at is None:
        return check_ttl(expires_in, "expires_in", optional=False)
    # The caller's clock: the core checks the token's exp with it, so the entry must
    # last as long as the core believes the token lives, whatever the store's skew.
    seconds = _epoch(expires_at, "expires_at") - time.time()
    if seconds <= 0:
        return None
    if seconds > MAX_TTL:
        raise ValueError(f"expires_at must be at most {MAX_TTL} seconds from now")
    return max(seconds, MIN_TTL)


class CacheLogic:
    def __init__(self, ops: CacheOps, namespace: str) -> None:
        self.ops = ops
        self.namespace = check_namespace(namespace)
        # "{namespace}:{kind}:" built once; the hot paths add the checked key to it.
        self._prefixes = {
            kind: f"{self.namespace}:{kind}:"
            for kind in (KV, BLACKLIST, USER_REVOCATION, *LIMITER_KINDS.values())
        }
        self._kv = self._prefixes[KV]
        self._limiters = (
            self._prefixes[LIMITER_KINDS[FIXED]],
            self._prefixes[LIMITER_KINDS[SLIDING]],
            self._prefixes[LIMITER_KINDS[RateLimitAlgorithm.GCRA]],
        )

    def _key(self, kind: str, key: object, what: str = "key") -> str:
        return self._prefixes[kind] + check_key(key, what)

    def get(self, key: str) -> Op[Value | None]:
        raw = yield from self.ops.get(self._kv + check_key(key))
        return None if raw is None else decode_value(raw)

    def set(self, key: str, value: Value, ttl: float | None = None) -> Op[None]:
        full, raw, seconds = self._kv + check_key(key), encode_value(value), check_ttl(ttl)
        yield from self.ops.set(full, raw, seconds)

    def add(self, key: str, value: Value, ttl: float | None = None) -> Op[bool]:
        full, raw, seconds = self._kv + check_key(key), encode_value(value), check_ttl(ttl)
        return (yield from self.ops.add(full, raw, seconds))

    def delete(self, key: str) -> Op[bool]:
        return (yield from self.ops.delete(self._key(KV, key)))

    def exists(self, key: str) -> Op[bool]:
        return (yield from self.ops.exists(self._kv + check_key(key)))

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> Op[int]:
        full = self._kv + check_key(key)
        step = check_count(delta, "delta", minimum=-(2**62), maximum=2**62)
        seconds = check_ttl(ttl)
        return (yield from self.ops.incr(full, step, seconds))

    def expire(self, key: str, ttl: float | None) -> Op[bool]:
        full, seconds = self._key(KV, key), check_ttl(ttl)
        return (yield from self.ops.expire(full, seconds))

    def ttl(self, key: str) -> Op[float | None]:
        return (yield from self.ops.ttl(self._kv + check_key(key)))

    def get_many(self, keys: Iterable[str]) -> Op[dict[str, Value]]:
        names = {self._key(KV, k): k for k in check_keys(keys)}
        if not names:
            return {}
        found = yield from self.ops.get_many(list(names))
        return {names[full]: decode_value(raw) for full, raw in found.items()}

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> Op[None]:
        items = {self._key(KV, k): raw for k, raw in encode_many(mapping).items()}
        seconds = check_ttl(ttl)
        if items:
            yield from self.ops.set_many(items, seconds)

    def delete_many(self, keys: Iterable[str]) -> Op[int]:
        full = [self._key(KV, k) for k in check_keys(keys)]
        return (yield from self.ops.delete_many(full)) if full else 0

    def _limiter(
        self, key: object, limit: object, window: object, cost: object, algorithm: object
    ) -> tuple[RateLimitAlgorithm, str, int, float, int]:
        """Checked arguments of one limiter: its algorithm, full key, limit, window, cost."""
        kind = _ALGORITHMS.get(algorithm) if type(algorithm) is str else algorithm
        if type(kind) is not RateLimitAlgorithm:
            kind = _algorithm(algorithm)
        prefix = self._limiters[0 if kind is FIXED else 1 if kind is SLIDING else 2]
        full = prefix + check_key(key)
        hits = check_count(limit, "limit", maximum=MAX_LIMIT)
        seconds = check_ttl(window, "window", optional=False, maximum=MAX_WINDOW)
        assert seconds is not None
        return kind, full, hits, seconds, check_count(cost, "cost", maximum=hits)

    def _group(
        self, key: object, limits: object, cost: object
    ) -> tuple[str, tuple[Limit, ...], int]:
        """Checked arguments of a group: its record's full key, its limits, the cost."""
        checked = check_key(key)
        group = check_group(limits)
        smallest = min(limit.limit for limit in group)
        weight = check_count(cost, "cost", maximum=smallest)
        return f"{self.namespace}:{LIMIT_GROUP}:{_group_tag(group)}:{checked}", group, weight

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = FIXED,
    ) -> Op[RateLimitResult]:
        kind, full, hits, seconds, weight = self._limiter(key, limit, window, cost, algorithm)
        if kind is FIXED:
            fixed = yield from self.ops.fixed_window(full, hits, seconds, weight)
            return ratelimit.fixed_window_result(fixed, hits, weight)
        if kind is SLIDING:
            sliding = yield from self.ops.sliding_window(full, hits, seconds, weight)
            return ratelimit.sliding_window_result(sliding, hits, seconds, weight)
        gcra = yield from self.ops.gcra(full, hits, seconds, weight)
        return ratelimit.gcra_result(gcra, hits, seconds, weight)

    def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = FIXED,
        cost: int = 1,
    ) -> Op[RateLimitResult]:
        kind, full, hits, seconds, weight = self._limiter(key, limit, window, cost, algorithm)
        state, now = yield from self.ops.read_limiter(full, kind)
        return ratelimit.peek(kind, state, now, hits, seconds, weight)

    def check_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> Op[RateLimitResult]:
        """Every limit of the group, in one compare-and-set of the group's record: read
        it and the store's clock, decide with ``step_*``, write only if the record is
        still as read (else decide again). A refused hit writes nothing."""
        full, group, weight = self._group(key, limits, cost)
        for _ in range(GROUP_ATTEMPTS):
            body, token, clock = yield from self.ops.read_record(full)
            now, states = ratelimit.decode_group(body, group, clock)
            allowed, after, until, result = ratelimit.step_group(group, states, now, weight)
            if not allowed:
                return result
            record = ratelimit.encode_group(now, after)
            if (
                yield from self.ops.replace_record(full, token, record, max(until - clock, MIN_TTL))
            ):
                return result
        raise BackendUnavailableError(
            f"rate-limit group: {GROUP_ATTEMPTS} writes in a row lost to other clients "
            "(contention); nothing was consumed"
        )

    def peek_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> Op[RateLimitResult]:
        full, group, weight = self._group(key, limits, cost)
        body, _, clock = yield from self.ops.read_record(full, writing=False)
        now, states = ratelimit.decode_group(body, group, clock)
        return ratelimit.peek_group(group, states, now, weight)

    def reset_rate_limit(self, key: str) -> Op[None]:
        check_key(key)
        yield from self.ops.delete_many([self._key(kind, key) for kind in LIMITER_KINDS.values()])

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> Op[None]:
        full = self._key(BLACKLIST, jti, "jti")
        seconds = blacklist_seconds(expires_in, expires_at)
        if seconds is None:
            return  # already expired for the core: nothing to revoke
        # raise_to never shortens an entry's life: a second, shorter add cannot un-revoke.
        yield from self.ops.raise_to(full, None, seconds)

    def is_blacklisted(self, jti: str) -> Op[bool]:
        return (yield from self.ops.exists(self._key(BLACKLIST, jti, "jti")))

    def remove_from_blacklist(self, jti: str) -> Op[bool]:
        return (yield from self.ops.delete(self._key(BLACKLIST, jti, "jti")))

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> Op[datetime]:
        full = self._key(USER_REVOCATION, _id(user_id, "user_id"), "user_id")
        instant = None if at is None else _epoch(at)
        seconds = check_ttl(expires_in, "expires_in")
        stored = yield from self.ops.raise_to(full, instant, seconds)
        return from_epoch(stored)

    def user_tokens_revoked_at(self, user_id: str) -> Op[datetime | None]:
        full = self._key(USER_REVOCATION, _id(user_id, "user_id"), "user_id")
        stored = yield from self.ops.read_epoch(full)
        return None if stored is None else from_epoch(stored)

    def purge_expired(self) -> Op[int]:
        return (yield from self.ops.purge_expired())


def _routing(ops: object) -> Any:
    """The ops' ``routing``, when its backend places a user's records by user (Redis
    Cluster's spread layout): it mints the tokens and public ids that lead there."""
    return getattr(ops, "routing", None)


def _public_id(routing: Any, user: str) -> str:
    """A new record's public id, where ``routing`` (if any) wants the user's records."""
    return new_public_id() if routing is None else routing.new_public_id(user)


def _minted(routing: Any, user: str, token: object) -> tuple[str, str, str]:
    """A new record's token (the caller's, or a new one), its hash and its public id,
    where ``routing`` (if any) wants the user's records found."""
    if token is not None or routing is None:
        secret, token_hash = _token_or_new(token)
    else:
        secret, token_hash = routing.new_token(user)
    return secret, token_hash, _public_id(routing, user)


class SessionLogic:
    def __init__(self, ops: SessionOps, namespace: str) -> None:
        self.ops = ops
        self.namespace = check_namespace(namespace)
        self._routing = _routing(ops)

    def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> Op[NewSession]:
        user = _id(user_id, "user_id")
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        device = _optional_id(device_id, "device_id")
        application = _optional_id(application_id, "application_id")
        ip = check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES)
        agent = check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES)
        meta = check_metadata(metadata)
        cap = None if max_sessions is None else check_count(max_sessions, "max_sessions")
        secret, token_hash, session_id = _minted(self._routing, user, token)
        draft = SessionDraft(
            token_hash=token_hash,
            session_id=session_id,
            user_id=user,
            device_id=device,
            application_id=application,
            ip_address=ip,
            user_agent=agent,
            metadata=meta,
            ttl=seconds,
        )
        record = yield from self.ops.create(draft, cap)
        return NewSession(record, secret)

    def get(self, token: str) -> Op[SessionRecord | None]:
        return (yield from self.ops.get(hash_token(token)))

    def touch(self, token: str, *, ttl: float | None = None) -> Op[SessionRecord | None]:
        token_hash, seconds = hash_token(token), check_ttl(ttl)
        return (yield from self.ops.touch(token_hash, seconds))

    def revoke(self, token: str) -> Op[bool]:
        return (yield from self.ops.revoke(hash_token(token)))

    def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> Op[bool]:
        public_id, owner = _id(session_id, "session_id"), _optional_id(user_id, "user_id")
        return (yield from self.ops.revoke_by_id(public_id, owner))

    def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> Op[int]:
        user = _id(user_id, "user_id")
        except_hash = None if except_token is None else hash_token(except_token)
        keep_id = _optional_id(except_id, "except_id")
        return (yield from self.ops.revoke_all(user, except_hash, keep_id))

    def list(self, user_id: str) -> Op[builtins.list[SessionRecord]]:
        return (yield from self.ops.list(_id(user_id, "user_id")))

    def count(self, user_id: str) -> Op[int]:
        return (yield from self.ops.count(_id(user_id, "user_id")))

    def purge_expired(self) -> Op[int]:
        return (yield from self.ops.purge_expired())


def _secret(secret: object) -> bytes:
    if not isinstance(secret, (bytes, bytearray, memoryview)):
        raise TypeError(f"secret must be bytes (ciphertext), not {type(secret).__name__}")
    data = bytes(secret)
    if not data:
        raise ValueError("secret must not be empty")
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret is longer than {MAX_SECRET_BYTES} bytes")
    return data


class TotpLogic:
    def __init__(self, ops: TotpOps, namespace: str) -> None:
        self.ops = ops
        self.namespace = check_namespace(namespace)

    def save_pending(self, user_id: str, secret: bytes) -> Op[None]:
        user, data = _id(user_id, "user_id"), _secret(secret)
        yield from self.ops.save_pending(user, data)

    def enable(self, user_id: str) -> Op[bool]:
        return (yield from self.ops.enable(_id(user_id, "user_id")))

    def disable(self, user_id: str) -> Op[bool]:
        return (yield from self.ops.disable(_id(user_id, "user_id")))

    def load(self, user_id: str) -> Op[TotpState | None]:
        return (yield from self.ops.load(_id(user_id, "user_id")))

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> Op[None]:
        user = _id(user_id, "user_id")
        if isinstance(code_hashes, (str, bytes)) or not hasattr(code_hashes, "__iter__"):
            raise TypeError("code_hashes must be an iterable of str")
        hashes = list(dict.fromkeys(_code_hash(h) for h in code_hashes))
        if len(hashes) > MAX_BACKUP_CODES:
            raise ValueError(f"at most {MAX_BACKUP_CODES} backup codes")
        yield from self.ops.replace_backup_codes(user, hashes)

    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        user, digest = _id(user_id, "user_id"), _code_hash(code_hash)
        return (yield from self.ops.use_backup_code(user, digest))

    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        user, value = _id(user_id, "user_id"), check_count(step, "step", minimum=0, maximum=2**62)
        return (yield from self.ops.claim_step(user, value))


def _code_hash(value: object) -> str:
    return check_text(value, "code_hash", max_bytes=MAX_CODE_HASH_BYTES)


class MagicLinkLogic:
    def __init__(self, ops: MagicLinkOps, namespace: str) -> None:
        self.ops = ops
        self.namespace = check_namespace(namespace)
        self._routing = _routing(ops)

    def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> Op[IssuedMagicLink]:
        fields = self._fields(
            user_id, email, ttl, application_id, ip_address, user_agent, revoke_previous
        )
        secret, token_hash, link_id = _minted(self._routing, fields[0], token)
        draft = LinkDraft(token_hash, link_id, *fields)
        record = yield from self.ops.issue(draft, revoke_previous)
        return IssuedMagicLink(record, secret)

    def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> Op[MagicLinkRecord]:
        fields = self._fields(
            user_id, email, ttl, application_id, ip_address, user_agent, revoke_previous
        )
        digest = check_token_hash(token_hash)
        draft = LinkDraft(digest, _public_id(self._routing, fields[0]), *fields)
        return (yield from self.ops.issue(draft, revoke_previous))

    @staticmethod
    def _fields(
        user_id: object,
        email: object,
        ttl: object,
        application_id: object,
        ip_address: object,
        user_agent: object,
        revoke_previous: object,
    ) -> tuple[str, str, float, str | None, str | None, str | None]:
        """The checked fields of a ``LinkDraft`` after its token hash and link id."""
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        check_flag(revoke_previous, "revoke_previous")
        return (
            _id(user_id, "user_id"),
            check_text(email, "email", max_bytes=MAX_EMAIL_BYTES),
            seconds,
            _optional_id(application_id, "application_id"),
            check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES),
            check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES),
        )

    def peek(self, token: str) -> Op[MagicLinkRecord | None]:
        return (yield from self.ops.peek(hash_token(token)))

    def consume(
        self, token: str, *, application_id: str | None = None
    ) -> Op[MagicLinkRecord | None]:
        token_hash, app = hash_token(token), _optional_id(application_id, "application_id")
        return (yield from self.ops.consume(token_hash, app))

    def revoke_user(self, user_id: str) -> Op[int]:
        return (yield from self.ops.revoke_user(_id(user_id, "user_id")))

    def purge_expired(self) -> Op[int]:
        return (yield from self.ops.purge_expired())
