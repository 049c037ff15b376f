"""Several stores over one URL's one client or pool: ``open_stores`` / ``open_async_stores``.

An application that opens its cache, sessions, TOTP and magic-link stores one by one
gets one pool each (four pools per process against one database). A group opens them
over one shared runner instead, so the process holds one pool per URL::

    with open_stores("postgresql://app@db/app") as stores:
        stores.cache.check_rate_limit("login:alice", 10, 60)
        new = stores.sessions.create("alice", ttl=3600)

The group owns the pool: closing the group closes each store, then the pool, once.
Closing one store of a group only retires that store (its operations raise
StoreClosedError); the others keep the pool. A backend without ``open_group``
(a third-party one, say) gives each store its own connections, and the group
closes them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from authstore.contracts.cache import AsyncCacheStore, CacheStore
from authstore.contracts.context import AsyncContext, SyncContext
from authstore.contracts.errors import ConfigurationError, UnsupportedOperationError
from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
from authstore.contracts.records import StoreKind
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.contracts.totp import AsyncTotpStore, TotpStore
from authstore.registry import StoreURL, backend_for, connect_eagerly

__all__ = ["AsyncStoreGroup", "StoreGroup", "open_async_stores", "open_stores"]

C = TypeVar("C")
S = TypeVar("S")
T = TypeVar("T")
L = TypeVar("L")


class _Group(Generic[C, S, T, L]):
    """The stores of a group by kind, the runner they share, and what was left out."""

    def __init__(
        self,
        url: StoreURL,
        stores: dict[StoreKind, Any],
        runner: Any,
        missing: dict[StoreKind, Exception],
    ) -> None:
        self._where = url.redacted()
        self._stores = stores
        self._runner = runner
        """The shared runner (closed once, by the group), or None when each store has
        its own (a backend without ``open_group``)."""
        self._missing = missing
        self._closed = False

    @property
    def kinds(self) -> frozenset[StoreKind]:
        """The kinds this group holds (memcached: only the cache)."""
        return frozenset(self._stores)

    def _store(self, kind: StoreKind) -> Any:
        store = self._stores.get(kind)
        if store is None:
            raise self._missing[kind]
        return store

    @property
    def cache(self) -> C:
        store: C = self._store(StoreKind.CACHE)
        return store

    @property
    def sessions(self) -> S:
        store: S = self._store(StoreKind.SESSIONS)
        return store

    @property
    def totp(self) -> T:
        store: T = self._store(StoreKind.TOTP)
        return store

    @property
    def magic_links(self) -> L:
        store: L = self._store(StoreKind.MAGIC_LINKS)
        return store

    def _pinged(self) -> list[Any]:
        """The stores a ping goes through: one for a shared runner, else every store."""
        stores = list(self._stores.values())
        return stores[:1] if self._runner is not None else stores

    def __repr__(self) -> str:
        kinds = ",".join(kind.value for kind in self._stores)
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self._where} kinds={kinds}{state}>"


class StoreGroup(_Group[CacheStore, SessionStore, TotpStore, MagicLinkStore], SyncContext):
    """Sync stores over one pool; a context manager that closes them and the pool once."""

    def ping(self) -> None:
        """One round trip on the shared pool (BackendUnavailableError when it fails)."""
        for store in self._pinged():
            store.ping()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for store in self._stores.values():
                store.close()
        finally:
            if self._runner is not None:
                self._runner.close()


class AsyncStoreGroup(
    _Group[AsyncCacheStore, AsyncSessionStore, AsyncTotpStore, AsyncMagicLinkStore], AsyncContext
):
    """Async stores over one pool; ``async with`` closes them and the pool once (and,
    with ``connect=eager``, pings first)."""

    async def ping(self) -> None:
        """One round trip on the shared pool (BackendUnavailableError when it fails)."""
        for store in self._pinged():
            await store.ping()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for store in self._stores.values():
                await store.aclose()
        finally:
            if self._runner is not None:
                await self._runner.close()


def _kinds(kinds: Iterable[StoreKind | str] | None) -> tuple[StoreKind, ...]:
    if kinds is None:
        return tuple(StoreKind)
    if isinstance(kinds, str):
        raise TypeError("kinds must be a collection of kinds, e.g. kinds=('cache',)")
    chosen: list[StoreKind] = []
    for kind in kinds:
        try:
            chosen.append(StoreKind(kind))
        except ValueError:
            known = ", ".join(k.value for k in StoreKind)
            raise ValueError(f"unknown store kind {kind!r}; kinds are {known}") from None
    if not chosen:
        raise ValueError("kinds is empty: name at least one store kind")
    return tuple(dict.fromkeys(chosen))


def _open(
    url: str | StoreURL,
    kinds: Iterable[StoreKind | str] | None,
    options: dict[str, Any],
    *,
    asynchronous: bool,
) -> tuple[StoreURL, dict[StoreKind, Any], Any, dict[StoreKind, Exception], bool]:
    chosen = _kinds(kinds)
    backend, parsed = backend_for(url)
    parsed, eager = connect_eagerly(parsed.with_options(options))
    missing: dict[StoreKind, Exception] = {
        kind: ConfigurationError(
            f"{parsed.redacted()}: the {kind.value} store is not in this group "
            f"(it was opened with kinds={tuple(k.value for k in chosen)!r})"
        )
        for kind in StoreKind
        if kind not in chosen
    }
    open_group = getattr(backend, "open_group", None)
    if open_group is not None:
        shared = open_group(parsed, chosen, asynchronous=asynchronous)
        if shared.refused and kinds is not None:  # asked for by name: refuse the group
            if asynchronous:
                shared.runner = None  # nothing connected yet: nothing to close
            elif shared.runner is not None:
                shared.runner.close()
            raise next(iter(shared.refused.values()))
        missing.update(shared.refused)
        return parsed, shared.stores, shared.runner, missing, eager
    stores: dict[StoreKind, Any] = {}
    refused: dict[StoreKind, Exception] = {}
    for kind in chosen:
        try:
            stores[kind] = backend.open(parsed, kind, asynchronous=asynchronous)
        except UnsupportedOperationError as refusal:
            if kinds is not None:
                _close_quietly(stores.values(), asynchronous)
                raise
            refused[kind] = refusal
    if not stores:
        raise next(iter(refused.values()))
    missing.update(refused)
    return parsed, stores, None, missing, eager


def _close_quietly(stores: Iterable[Any], asynchronous: bool) -> None:
    """Stores opened before a refusal: sync ones close; async ones connected nothing."""
    if not asynchronous:
        for store in stores:
            store.close()


def open_stores(
    url: str | StoreURL, *, kinds: Iterable[StoreKind | str] | None = None, **options: Any
) -> StoreGroup:
    """The four stores (or ``kinds``) of ``url`` over one client or pool.

    Without ``kinds``, every kind the backend holds (memcached: the cache only; the
    others raise UnsupportedOperationError when used). Naming a kind the backend does
    not hold raises at once. With ``connect=eager`` the pool connects (one ping) here.
    """
    parsed, stores, runner, missing, eager = _open(url, kinds, options, asynchronous=False)
    group = StoreGroup(parsed, stores, runner, missing)
    if eager:
        try:
            group.ping()
        except BaseException:
            group.close()
            raise
    return group


def open_async_stores(
    url: str | StoreURL, *, kinds: Iterable[StoreKind | str] | None = None, **options: Any
) -> AsyncStoreGroup:
    """``open_stores`` for async stores; with ``connect=eager`` the ping happens when
    ``async with`` enters (nothing can be awaited here)."""
    parsed, stores, runner, missing, eager = _open(url, kinds, options, asynchronous=True)
    group = AsyncStoreGroup(parsed, stores, runner, missing)
    group.connect_on_enter = eager
    return group
