"""The ``sqlite`` URL scheme: every store over one SQLite file, sync or async."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from authstore.adapters.sql.backend import SqlBackend
from authstore.adapters.sqlite.settings import MEMORY, SQLiteSettings, parse_settings
from authstore.registry import StoreURL

__all__ = ["SQLiteBackend", "backend"]


class SQLiteBackend(SqlBackend):
    name = "sqlite"

    def settings(self, url: StoreURL) -> SQLiteSettings:
        return parse_settings(url)

    def runner(
        self, settings: SQLiteSettings, *, asynchronous: bool, auto_migrate: bool = True
    ) -> Any:
        # The runners' modules import the drivers, so they are imported only here.
        if asynchronous:
            from authstore.adapters.sqlite.aio import AsyncSQLiteRunner

            return AsyncSQLiteRunner(settings, auto_migrate=auto_migrate)
        from authstore.adapters.sqlite.sync import SyncSQLiteRunner

        return SyncSQLiteRunner(settings, auto_migrate=auto_migrate)

    def unreachable_url(self, url: StoreURL) -> StoreURL | None:
        """A database file "inside" the deployment's own file (or in its missing
        directory): SQLite can never open it, as on a lost or unreadable volume.
        None for ``:memory:``, which does no I/O."""
        database = parse_settings(url).database
        if database == MEMORY:
            return None
        path = "/" + quote(f"{database}/unreachable.db")
        return StoreURL(url.scheme, (), None, None, path, url.options)


backend = SQLiteBackend()
