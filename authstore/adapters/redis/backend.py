"""The Redis URL schemes: every store, sync (redis-py) or async (redis.asyncio)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from authstore.adapters.common.ops import durable_ops
from authstore.adapters.common.stores import GroupingBackend, SharedStores
from authstore.adapters.redis.ops import (
    RedisCacheOps,
    RedisMagicLinkOps,
    RedisSessionOps,
    RedisTotpOps,
)
from authstore.adapters.redis.routing import hash_bucket, id_bucket, user_bucket
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
        if settings.replicas:
            ops = {kind: durable_ops(kind_ops) for kind, kind_ops in ops.items()}
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
        """Nothing to create (scripts load themselves); with ``layout=spread``, move the
        namespace's sessions and links from the ``namespace`` layout; report what the
        server would evict."""
        settings = self.settings(url)
        runner = self.runner(settings, asynchronous=False)
        try:
            info = runner.client.info("memory")
            persistence = runner.client.info("persistence")
            moved = move_to_spread(runner.client, settings) if settings.layout == "spread" else None
        except runner.driver_errors as error:
            raise runner.translate(error) from error
        finally:
            runner.close()
        report = [
            f"redis ({settings.display}): nothing to migrate (keys and scripts appear on use)"
            if not moved
            else f"redis ({settings.display}): moved {moved} to layout=spread"
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
        """SCAN patterns of every key ``namespace`` holds: cache keys ``NS:kind:key``
        and the spread layout's ``NS:sessions:{bucket tag}:...``, the other stores' keys
        under a hash tag ``{NS:kind}`` or ``{NS:totp:user}``.
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


POINTER_SLACK_MS = 2000
"""How long a pointer outlives its record (SLACK in scripts/_tokens.lua)."""


def move_to_spread(client: Any, settings: RedisSettings) -> str | None:
    """Move the sessions and magic links of ``settings.namespace`` from the namespace
    layout (``{NS:sessions}``, ``{NS:links}``: one slot) to the spread layout: each
    live record into its user's bucket, in its index order, a pointer in its hash's
    bucket (and its public id's) when that is another one, a revoked session's mark
    into its hash's bucket; then the old keys go. What moved, or None when nothing."""
    moved: list[str] = []
    for ops in (RedisSessionOps, RedisMagicLinkOps):
        old, new = ops(settings.namespace), ops(settings.namespace, "spread")
        count = _move(client, old.prefix, new.prefixes, old.kind)
        if count:
            moved.append(f"{count} {old.kind}")
    return ", ".join(moved) or None


def _scan(client: Any, pattern: str) -> list[bytes]:
    scan: dict[str, Any] = {"match": pattern, "count": 1000}
    if is_cluster_client(client):
        scan["target_nodes"] = client.PRIMARIES
    return list(client.scan_iter(**scan))


def _move(client: Any, old: str, prefixes: tuple[str, ...], kind: str) -> int:
    from authstore.adapters.redis.commands import lua

    adopt = client.register_script(lua("record_adopt").source)
    moved = 0
    for index_key in _scan(client, f"{old}u:*"):
        user = index_key.decode()[len(old) + 2 :]
        bucket = user_bucket(user)
        prefix = prefixes[bucket]
        if kind == "sessions":
            hashes = [h.decode() for h in client.zrange(index_key, 0, -1)]
        else:
            hashes = sorted(h.decode() for h in client.smembers(index_key))
        for token_hash in hashes:
            key = f"{old}t:{token_hash}"
            fields = client.hgetall(key)
            at = client.pexpiretime(key)
            if not fields or at < 0:
                continue  # gone, or not one authstore wrote
            public_id = fields.get(b"id", b"").decode() if kind == "sessions" else ""
            pairs = [part for item in fields.items() for part in item]
            args = [prefix, kind, token_hash, user, at, public_id, *pairs]
            if adopt(keys=[prefix + "seq"], args=args) != 1:
                continue
            moved += 1
            home = hash_bucket(token_hash)
            if home != bucket:
                pointer = f"{prefixes[home]}p:{token_hash}"
                client.set(pointer, str(bucket), pxat=at + POINTER_SLACK_MS)
            if public_id and id_bucket(public_id) != bucket:
                client.set(f"{prefixes[id_bucket(public_id)]}q:{public_id}", str(bucket), pxat=at)
    if kind == "sessions":
        for mark in _scan(client, f"{old}r:*"):
            token_hash = mark.decode()[len(old) + 2 :]
            at = client.pexpiretime(mark)
            if at > 0:
                client.set(f"{prefixes[hash_bucket(token_hash)]}r:{token_hash}", "1", pxat=at)
    leftovers = _scan(client, f"{old}*")
    for start in range(0, len(leftovers), 500):
        client.unlink(*leftovers[start : start + 500])
    return moved


backend = RedisBackend()
