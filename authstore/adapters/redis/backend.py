"""The Redis URL schemes: every store, sync (redis-py) or async (redis.asyncio)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from authstore.adapters.common.stores import GroupingBackend, SharedStores
from authstore.adapters.redis.ops import (
    RedisCacheOps,
    RedisMagicLinkOps,
    RedisSessionOps,
    RedisTotpOps,
)
from authstore.adapters.redis.runner import (
    EVICTING_POLICIES,
    eviction_warning,
    is_cluster_client,
    maxmemory_policies,
    warn_if_evicting,
)
from authstore.adapters.redis.settings import RedisSettings, parse_settings
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL, loopback_twin

__all__ = ["EVICTING_POLICIES", "RedisBackend", "backend", "eviction_warning", "warn_if_evicting"]

_OPS: dict[StoreKind, Any] = {
    StoreKind.CACHE: lambda _namespace, _layout: RedisCacheOps(),
    StoreKind.SESSIONS: RedisSessionOps,
    StoreKind.TOTP: lambda namespace, _layout: RedisTotpOps(namespace),
    StoreKind.MAGIC_LINKS: RedisMagicLinkOps,
}


class RedisBackend(GroupingBackend):
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

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        """Stores of ``kinds`` over one client and its pool (every topology)."""
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=asynchronous)
        ops = {
            StoreKind(kind): _OPS[StoreKind(kind)](settings.namespace, settings.layout)
            for kind in kinds
        }
        return SharedStores.over(
            runner, ops, asynchronous=asynchronous, namespace=settings.namespace
        )

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same URL on closed loopback ports (the same Sentinel service name, TLS
        options and credentials); for a unix socket, a socket in a missing directory."""
        if url.scheme == "redis+unix":
            missing = Path(tempfile.gettempdir()) / f"authstore-unreachable-{uuid.uuid4().hex}"
            path = quote(str(missing / "redis.sock"))
            return StoreURL(url.scheme, (), url.username, url.password, path, url.options)
        return loopback_twin(url)

    def migrate(self, url: StoreURL) -> list[str]:
        """Nothing to create (scripts load themselves); report what the server would evict."""
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=False)
        try:
            info = runner.client.info("memory")
            persistence = runner.client.info("persistence")
        except runner.driver_errors as error:
            raise runner.translate(error) from error
        finally:
            runner.close()
        report = [
            f"redis ({settings.display}): nothing to migrate (keys and scripts appear on use)"
        ]
        for policy in sorted(maxmemory_policies(info)):
            warning = eviction_warning(policy)  # the runner warned already, at first use
            if warning:
                report.append(f"redis: WARNING {warning}")
        if not persistence.get("aof_enabled"):
            report.append(
                "redis: note: AOF is off; sessions, TOTP state and magic links survive a "
                "restart only with appendonly yes"
            )
        return report

    @staticmethod
    def namespace_patterns(namespace: str) -> tuple[str, ...]:
        """SCAN patterns of every key ``namespace`` holds: cache keys ``NS:kind:key``,
        the other stores' keys under a hash tag ``{NS:kind}`` or ``{NS:totp:user}``.
        Namespaces are ``[A-Za-z0-9_.-]``: nothing in them is a glob character."""
        return (f"{namespace}:*", f"{{{namespace}:*")

    def _keys(self, url: StoreURL, namespace: str, delete: bool) -> int:
        """SCAN (never KEYS) every primary for the namespace's keys; UNLINK them in batches."""
        runner = self.runner(self.settings(url), asynchronous=False)
        try:
            client = runner.client
            scan: dict[str, Any] = {"count": 1000}
            if is_cluster_client(client):
                scan["target_nodes"] = client.PRIMARIES
            found = 0
            for pattern in self.namespace_patterns(namespace):
                batch: list[Any] = []
                for key in client.scan_iter(match=pattern, **scan):
                    found += 1
                    batch.append(key)
                    if delete and len(batch) == 500:
                        client.unlink(*batch)
                        batch = []
                if delete and batch:
                    client.unlink(*batch)
            return found
        except runner.driver_errors as error:
            raise runner.translate(error) from error
        finally:
            runner.close()

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Remove every key of ``namespace`` (on a cluster: from every primary)."""
        self._keys(url, namespace, delete=True)

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        return self._keys(url, namespace, delete=False)


backend = RedisBackend()
