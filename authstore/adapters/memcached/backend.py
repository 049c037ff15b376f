"""The ``memcached`` URL scheme: the cache store only, sync or async."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.stores import GroupingBackend, SharedStores
from authstore.adapters.memcached.ops import MemcachedCacheOps
from authstore.adapters.memcached.settings import parse_settings
from authstore.contracts.errors import UnsupportedOperationError
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL, loopback_twin

__all__ = ["MemcachedBackend", "backend"]

_ELSEWHERE = "memory://, sqlite://, postgresql://, mysql://, redis://, mongodb://"


def _refusal(kind: StoreKind) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"memcached holds only the cache store, not {kind.value}: it evicts entries "
        f"when full, so it must not hold sessions, TOTP secrets or magic links. "
        f"Open the {kind.value} store on a backend that has it: {_ELSEWHERE}"
    )


class MemcachedBackend(GroupingBackend):
    """Opening a store connects nothing: the runner connects on first use."""

    name = "memcached"

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        """The cache over one client; every other kind asked for is refused, with why."""
        refused: dict[StoreKind, UnsupportedOperationError] = {
            kind: _refusal(kind) for kind in map(StoreKind, kinds) if kind is not StoreKind.CACHE
        }
        if StoreKind.CACHE not in kinds:
            raise next(iter(refused.values()))
        settings = parse_settings(url)
        runner: Any
        if asynchronous:
            from authstore.adapters.memcached.aio import AsyncMemcachedRunner

            runner = AsyncMemcachedRunner(settings)
        else:
            from authstore.adapters.memcached.sync import SyncMemcachedRunner

            runner = SyncMemcachedRunner(settings)
        shared = SharedStores.over(
            runner,
            {
                StoreKind.CACHE: MemcachedCacheOps(
                    timeout=settings.timeout, lock_factory=runner.lock_factory
                )
            },
            asynchronous=asynchronous,
            namespace=settings.namespace,
        )
        shared.refused = refused
        return shared

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        kind = StoreKind(kind)
        if kind is not StoreKind.CACHE:
            raise _refusal(kind)
        return super().open(url, kind, asynchronous=asynchronous)

    def migrate(self, url: StoreURL) -> list[str]:
        parse_settings(url)
        return ["memcached: nothing to migrate (no schema)"]

    def unreachable_url(self, url: StoreURL) -> StoreURL:
        """The same URL on closed loopback ports (``authstore check`` proves fail-closed there)."""
        return loopback_twin(url)


backend = MemcachedBackend()
