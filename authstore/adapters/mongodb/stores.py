"""A store of any kind over MongoDB: the Mongo ops inside the common store classes."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.stores import open_store
from authstore.adapters.mongodb.ops import (
    MongoCacheOps,
    MongoMagicLinkOps,
    MongoSessionOps,
    MongoTotpOps,
)
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.contracts.records import StoreKind

__all__ = ["make_ops", "make_store"]


def make_store(kind: StoreKind, runner: Any, settings: MongoSettings, *, asynchronous: bool) -> Any:
    """``runner`` is a Runner, or an AsyncRunner when ``asynchronous``."""
    ops = make_ops(kind, settings)
    namespace = settings.namespace
    return open_store(kind, ops, runner, asynchronous=asynchronous, namespace=namespace)


def make_ops(kind: StoreKind, settings: MongoSettings) -> object:
    """The Mongo ops of one store kind."""
    collections, namespace = settings.collections, settings.namespace
    ops: Any
    if kind is StoreKind.CACHE:
        ops = MongoCacheOps(collections)
    else:
        per_kind = {
            StoreKind.SESSIONS: MongoSessionOps,
            StoreKind.TOTP: MongoTotpOps,
            StoreKind.MAGIC_LINKS: MongoMagicLinkOps,
        }
        ops = per_kind[kind](collections, namespace)
    return ops
