"""A SQL database's backend object: its URL scheme's settings, its runners, the stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authstore.adapters.common.stores import GroupingBackend, SharedStores
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, SqlTotpOps
from authstore.adapters.sql.schema import Tables, clear_namespace, count_namespace, migrate
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL

__all__ = ["SqlBackend", "make_ops"]

_OPS: dict[StoreKind, Callable[[Dialect, Tables, str], object]] = {
    StoreKind.CACHE: lambda dialect, tables, _namespace: SqlCacheOps(dialect, tables),
    StoreKind.SESSIONS: SqlSessionOps,
    StoreKind.TOTP: SqlTotpOps,
    StoreKind.MAGIC_LINKS: SqlMagicLinkOps,
}


def make_ops(kind: StoreKind, dialect: Dialect, tables: Tables, namespace: str) -> object:
    """The SQL ops of one store kind."""
    return _OPS[StoreKind(kind)](dialect, tables, namespace)


class SqlBackend(GroupingBackend):
    """Opening a store connects nothing: its runner connects and migrates on first use.

    A database subclass parses its URL and makes its runners; its runner modules
    import the drivers, so ``runner`` imports them only when a store is opened.
    """

    name = "sql"

    def settings(self, url: StoreURL) -> Any:
        """The URL and options checked: an object with ``tables`` and ``namespace``."""
        raise NotImplementedError

    def runner(self, settings: Any, *, asynchronous: bool, auto_migrate: bool = True) -> Any:
        """A Runner, or an AsyncRunner when ``asynchronous``; it has a ``dialect``."""
        raise NotImplementedError

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        """Stores of ``kinds`` over one runner: one pool (or one connection, SQLite)."""
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=asynchronous)
        ops = {
            StoreKind(kind): make_ops(kind, runner.dialect, settings.tables, settings.namespace)
            for kind in kinds
        }
        return SharedStores.over(
            runner, ops, asynchronous=asynchronous, namespace=settings.namespace
        )

    def migrate(self, url: StoreURL) -> list[str]:
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=False, auto_migrate=False)
        try:
            report = runner.run(migrate(runner.dialect, settings.tables))
        finally:
            runner.close()
        return [report.describe(self.name)]

    def _run_once(self, url: StoreURL, op: Any) -> Any:
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=False)
        try:
            return runner.run(op(settings.tables))
        finally:
            runner.close()

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Delete every row ``namespace`` holds (cache keys by prefix, the rest by column)."""
        self._run_once(url, lambda tables: clear_namespace(tables, namespace))

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        count: int = self._run_once(url, lambda tables: count_namespace(tables, namespace))
        return count
