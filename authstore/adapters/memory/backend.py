"""``memory://`` and ``memory://NAME``: process-local stores, no server, no dependency.

``memory://`` gives each store its own data; ``memory://NAME`` shares one data
set per name within the process (a sync and an async store can then see the same
state). Options: ``namespace``, ``max_entries``.
"""

from __future__ import annotations

import threading
from typing import Any

from authstore.adapters.common.stores import DEFAULT_NAMESPACE, GroupingBackend, SharedStores
from authstore.adapters.memory.ops import (
    MemoryCacheOps,
    MemoryData,
    MemoryMagicLinkOps,
    MemorySessionOps,
    MemoryTotpOps,
)
from authstore.adapters.memory.runner import AsyncMemoryRunner, MemoryRunner
from authstore.contracts.errors import ConfigurationError
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL

__all__ = ["MemoryBackend"]


class MemoryBackend(GroupingBackend):
    name = "memory"
    shared_across_processes = False
    """Its data lives in the process that opened it (the contract suite skips its
    cross-process races); ``memory://NAME`` is shared by the stores of one process."""

    def __init__(self) -> None:
        self._named: dict[str, tuple[MemoryData, threading.Lock]] = {}
        self._lock = threading.Lock()

    def _data(self, name: str, max_entries: int | None) -> tuple[MemoryData, threading.Lock]:
        if not name:
            return MemoryData(max_entries), threading.Lock()
        with self._lock:
            shared = self._named.get(name)
            if shared is None:
                shared = self._named[name] = (MemoryData(max_entries), threading.Lock())
            elif shared[0].max_entries != max_entries:
                raise ConfigurationError(
                    f"memory://{name} is already open with max_entries={shared[0].max_entries}"
                )
            return shared

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        """Stores of ``kinds`` over one data set: ``memory://`` too gives the group one
        state, shared by its stores (and only by them)."""
        options = url.reader()
        namespace = options.text("namespace", DEFAULT_NAMESPACE)
        max_entries = options.optional_integer("max_entries", minimum=1)
        options.done()
        if url.path.strip("/") or url.username or url.password:
            raise ConfigurationError("a memory URL is memory:// or memory://NAME")
        name = url.hosts[0][0] if url.hosts else ""
        data, lock = self._data(name, max_entries)
        runner: MemoryRunner | AsyncMemoryRunner = (
            AsyncMemoryRunner(data, lock) if asynchronous else MemoryRunner(data, lock)
        )
        per_kind = {
            StoreKind.SESSIONS: MemorySessionOps,
            StoreKind.TOTP: MemoryTotpOps,
            StoreKind.MAGIC_LINKS: MemoryMagicLinkOps,
        }
        ops: dict[StoreKind, Any] = {}
        for kind in map(StoreKind, kinds):
            if kind is StoreKind.CACHE:
                ops[kind] = MemoryCacheOps(data)
            else:
                ops[kind] = per_kind[kind](data, namespace)
        return SharedStores.over(runner, ops, asynchronous=asynchronous, namespace=namespace)

    def migrate(self, url: StoreURL) -> list[str]:
        return ["memory: nothing to migrate (data lives in the process)"]

    def unreachable_url(self, url: StoreURL) -> None:
        """None: the data lives in this process, so the store cannot be down and
        fail-closed does not apply (``authstore check`` says so)."""
        return None

    def _namespace_entries(self, url: StoreURL, namespace: str, delete: bool) -> int:
        name = url.hosts[0][0] if url.hosts else ""
        with self._lock:
            shared = self._named.get(name)
        if shared is None:  # memory:// keeps each store's data to itself: nothing shared
            return 0
        data, lock = shared
        found = 0
        with lock:
            for keyed in (data.values, data.guarded):
                mine = [key for key in keyed if key.startswith(f"{namespace}:")]
                found += len(mine)
                if delete:
                    for key in mine:
                        del keyed[key]
            tables: tuple[dict[Any, Any], ...] = (
                data.sessions,
                data.session_ids,
                data.user_sessions,
                data.totp,
                data.links,
                data.user_links,
                data.revoked_sessions,
                data.revoked_links,
            )
            for table in tables:
                owned = [key for key in table if key[0] == namespace]
                found += len(owned)
                if delete:
                    for key in owned:
                        del table[key]
        return found

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Drop everything ``namespace`` holds in the named data set of ``url``."""
        self._namespace_entries(url, namespace, delete=True)

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        return self._namespace_entries(url, namespace, delete=False)

    def forget(self, name: str) -> None:
        """Drop a named data set (tests, or to free memory)."""
        with self._lock:
            self._named.pop(name, None)
