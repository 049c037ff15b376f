"""A sync and an async store given to one tenxyte class must see the same data.

``memory://`` without a name (and SQLite's ``:memory:``) opens new data for every
store: given as the sync and async twins of one integration class, a token
blacklisted through the sync store would stay valid through the async one. Every
class refuses such twins with a ``ConfigurationError`` that says to name the store;
twins of one ``memory://NAME`` share their data and work, through tenxyte's own
``JWTService`` too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tenxyte.core.jwt_service import JWTService

from authstore import ConfigurationError, open_async_cache
from authstore.contracts.records import StoreKind
from authstore.integrations.tenxyte import (
    AuthstoreCacheService,
    AuthstoreCodeReplayProtection,
    AuthstoreJWTService,
    AuthstoreMagicLinkRepository,
    AuthstoreSessionRepository,
    AuthstoreTokenBlacklist,
    AuthstoreTOTPStorage,
)
from authstore.registry import open_store
from tests.tenxyte.conftest import tenxyte_settings

CLASSES: dict[str, tuple[StoreKind, Callable[[Any, Any], object]]] = {
    "AuthstoreCacheService": (StoreKind.CACHE, AuthstoreCacheService),
    "AuthstoreTokenBlacklist": (
        StoreKind.CACHE,
        lambda s, a: AuthstoreTokenBlacklist(s, a, revocation_ttl=3600),
    ),
    "AuthstoreCodeReplayProtection": (StoreKind.CACHE, AuthstoreCodeReplayProtection),
    "AuthstoreSessionRepository": (StoreKind.SESSIONS, AuthstoreSessionRepository),
    "AuthstoreTOTPStorage": (StoreKind.TOTP, AuthstoreTOTPStorage),
    "AuthstoreMagicLinkRepository": (StoreKind.MAGIC_LINKS, AuthstoreMagicLinkRepository),
    "AuthstoreJWTService(refresh_tokens)": (
        StoreKind.SESSIONS,
        lambda s, a: AuthstoreJWTService(
            tenxyte_settings(),
            AuthstoreTokenBlacklist(revocation_ttl=3600, async_cache=open_async_cache("memory://")),
            refresh_tokens=s,
            async_refresh_tokens=a,
        ),
    ),
}


@asynccontextmanager
async def twins(kind: StoreKind, sync_url: str, async_url: str) -> AsyncIterator[tuple[Any, Any]]:
    sync, aio = open_store(sync_url, kind), open_store(async_url, kind, asynchronous=True)
    try:
        yield sync, aio
    finally:
        sync.close()
        await aio.aclose()


def named() -> str:
    return f"memory://twins-{uuid.uuid4().hex}"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize(
    ("sync_url", "async_url"),
    [
        ("memory://", "memory://"),
        ("memory://", named()),
        (named(), named()),  # two names: two data sets as well
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("memory://", "sqlite:///:memory:"),
    ],
    ids=["unnamed", "unnamed-and-named", "two-names", "sqlite-memory", "memory-and-sqlite"],
)
async def test_twins_over_separate_data_are_refused(
    name: str, sync_url: str, async_url: str
) -> None:
    kind, make = CLASSES[name]
    async with twins(kind, sync_url, async_url) as (sync, aio):
        with pytest.raises(ConfigurationError, match=r"separate in-process data.*memory://auth"):
            make(sync, aio)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CLASSES))
async def test_twins_of_one_named_memory_store_are_accepted(name: str) -> None:
    kind, make = CLASSES[name]
    url = named()
    async with twins(kind, url, url) as (sync, aio):
        make(sync, aio)
        make(sync, None)  # one store alone, whatever it is, is always accepted
        make(None, aio)
    async with twins(kind, "memory://", "memory://") as (sync, aio):
        make(sync, None)
        make(None, aio)


@pytest.mark.asyncio
async def test_a_token_blacklisted_through_sync_is_refused_through_async() -> None:
    # tenxyte's own JWTService over the adapter: sync blacklist, async decode
    url = named()
    async with twins(StoreKind.CACHE, url, url) as (sync, aio):
        blacklist = AuthstoreTokenBlacklist(sync, aio, revocation_ttl=86400)
        jwt = JWTService(tenxyte_settings(), blacklist)
        token, jti, _ = jwt.generate_access_token("u", "app")
        assert (await jwt.decode_token_async(token)).is_valid
        assert jwt.blacklist_token(token, user_id="u")
        assert await blacklist.is_blacklisted_async(jti)
        decoded = await jwt.decode_token_async(token)
        assert decoded is None or not decoded.is_valid
