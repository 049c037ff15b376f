"""A store of any kind over any SQL database: the SQL ops inside the common store classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authstore.adapters.common.stores import open_store
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, SqlTotpOps
from authstore.adapters.sql.schema import Tables
from authstore.contracts.records import StoreKind

__all__ = ["make_ops", "make_store"]

_OpsFactory = Callable[[Dialect, Tables, str], object]

_OPS: dict[StoreKind, _OpsFactory] = {
    StoreKind.CACHE: lambda d, t, _namespace: SqlCacheOps(d, t),
    StoreKind.SESSIONS: SqlSessionOps,
    StoreKind.TOTP: SqlTotpOps,
    StoreKind.MAGIC_LINKS: SqlMagicLinkOps,
}


def make_ops(kind: StoreKind, dialect: Dialect, tables: Tables, namespace: str) -> object:
    """The SQL ops of one store kind."""
    return _OPS[StoreKind(kind)](dialect, tables, namespace)


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
    ops = make_ops(kind, dialect, tables, namespace)
    return open_store(kind, ops, runner, asynchronous=asynchronous, namespace=namespace)
