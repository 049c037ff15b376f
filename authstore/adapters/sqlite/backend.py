"""The ``sqlite`` URL scheme: every store over one SQLite file, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.sql.schema import migrate
from authstore.adapters.sql.stores import make_store
from authstore.adapters.sqlite.settings import parse_settings
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL

__all__ = ["SQLiteBackend", "backend"]


class SQLiteBackend:
    """Opening a store connects nothing: its runner connects and migrates on first use."""

    name = "sqlite"

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        settings = parse_settings(url)
        runner: Any
        # The runners' modules import the drivers, so they are imported only here.
        if asynchronous:
            from authstore.adapters.sqlite.aio import AsyncSQLiteRunner

            runner = AsyncSQLiteRunner(settings)
        else:
            from authstore.adapters.sqlite.sync import SyncSQLiteRunner

            runner = SyncSQLiteRunner(settings)
        return make_store(
            kind,
            runner,
            asynchronous=asynchronous,
            dialect=runner.dialect,
            tables=settings.tables,
            namespace=settings.namespace,
        )

    def migrate(self, url: StoreURL) -> list[str]:
        from authstore.adapters.sqlite.sync import SyncSQLiteRunner

        settings = parse_settings(url)
        runner = SyncSQLiteRunner(settings, auto_migrate=False)
        try:
            report = runner.run(migrate(runner.dialect, settings.tables))
        finally:
            runner.close()
        return [report.describe(self.name)]


backend = SQLiteBackend()
