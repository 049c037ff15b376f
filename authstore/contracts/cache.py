"""The cache contract: ephemeral auth state (values, rate limits, revocations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

from authstore.contracts.lifecycle import AsyncStoreLifecycle, StoreLifecycle
from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult, Value
from authstore.limits import LimitsLike

__all__ = ["AsyncCacheStore", "CacheStore", "CACHE_CAPABILITIES"]

CACHE_CAPABILITIES = frozenset(
    {
        "kv",
        "incr",
        "batch",
        "fixed_window",
        "sliding_window",
        "gcra",
        "rate_limit_groups",
        "rate_limit_peek",
        "blacklist",
        "user_revocation",
    }
)
"""What a complete cache store provides; a store lists what it has in ``capabilities``."""


@runtime_checkable
class CacheStore(StoreLifecycle, Protocol):
    """Key/value with TTL, rate limiting and token revocation, all atomic on the backend.

    TTLs are float seconds measured on the store's clock; None (or inf) means no
    expiry. Keys live in the store's ``namespace`` and never meet another namespace's.
    """

    capabilities: frozenset[str]

    def get(self, key: str) -> Value | None:
        """The value with its exact type, or None when missing or expired."""

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Store a value; without ``ttl`` any previous expiry is cleared."""

    def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        """Set only if absent (or expired); True when this call stored the value."""

    def delete(self, key: str) -> bool:
        """True when a live key was removed."""

    def exists(self, key: str) -> bool:
        """True for a live key; an expired one is absent whether or not it was deleted."""

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to an integer value; a missing key starts at 0 and gets ``ttl``.

        The TTL is applied only when this call creates the key.
        """

    def expire(self, key: str, ttl: float | None) -> bool:
        """Give an existing key a new TTL (None removes the expiry); False if missing."""

    def ttl(self, key: str) -> float | None:
        """Seconds left; None for a missing key, ``math.inf`` for a key without expiry."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        """The keys that exist, with their values; missing keys are left out."""

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        """``set`` for several keys, all with the same ``ttl``."""

    def delete_many(self, keys: Iterable[str]) -> int:
        """How many live keys were removed."""

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult:
        """Count a hit of weight ``cost``; a refused hit consumes nothing.

        Exactly ``limit`` unit hits pass per window under any concurrency.
        """

    def check_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        """One hit of ``cost`` on several limits of ``key`` in one atomic step: allowed
        only if every limit allows it; refused, nothing is consumed in any of them.

        ``limits``: ``"100/day;10/minute"``, a Limit, or several. A group keeps its own
        state (one record per key and set of limits), apart from ``check_rate_limit``'s
        on the same key, and ``reset_rate_limit`` leaves it alone. The result is the
        binding limit's (``limit`` says which): refused, the refusing limit with the
        longest ``retry_after``; allowed, the one with the fewest ``remaining``.
        """

    def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
        cost: int = 1,
    ) -> RateLimitResult:
        """What ``check_rate_limit`` would answer now, consuming, creating and extending
        nothing: ``allowed`` (would a hit of ``cost`` pass), ``remaining`` (units left
        now), ``reset_after`` and ``retry_after`` as a hit would see them."""

    def peek_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        """``peek_rate_limit`` for a group's state (see ``check_rate_limits``)."""

    def reset_rate_limit(self, key: str) -> None:
        """Forget the state of every algorithm's limiter for ``key``."""

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        """Revoke one token id until it would have expired anyway.

        Give exactly one of ``expires_in`` (seconds) or ``expires_at`` (a timezone-aware
        instant, e.g. the token's ``exp``). ``expires_at`` is turned into seconds with the
        caller's clock, then applied on the store's clock; an instant already past stores
        nothing. An entry's life is never shortened.
        """

    def is_blacklisted(self, jti: str) -> bool:
        """Raises BackendUnavailableError when the backend is down: never a False by default."""

    def remove_from_blacklist(self, jti: str) -> bool:
        """Un-revoke a token id; True when a live entry was removed."""

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        """Revoke every token of a user issued before ``at`` (default: now on the store's clock).

        The stored instant only moves forward: an earlier ``at`` never un-revokes
        tokens. Returns the instant now in force.
        """

    def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        """The instant in force (aware UTC, sub-second), or None. Fails closed."""

    def purge_expired(self) -> int:
        """Physically delete what has expired; reads never depend on it."""


@runtime_checkable
class AsyncCacheStore(AsyncStoreLifecycle, Protocol):
    """The async twin of CacheStore: same names, same meaning."""

    capabilities: frozenset[str]

    async def get(self, key: str) -> Value | None: ...
    async def set(self, key: str, value: Value, ttl: float | None = None) -> None: ...
    async def add(self, key: str, value: Value, ttl: float | None = None) -> bool: ...
    async def delete(self, key: str) -> bool: ...
    async def exists(self, key: str) -> bool: ...
    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int: ...
    async def expire(self, key: str, ttl: float | None) -> bool: ...
    async def ttl(self, key: str) -> float | None: ...
    async def get_many(self, keys: Iterable[str]) -> dict[str, Value]: ...
    async def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None: ...
    async def delete_many(self, keys: Iterable[str]) -> int: ...
    async def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult: ...
    async def check_rate_limits(
        self, key: str, limits: LimitsLike, cost: int = 1
    ) -> RateLimitResult: ...
    async def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
        cost: int = 1,
    ) -> RateLimitResult: ...
    async def peek_rate_limits(
        self, key: str, limits: LimitsLike, cost: int = 1
    ) -> RateLimitResult: ...
    async def reset_rate_limit(self, key: str) -> None: ...
    async def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None: ...
    async def is_blacklisted(self, jti: str) -> bool: ...
    async def remove_from_blacklist(self, jti: str) -> bool: ...
    async def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime: ...
    async def user_tokens_revoked_at(self, user_id: str) -> datetime | None: ...
    async def purge_expired(self) -> int: ...
