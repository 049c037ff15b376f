"""A store of any kind over any SQL database: the SQL ops inside the common store classes."""

from __future__ import annotations

from collections.abc import Callable
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
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, SqlTotpOps
from authstore.adapters.sql.schema import Tables
from authstore.contracts.records import StoreKind

__all__ = ["make_store"]

_OpsFactory = Callable[[Dialect, Tables, str], object]

_KINDS: dict[StoreKind, tuple[_OpsFactory, Callable[..., Any], Callable[..., Any]]] = {
    StoreKind.CACHE: (lambda d, t, _namespace: SqlCacheOps(d, t), Cache, AsyncCache),
    StoreKind.SESSIONS: (SqlSessionOps, Sessions, AsyncSessions),
    StoreKind.TOTP: (SqlTotpOps, Totp, AsyncTotp),
    StoreKind.MAGIC_LINKS: (SqlMagicLinkOps, MagicLinks, AsyncMagicLinks),
}


def make_store(
    kind: StoreKind,
    runner: Any,
    *,
    asynchronous: bool,
    dialect: Dialect,
    tables: Tables,
    namespace: str,
) -> Any:
    """``runner`` is a Runner, or an AsyncRunner when ``asynchronous``."""
    ops_factory, sync_store, async_store = _KINDS[StoreKind(kind)]
    store = async_store if asynchronous else sync_store
    return store(ops_factory(dialect, tables, namespace), runner, namespace=namespace)
