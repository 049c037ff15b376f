"""``dictcache://NAME``: a process-local cache backend for authstore, by an outside author.

It implements the cache contract directly, importing only ``authstore.authoring``, only for the
capabilities it declares; the other stores raise UnsupportedOperationError.
Arguments are checked with ``authstore.contracts.values`` before anything else,
so bad input fails the same way as on the built-in backends.

``dictcache://NAME?offline=1`` opens a store whose data set is offline: every
operation raises BackendUnavailableError, as a networked backend's would while its
server is down. The test file names it as ``authstore_unreachable_url``, so the
contract suite proves this backend fails closed (never answers "not revoked"
while it cannot know).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from authstore.authoring import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    RateLimitAlgorithm,
    RateLimitResult,
    StoreKind,
    StoreURL,
    UnsupportedOperationError,
    Value,
    blacklist_seconds,
    check_key,
    check_keys,
    check_namespace,
    check_text,
    check_ttl,
    decode_value,
    encode_value,
)

__all__ = ["AsyncDictCache", "DictCache", "backend"]

T = TypeVar("T")
Entry = tuple[Any, float | None]  # value, monotonic deadline (None: no expiry)


class _Shared:
    """One named data set; the lock makes every operation atomic."""

    def __init__(self, offline: bool = False) -> None:
        self.lock = threading.Lock()
        self.entries: dict[tuple[str, str, str], Entry] = {}  # (namespace, kind, key)
        self.offline = offline


class DictCache:
    capabilities = frozenset({"kv", "batch", "blacklist", "user_revocation"})

    def __init__(self, shared: _Shared, namespace: str) -> None:
        self._shared = shared
        self.namespace = check_namespace(namespace)
        self._closed = False

    # Every public method checks its arguments first, then takes the lock.
    def _locked(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise BackendError("this dictcache store is closed")
        if self._shared.offline:
            raise BackendUnavailableError("the dictcache data set is offline")
        with self._shared.lock:
            return fn()

    def _live(self, kind: str, key: str) -> Any | None:
        full = (self.namespace, kind, key)
        entry = self._shared.entries.get(full)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= time.monotonic():
            del self._shared.entries[full]
            return None
        return entry[0]

    def _put(self, kind: str, key: str, value: Any, ttl: float | None) -> None:
        deadline = None if ttl is None else time.monotonic() + ttl
        self._shared.entries[(self.namespace, kind, key)] = (value, deadline)

    def _revoke(self, kind: str, key: str, value: Any, ttl: float | None) -> None:
        """Like _put, but a revocation only ever lives longer: a shorter ttl never un-revokes."""
        if self._live(kind, key) is not None:
            old = self._shared.entries[(self.namespace, kind, key)][1]
            new = None if ttl is None else time.monotonic() + ttl
            ttl = None if old is None or new is None else max(old, new) - time.monotonic()
        self._put(kind, key, value, ttl)

    def _pop(self, kind: str, key: str) -> bool:
        found = self._live(kind, key) is not None
        self._shared.entries.pop((self.namespace, kind, key), None)
        return found

    # -- key/value -------------------------------------------------------------------

    def get(self, key: str) -> Value | None:
        key = check_key(key)
        raw = self._locked(lambda: self._live("k", key))
        return None if raw is None else decode_value(raw)

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        key, raw, seconds = check_key(key), encode_value(value), check_ttl(ttl)
        self._locked(lambda: self._put("k", key, raw, seconds))

    def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        key, raw, seconds = check_key(key), encode_value(value), check_ttl(ttl)

        def add() -> bool:
            if self._live("k", key) is not None:
                return False
            self._put("k", key, raw, seconds)
            return True

        return self._locked(add)

    def delete(self, key: str) -> bool:
        key = check_key(key)
        return self._locked(lambda: self._pop("k", key))

    def exists(self, key: str) -> bool:
        key = check_key(key)
        return self._locked(lambda: self._live("k", key) is not None)

    def expire(self, key: str, ttl: float | None) -> bool:
        key, seconds = check_key(key), check_ttl(ttl)

        def expire() -> bool:
            raw = self._live("k", key)
            if raw is None:
                return False
            self._put("k", key, raw, seconds)
            return True

        return self._locked(expire)

    def ttl(self, key: str) -> float | None:
        key = check_key(key)

        def ttl() -> float | None:
            if self._live("k", key) is None:
                return None
            deadline = self._shared.entries[(self.namespace, "k", key)][1]
            return math.inf if deadline is None else deadline - time.monotonic()

        return self._locked(ttl)

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        names = check_keys(keys)
        found = self._locked(lambda: {k: self._live("k", k) for k in names})
        return {k: decode_value(raw) for k, raw in found.items() if raw is not None}

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a Mapping, not {type(mapping).__name__}")
        items = {check_key(k): encode_value(v) for k, v in mapping.items()}
        seconds = check_ttl(ttl)

        def set_many() -> None:
            for key, raw in items.items():
                self._put("k", key, raw, seconds)

        self._locked(set_many)

    def delete_many(self, keys: Iterable[str]) -> int:
        names = check_keys(keys)
        return self._locked(lambda: sum(self._pop("k", k) for k in names))

    # -- not offered: capabilities leave these out ------------------------------------------

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        raise UnsupportedOperationError("dictcache has no incr")

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult:
        raise UnsupportedOperationError("dictcache has no rate limiting")

    def reset_rate_limit(self, key: str) -> None:
        raise UnsupportedOperationError("dictcache has no rate limiting")

    # -- revocation ------------------------------------------------------------------------

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        jti, seconds = check_key(jti, "jti"), blacklist_seconds(expires_in, expires_at)
        if seconds is not None:  # None: an instant already past, nothing to revoke
            self._locked(lambda: self._revoke("b", jti, True, seconds))

    def is_blacklisted(self, jti: str) -> bool:
        jti = check_key(jti, "jti")
        return self._locked(lambda: self._live("b", jti) is not None)

    def remove_from_blacklist(self, jti: str) -> bool:
        jti = check_key(jti, "jti")
        return self._locked(lambda: self._pop("b", jti))

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        user = check_text(user_id, "user_id", max_bytes=255)
        if at is not None and not isinstance(at, datetime):
            raise TypeError(f"at must be a datetime, not {type(at).__name__}")
        if at is not None and at.utcoffset() is None:
            raise ValueError("at must be timezone-aware")
        seconds = check_ttl(expires_in, "expires_in")

        def revoke() -> datetime:
            instant = (at or datetime.now(UTC)).astimezone(UTC)
            current = self._live("u", user)
            instant = max(instant, current) if current is not None else instant
            self._revoke("u", user, instant, seconds)
            return instant

        return self._locked(revoke)

    def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        user = check_text(user_id, "user_id", max_bytes=255)
        instant: datetime | None = self._locked(lambda: self._live("u", user))
        return instant

    def purge_expired(self) -> int:
        def purge() -> int:
            now = time.monotonic()
            entries = self._shared.entries
            dead = [
                k
                for k, (_, deadline) in entries.items()
                if deadline is not None and deadline <= now
            ]
            for key in dead:
                del entries[key]
            return len(dead)

        return self._locked(purge)

    def ping(self) -> None:
        """No server to reach: the data set answers unless it is offline (or closed)."""
        self._locked(lambda: None)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDictCache:
    """The async twin: no I/O, so each call runs the sync one inline (still atomic)."""

    capabilities = DictCache.capabilities

    def __init__(self, shared: _Shared, namespace: str) -> None:
        self._sync = DictCache(shared, namespace)
        self.namespace = self._sync.namespace

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    async def aclose(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class DictCacheBackend:
    """What the ``authstore.backends`` entry point names."""

    name = "dictcache"
    shared_across_processes = False  # a process-local data set: no cross-process races

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._named: dict[str, _Shared] = {}

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        if kind is not StoreKind.CACHE:
            raise UnsupportedOperationError(f"dictcache provides only a cache, not {kind.value}")
        options = url.reader()
        namespace = options.text("namespace", "authstore")
        offline = options.text("offline", "0")
        options.done()
        if offline not in ("0", "1"):
            raise ConfigurationError(f"dictcache: offline must be 0 or 1, not {offline!r}")
        name = url.hosts[0][0] if url.hosts else ""
        if offline == "1":
            return (AsyncDictCache if asynchronous else DictCache)(_Shared(True), namespace)
        with self._lock:
            shared = self._named.setdefault(name, _Shared()) if name else _Shared()
        return (AsyncDictCache if asynchronous else DictCache)(shared, namespace)

    def migrate(self, url: StoreURL) -> list[str]:
        return ["dictcache: nothing to migrate"]

    # Optional (authstore.authoring.UnreachableTwin): `authstore check` proves fail-closed
    # on this URL: the same data set, offline.
    def unreachable_url(self, url: StoreURL) -> StoreURL:
        return url.with_options({"offline": "1"})

    # Optional (authstore.authoring.NamespaceCleaner): `authstore check` clears each
    # test's namespace with these and reports what is left behind.
    def _entries(self, url: StoreURL, namespace: str, delete: bool) -> int:
        name = url.hosts[0][0] if url.hosts else ""
        with self._lock:
            shared = self._named.get(name)
        if shared is None:
            return 0
        with shared.lock:
            mine = [key for key in shared.entries if key[0] == namespace]
            if delete:
                for key in mine:
                    del shared.entries[key]
        return len(mine)

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        self._entries(url, namespace, delete=True)

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        return self._entries(url, namespace, delete=False)


backend = DictCacheBackend()
