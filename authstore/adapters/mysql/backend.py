"""The ``mysql`` and ``mariadb`` URL schemes: every store over MySQL 8 or MariaDB, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.mysql.settings import MySQLSettings, parse_settings
from authstore.adapters.sql.backend import SqlBackend
from authstore.registry import StoreURL, loopback_twin

__all__ = ["MySQLBackend", "backend"]


class MySQLBackend(SqlBackend):
    name = "mysql"

    def settings(self, url: StoreURL) -> MySQLSettings:
        return parse_settings(url)

    def runner(self, settings: Any, *, asynchronous: bool, auto_migrate: bool = True) -> Any:
        # The runners' modules import the drivers, so they are imported only here.
        if asynchronous:
            from authstore.adapters.mysql.aio import AsyncMySQLRunner

            return AsyncMySQLRunner(settings, auto_migrate=auto_migrate)
        from authstore.adapters.mysql.sync import SyncMySQLRunner

        return SyncMySQLRunner(settings, auto_migrate=auto_migrate)

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same URL on closed loopback ports (``authstore check`` proves fail-closed there)."""
        return loopback_twin(url)


backend = MySQLBackend()
