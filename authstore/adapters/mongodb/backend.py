"""The ``mongodb`` and ``mongodb+srv`` URL schemes: every store, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.ops import durable_ops
from authstore.adapters.common.stores import GroupingBackend, SharedStores
from authstore.adapters.mongodb.settings import MongoSettings, parse_settings
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL, loopback_twin

__all__ = ["MongoBackend", "backend"]

_COLLECTIONS = {
    StoreKind.CACHE: ("cache",),
    StoreKind.SESSIONS: ("sessions", "locks"),
    StoreKind.TOTP: ("totp",),
    StoreKind.MAGIC_LINKS: ("magic_links", "locks"),
}
ALL_KINDS = ("cache", "sessions", "totp", "magic_links", "locks")


UNREACHABLE_TIMEOUT = 0.5
"""Seconds: pymongo retries a refused server until its selection timeout, so the
unreachable twin waits this long, not the deployment's timeout, per operation."""


class MongoBackend(GroupingBackend):
    """Opening a store connects nothing; its runner creates the indexes on first use.

    The runner modules import pymongo, so only opening a store imports the driver.
    """

    name = "mongodb"

    def settings(self, url: StoreURL) -> MongoSettings:
        return parse_settings(url)

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same database, options and credentials on a closed loopback port, with a
        short timeout; a mongodb+srv:// URL becomes mongodb:// (no DNS to look up)."""
        options = {
            name: value for name, value in url.options.items() if not name.lower().startswith("srv")
        }
        timeout = min(self.settings(url).timeout, UNREACHABLE_TIMEOUT)
        twin = StoreURL("mongodb", url.hosts, url.username, url.password, url.path, options)
        return loopback_twin(twin, timeout=str(timeout))

    def runner(
        self,
        settings: MongoSettings,
        kinds: tuple[str, ...],
        *,
        asynchronous: bool,
        auto_migrate: bool = True,
    ) -> Any:
        if asynchronous:
            from authstore.adapters.mongodb.aio import AsyncMongoRunner

            return AsyncMongoRunner(settings, kinds, auto_migrate=auto_migrate)
        from authstore.adapters.mongodb.sync import SyncMongoRunner

        return SyncMongoRunner(settings, kinds, auto_migrate=auto_migrate)

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        """Stores of ``kinds`` over one MongoClient (one pool per server it talks to)."""
        settings = self.settings(url)
        kinds = tuple(StoreKind(kind) for kind in kinds)
        collections = tuple(dict.fromkeys(name for kind in kinds for name in _COLLECTIONS[kind]))
        runner = self.runner(settings, collections, asynchronous=asynchronous)
        ops = {kind: _ops(kind, settings) for kind in kinds}
        if settings.write_concern is not None:
            ops = {kind: durable_ops(kind_ops) for kind, kind_ops in ops.items()}
        return SharedStores.over(
            runner, ops, asynchronous=asynchronous, namespace=settings.namespace
        )

    def migrate(self, url: StoreURL) -> list[str]:
        from authstore.adapters.mongodb.ops.base import create_indexes

        settings = self.settings(url)
        runner = self.runner(settings, ALL_KINDS, asynchronous=False, auto_migrate=False)
        try:
            done = runner.run(create_indexes(settings.collections, ALL_KINDS))
        finally:
            runner.close()
        return [f"mongodb: indexes in {settings.database}: " + "; ".join(done)]

    def _documents(self, url: StoreURL, namespace: str, delete: bool) -> int:
        from authstore.adapters.mongodb.ops.base import namespace_documents

        settings = self.settings(url)
        runner = self.runner(settings, ALL_KINDS, asynchronous=False, auto_migrate=False)
        try:
            found: int = runner.run(
                namespace_documents(settings.collections, namespace, delete=delete)
            )
        finally:
            runner.close()
        return found

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Delete every document of ``namespace`` in the five collections."""
        self._documents(url, namespace, delete=True)

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        return self._documents(url, namespace, delete=False)


def _ops(kind: StoreKind, settings: MongoSettings) -> object:
    """The Mongo ops of one store kind (they import no driver)."""
    from authstore.adapters.mongodb import ops

    if kind is StoreKind.CACHE:
        return ops.MongoCacheOps(settings.collections)
    per_kind = {
        StoreKind.SESSIONS: ops.MongoSessionOps,
        StoreKind.TOTP: ops.MongoTotpOps,
        StoreKind.MAGIC_LINKS: ops.MongoMagicLinkOps,
    }
    return per_kind[kind](settings.collections, settings.namespace)


backend = MongoBackend()
