"""The ``memcached`` URL scheme: the cache store only, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.stores import AsyncCache, Cache
from authstore.adapters.memcached.ops import MemcachedCacheOps
from authstore.adapters.memcached.settings import parse_settings
from authstore.contracts.errors import UnsupportedOperationError
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL, loopback_twin

__all__ = ["MemcachedBackend", "backend"]

_ELSEWHERE = "memory://, sqlite://, postgresql://, mysql://, redis://, mongodb://"


class MemcachedBackend:
    """Opening a store connects nothing: the runner connects on first use."""

    name = "memcached"

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        kind = StoreKind(kind)
        if kind is not StoreKind.CACHE:
            raise UnsupportedOperationError(
                f"memcached holds only the cache store, not {kind.value}: it evicts entries "
                f"when full, so it must not hold sessions, TOTP secrets or magic links. "
                f"Open the {kind.value} store on a backend that has it: {_ELSEWHERE}"
            )
        settings = parse_settings(url)
        ops = MemcachedCacheOps()
        if asynchronous:
            from authstore.adapters.memcached.aio import AsyncMemcachedRunner

            return AsyncCache(ops, AsyncMemcachedRunner(settings), namespace=settings.namespace)
        from authstore.adapters.memcached.sync import SyncMemcachedRunner

        return Cache(ops, SyncMemcachedRunner(settings), namespace=settings.namespace)

    def migrate(self, url: StoreURL) -> list[str]:
        parse_settings(url)
        return ["memcached: nothing to migrate (no schema)"]

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same URL on closed loopback ports (``authstore check`` proves fail-closed there)."""
        return loopback_twin(url)


backend = MemcachedBackend()
