"""The Redis URL schemes: every store, sync (redis-py) or async (redis.asyncio)."""

from __future__ import annotations

import logging
import warnings
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
from authstore.adapters.redis.ops import (
    RedisCacheOps,
    RedisMagicLinkOps,
    RedisSessionOps,
    RedisTotpOps,
)
from authstore.adapters.redis.settings import RedisSettings, parse_settings
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL

__all__ = ["EVICTING_POLICIES", "RedisBackend", "backend", "eviction_warning"]

log = logging.getLogger("authstore.redis")

SAFE_POLICIES = frozenset({"noeviction", "volatile-lru", "volatile-lfu", "volatile-random"})
"""Policies that never evict a key without an expiry. authstore's sessions, TOTP state,
magic links and blacklist entries all have expiries, so only noeviction keeps every
promise; the volatile-* policies are reported too."""
EVICTING_POLICIES = frozenset(
    {
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    }
)


def eviction_warning(policy: str | None) -> str | None:
    """What to tell an operator about the server's maxmemory-policy, or None when safe."""
    if policy is None or policy not in EVICTING_POLICIES:
        return None
    return (
        f"Redis maxmemory-policy is {policy}: under memory pressure the server may evict "
        "blacklist entries, rate limiters, sessions or TOTP state (a revoked token would "
        "be accepted again); set maxmemory-policy noeviction"
    )


_STORES: dict[StoreKind, tuple[Any, Any, Any]] = {
    StoreKind.SESSIONS: (RedisSessionOps, Sessions, AsyncSessions),
    StoreKind.TOTP: (RedisTotpOps, Totp, AsyncTotp),
    StoreKind.MAGIC_LINKS: (RedisMagicLinkOps, MagicLinks, AsyncMagicLinks),
}


class RedisBackend:
    """Opening a store connects nothing: its runner connects at first use."""

    name = "redis"

    def settings(self, url: StoreURL) -> RedisSettings:
        return parse_settings(url)

    def runner(self, settings: RedisSettings, *, asynchronous: bool) -> Any:
        if asynchronous:
            from authstore.adapters.redis.aio import AsyncRedisRunner

            return AsyncRedisRunner(settings)
        from authstore.adapters.redis.sync import SyncRedisRunner

        return SyncRedisRunner(settings)

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=asynchronous)
        namespace = settings.namespace
        if kind is StoreKind.CACHE:
            store = AsyncCache if asynchronous else Cache
            return store(RedisCacheOps(), runner, namespace=namespace)
        ops, sync_store, async_store = _STORES[StoreKind(kind)]
        store = async_store if asynchronous else sync_store
        return store(ops(namespace), runner, namespace=namespace)

    def migrate(self, url: StoreURL) -> list[str]:
        """Nothing to create (scripts load themselves); report what the server would evict."""
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=False)
        try:
            info = runner.client.info("memory")
            persistence = runner.client.info("persistence")
        except runner.errors.RedisError as error:
            raise runner._translate(error) from error
        finally:
            runner.close()
        report = [
            f"redis ({settings.display}): nothing to migrate (keys and scripts appear on use)"
        ]
        warning = eviction_warning(info.get("maxmemory_policy"))
        if warning:
            warnings.warn(warning, stacklevel=2)
            log.warning(warning)
            report.append(f"redis: WARNING {warning}")
        if not persistence.get("aof_enabled"):
            report.append(
                "redis: note: AOF is off; sessions, TOTP state and magic links survive a "
                "restart only with appendonly yes"
            )
        return report


backend = RedisBackend()
