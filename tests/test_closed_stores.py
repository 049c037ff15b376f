"""Use after close raises StoreClosedError on every backend, sync and async, from every
method of every contract; and ``ping`` answers on an open store and fails closed
(BackendUnavailableError) on a dead one, with ``connect=eager`` failing at open.

The methods come from the contracts' protocols, so a method added to a contract
fails here until it has arguments below (and is refused once closed).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from authstore import (
    AsyncCacheStore,
    AsyncMagicLinkStore,
    AsyncSessionStore,
    AsyncTotpStore,
    BackendUnavailableError,
    CacheStore,
    MagicLinkStore,
    SessionStore,
    StoreClosedError,
    StoreKind,
    TotpStore,
    UnsupportedOperationError,
    open_async_cache,
    open_async_stores,
    open_cache,
    open_stores,
)
from authstore import AsyncStoreGroup as AsyncStoreGroupType
from authstore.contracts.testing.harness import open_store
from tests.backends import backend  # noqa: F401 - the fixture
from tests.outages import free_port

HASH = "a" * 64
TOKEN = "t" * 43

ARGUMENTS: dict[StoreKind, dict[str, tuple[tuple[Any, ...], dict[str, Any]]]] = {
    StoreKind.CACHE: {
        "get": (("k",), {}),
        "set": (("k", 1), {}),
        "add": (("k", 1), {}),
        "delete": (("k",), {}),
        "exists": (("k",), {}),
        "incr": (("n",), {}),
        "expire": (("k", 10.0), {}),
        "ttl": (("k",), {}),
        "get_many": ((["k"],), {}),
        "set_many": (({"k": 1},), {}),
        "delete_many": ((["k"],), {}),
        "check_rate_limit": (("r", 10, 60.0), {}),
        "check_rate_limits": (("r", "10/minute;100/hour"), {}),
        "peek_rate_limit": (("r", 10, 60.0), {}),
        "peek_rate_limits": (("r", "10/minute;100/hour"), {}),
        "reset_rate_limit": (("r",), {}),
        "add_to_blacklist": (("jti", 60.0), {}),
        "is_blacklisted": (("jti",), {}),
        "remove_from_blacklist": (("jti",), {}),
        "revoke_user_tokens": (("u",), {}),
        "user_tokens_revoked_at": (("u",), {}),
        "purge_expired": ((), {}),
        "ping": ((), {}),
    },
    StoreKind.SESSIONS: {
        "create": (("u",), {"ttl": 60.0}),
        "get": ((TOKEN,), {}),
        "touch": ((TOKEN,), {}),
        "revoke": ((TOKEN,), {}),
        "revoke_by_id": (("id",), {}),
        "revoke_all": (("u",), {}),
        "count": (("u",), {}),
        "list": (("u",), {}),
        "purge_expired": ((), {}),
        "ping": ((), {}),
    },
    StoreKind.TOTP: {
        "save_pending": (("u", b"secret"), {}),
        "enable": (("u",), {}),
        "disable": (("u",), {}),
        "load": (("u",), {}),
        "replace_backup_codes": (("u", [HASH]), {}),
        "use_backup_code": (("u", HASH), {}),
        "claim_step": (("u", 1), {}),
        "ping": ((), {}),
    },
    StoreKind.MAGIC_LINKS: {
        "issue": (("u", "u@example.com"), {"ttl": 60.0}),
        "issue_hashed": (("u", "u@example.com", HASH), {"ttl": 60.0}),
        "peek": ((TOKEN,), {}),
        "consume": ((TOKEN,), {}),
        "revoke_user": (("u",), {}),
        "purge_expired": ((), {}),
        "ping": ((), {}),
    },
}
PROTOCOLS: dict[StoreKind, tuple[type, type]] = {
    StoreKind.CACHE: (CacheStore, AsyncCacheStore),
    StoreKind.SESSIONS: (SessionStore, AsyncSessionStore),
    StoreKind.TOTP: (TotpStore, AsyncTotpStore),
    StoreKind.MAGIC_LINKS: (MagicLinkStore, AsyncMagicLinkStore),
}
LIFECYCLE = {"close", "aclose"}


def _methods(protocol: type) -> set[str]:
    """Its methods, inherited ones too (``ping`` comes from the lifecycle base)."""
    return {
        name
        for name in dir(protocol)
        if callable(getattr(protocol, name)) and not name.startswith("_") and name not in LIFECYCLE
    }


@pytest.mark.parametrize("kind", list(StoreKind))
def test_every_contract_method_has_arguments_here(kind: StoreKind) -> None:
    sync_protocol, async_protocol = PROTOCOLS[kind]
    assert _methods(sync_protocol) == _methods(async_protocol) == set(ARGUMENTS[kind])


def _open(url: str, kind: StoreKind, asynchronous: bool) -> Any:
    try:
        return open_store(url, kind, asynchronous, namespace="closed")
    except UnsupportedOperationError:
        pytest.skip(f"{url.split(':')[0]} has no {kind.value} store")


@pytest.mark.parametrize("kind", list(StoreKind))
def test_every_method_of_a_closed_store_raises(backend: str, kind: StoreKind) -> None:  # noqa: F811
    store = _open(backend, kind, asynchronous=False)
    store.ping()  # connected, then closed: the refusal is the store's, not the network's
    store.close()
    store.close()  # twice is fine
    for name, (args, kwargs) in ARGUMENTS[kind].items():
        with pytest.raises(StoreClosedError, match="closed"):
            getattr(store, name)(*args, **kwargs)


@pytest.mark.parametrize("kind", list(StoreKind))
def test_every_method_of_a_closed_async_store_raises(backend: str, kind: StoreKind) -> None:  # noqa: F811
    async def main() -> None:
        store = _open(backend, kind, asynchronous=True)
        await store.ping()
        await store.aclose()
        await store.aclose()
        for name, (args, kwargs) in ARGUMENTS[kind].items():
            call = getattr(store, name)
            assert inspect.iscoroutinefunction(call), name
            with pytest.raises(StoreClosedError, match="closed"):
                await call(*args, **kwargs)

    asyncio.run(main())


def test_a_closed_store_still_checks_arguments_first() -> None:
    """Bad input is a ValueError/TypeError on a closed store too, before the refusal."""
    store = open_cache("memory://")
    store.close()
    with pytest.raises(ValueError):
        store.get("")
    with pytest.raises(StoreClosedError):
        store.delete_many([])  # no backend needed, refused all the same


def test_a_closed_group_closes_every_store(backend: str) -> None:  # noqa: F811
    with open_stores(backend, namespace="closed") as stores:
        stores.ping()
    for kind in stores.kinds:
        with pytest.raises(StoreClosedError):
            getattr(stores, kind.value).ping()


# --- ping and eager connect ----------------------------------------------------------------


def _dead(scheme_url: str) -> str:
    """The URL of a loopback port nobody listens on."""
    return scheme_url.format(port=free_port())


DEAD = {
    "postgresql": "postgresql://postgres@127.0.0.1:{port}/x?timeout=1",
    "mysql": "mysql://root@127.0.0.1:{port}/x?timeout=1",
    "redis": "redis://127.0.0.1:{port}/0?timeout=1",
    "mongodb": "mongodb://127.0.0.1:{port}/x?timeout=1",
    "memcached": "memcached://127.0.0.1:{port}?timeout=1",
}


@pytest.mark.parametrize("scheme", list(DEAD))
def test_ping_on_a_dead_port_fails_closed(scheme: str) -> None:
    url = _dead(DEAD[scheme])
    with open_cache(url) as store, pytest.raises(BackendUnavailableError):
        store.ping()

    async def main() -> None:
        async with open_async_cache(url) as store:
            with pytest.raises(BackendUnavailableError):
                await store.ping()

    asyncio.run(main())


@pytest.mark.parametrize("scheme", list(DEAD))
def test_eager_connect_fails_at_open(scheme: str) -> None:
    url = _dead(DEAD[scheme]) + "&connect=eager"
    with pytest.raises(BackendUnavailableError):
        open_cache(url)
    with pytest.raises(BackendUnavailableError):
        open_stores(url)
    lazy = open_cache(url.replace("connect=eager", "connect=lazy"))  # opens, connects nothing
    lazy.close()

    async def main() -> None:
        store = open_async_cache(url)  # nothing can be awaited in open_async_*
        with pytest.raises(BackendUnavailableError):
            async with store:
                pytest.fail("entered a store whose backend is down")
        with pytest.raises(StoreClosedError):
            await store.get("k")  # a failed eager connect closes the store
        with pytest.raises(BackendUnavailableError):
            async with open_async_stores(url):
                pytest.fail("entered a group whose backend is down")

    asyncio.run(main())


def test_eager_connect_on_a_live_backend(backend: str) -> None:  # noqa: F811
    url = backend + ("&" if "?" in backend else "?") + "connect=eager"
    with open_cache(url, namespace="eager") as store:
        assert store.get("k") is None

    async def main() -> None:
        async with open_async_stores(url, namespace="eager") as stores:
            assert await stores.cache.get("k") is None

    asyncio.run(main())


def test_connect_must_be_lazy_or_eager() -> None:
    from authstore import ConfigurationError

    with pytest.raises(ConfigurationError, match="lazy or eager"):
        open_cache("memory://?connect=sometimes")


def test_memcached_group_holds_only_the_cache() -> None:
    with open_stores("memcached://127.0.0.1:1") as stores:
        assert stores.kinds == {StoreKind.CACHE}
        with pytest.raises(UnsupportedOperationError, match="only the cache"):
            _ = stores.sessions
    with pytest.raises(UnsupportedOperationError, match="only the cache"):
        open_stores("memcached://127.0.0.1:1", kinds=("cache", "sessions"))


def test_a_group_of_some_kinds() -> None:
    from authstore import ConfigurationError

    with open_stores("memory://", kinds=("cache", "sessions")) as stores:
        assert stores.kinds == {StoreKind.CACHE, StoreKind.SESSIONS}
        with pytest.raises(ConfigurationError, match="not in this group"):
            _ = stores.totp
    with pytest.raises(ValueError, match="unknown store kind"):
        open_stores("memory://", kinds=("cache", "cookies"))
    with pytest.raises(TypeError):
        open_stores("memory://", kinds="cache")


def test_a_group_runs_every_store_on_one_runner(backend: str) -> None:  # noqa: F811
    """One runner is one client or pool (``memory://``: one data set for the group)."""
    for opened in (open_stores(backend), open_async_stores(backend)):
        runners = {id(getattr(opened, kind.value)._runner) for kind in opened.kinds}
        assert len(runners) == 1
        if isinstance(opened, AsyncStoreGroupType):
            asyncio.run(opened.aclose())
        else:
            opened.close()
