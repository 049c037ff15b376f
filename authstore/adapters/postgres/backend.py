"""The ``postgresql`` and ``postgres`` URL schemes: every store, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.postgres.settings import PostgresSettings, parse_settings
from authstore.adapters.sql.backend import SqlBackend
from authstore.registry import StoreURL, loopback_twin

__all__ = ["PostgresBackend", "backend"]


class PostgresBackend(SqlBackend):
    name = "postgresql"

    def settings(self, url: StoreURL) -> PostgresSettings:
        return parse_settings(url)

    def runner(
        self, settings: PostgresSettings, *, asynchronous: bool, auto_migrate: bool = True
    ) -> Any:
        if asynchronous:
            from authstore.adapters.postgres.aio import AsyncPostgresRunner

            return AsyncPostgresRunner(settings, auto_migrate=auto_migrate)
        from authstore.adapters.postgres.sync import SyncPostgresRunner

        return SyncPostgresRunner(settings, auto_migrate=auto_migrate)

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same URL on closed loopback ports (``authstore check`` proves fail-closed there)."""
        return loopback_twin(url)


backend = PostgresBackend()
