"""A store of any kind over MongoDB: the Mongo ops inside the common store classes."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.stores import (
    AsyncCache,
    AsyncMagicLinks,
    AsyncSessions,
    AsyncTotp,
    Cache,
    MagicLinks,
    Sessions,
    Totp,
)
from authstore.adapters.mongodb.ops import (
    MongoCacheOps,
    MongoMagicLinkOps,
    MongoSessionOps,
    MongoTotpOps,
)
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.contracts.records import StoreKind

__all__ = ["make_store"]


def make_store(kind: StoreKind, runner: Any, settings: MongoSettings, *, asynchronous: bool) -> Any:
    """``runner`` is a Runner, or an AsyncRunner when ``asynchronous``."""
    collections, namespace = settings.collections, settings.namespace
    if kind is StoreKind.CACHE:
        cache = AsyncCache if asynchronous else Cache
        return cache(MongoCacheOps(collections), runner, namespace=namespace)
    kinds: dict[StoreKind, tuple[Any, Any, Any]] = {
        StoreKind.SESSIONS: (MongoSessionOps, Sessions, AsyncSessions),
        StoreKind.TOTP: (MongoTotpOps, Totp, AsyncTotp),
        StoreKind.MAGIC_LINKS: (MongoMagicLinkOps, MagicLinks, AsyncMagicLinks),
    }
    ops, sync_store, async_store = kinds[kind]
    store = async_store if asynchronous else sync_store
    return store(ops(collections, namespace), runner, namespace=namespace)
