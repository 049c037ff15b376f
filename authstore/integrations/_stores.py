"""What the framework integrations share: opening the four stores, checking that they
answer, and running one flow of store calls over a sync or an async store.

``open_store_set``/``open_async_store_set`` are the one place the integrations open
stores: each store is opened on its own from its URL today; a helper that opens four
stores over one pool can replace their bodies without touching the frameworks' code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from authstore.adapters.common.ops import drive, drive_async
from authstore.contracts.errors import ConfigurationError
from authstore.contracts.records import StoreKind
from authstore.groups import open_async_stores, open_stores
from authstore.registry import backend_for, open_store

__all__ = [
    "ALL_KINDS",
    "Flow",
    "StoreSet",
    "StoreSpec",
    "call",
    "open_async_store_set",
    "open_store_set",
    "probe",
    "run_async",
    "run_sync",
]

T = TypeVar("T")
ALL_KINDS = tuple(StoreKind)

Step = tuple[str, tuple[Any, ...], Mapping[str, Any]]
Flow = Generator[Step, Any, T]
"""Yields store calls (method, args, kwargs), receives their results, returns the answer:
written once, run by ``run_sync`` over a sync store or ``run_async`` over its async twin."""


def call(method: str, *args: Any, **kwargs: Any) -> Flow[Any]:
    """A flow of one call: ``value = yield from call("get", key)``."""
    return (yield (method, args, kwargs))


def run_sync(flow: Flow[T], store: Any) -> T:
    return drive(flow, lambda step: getattr(store, step[0])(*step[1], **step[2]))


async def run_async(flow: Flow[T], store: Any) -> T:
    execute: Callable[[Step], Awaitable[Any]] = lambda step: getattr(store, step[0])(  # noqa: E731
        *step[1], **step[2]
    )
    return await drive_async(flow, execute)


@dataclass(frozen=True)
class StoreSpec:
    """Where one store lives: its URL and the keyword options given to ``open_*``."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, url: object, options: Mapping[str, Any] | None = None) -> StoreSpec:
        if not isinstance(url, str) or not url:
            raise ConfigurationError("a store URL must be a non-empty str, e.g. sqlite:///auth.db")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationError(f"store options must be a dict, not {type(options).__name__}")
        backend_for(url)  # a malformed URL or an unknown scheme fails here, before any I/O
        return cls(url, tuple(sorted((options or {}).items())))


def open_one(kind: StoreKind, spec: StoreSpec, *, asynchronous: bool) -> Any:
    return open_store(spec.url, kind, asynchronous=asynchronous, **dict(spec.options))


@dataclass
class StoreSet:
    """The stores an application opened, by kind: ``.cache``, ``.sessions``, ``.totp``,
    ``.magic_links`` (None for a kind it did not open)."""

    cache: Any = None
    sessions: Any = None
    totp: Any = None
    magic_links: Any = None
    groups: list[Any] = field(default_factory=list)
    """The ``open_stores`` groups behind them: one pool per distinct URL and options."""

    def opened(self) -> list[tuple[StoreKind, Any]]:
        return [
            (kind, getattr(self, kind.value)) for kind in ALL_KINDS if getattr(self, kind.value)
        ]

    def close(self) -> None:
        for group in self.groups:
            with contextlib.suppress(Exception):
                group.close()

    async def aclose(self) -> None:
        for group in self.groups:
            with contextlib.suppress(Exception):
                await group.aclose()


def _open_set(specs: Mapping[StoreKind, StoreSpec], asynchronous: bool) -> StoreSet:
    """Kinds that share a URL and options share one group, so one pool."""
    stores = StoreSet()
    kinds_of: dict[StoreSpec, list[StoreKind]] = {}
    for kind, spec in specs.items():
        kinds_of.setdefault(spec, []).append(kind)
    opener = open_async_stores if asynchronous else open_stores
    try:
        for spec, kinds in kinds_of.items():
            group = opener(spec.url, kinds=tuple(kinds), **dict(spec.options))
            stores.groups.append(group)
            for kind in kinds:
                setattr(stores, kind.value, getattr(group, kind.value))
    except BaseException:
        if not asynchronous:
            stores.close()  # async stores connect at first use: nothing to close yet
        raise
    return stores


def open_store_set(specs: Mapping[StoreKind, StoreSpec]) -> StoreSet:
    """The sync stores of ``specs``: one ``open_stores`` group (one pool) per URL."""
    return _open_set(specs, asynchronous=False)


def open_async_store_set(specs: Mapping[StoreKind, StoreSpec]) -> StoreSet:
    """The async stores of ``specs``: one ``open_async_stores`` group (one pool) per URL."""
    return _open_set(specs, asynchronous=True)


def specs_for(
    url: str, kinds: Iterable[StoreKind | str], options: Mapping[str, Any]
) -> dict[StoreKind, StoreSpec]:
    """Every kind of ``kinds`` at one URL with the same options."""
    spec = StoreSpec.of(url, options)
    return {StoreKind(kind): spec for kind in kinds}


def probe(kind: StoreKind) -> Flow[None]:
    """The startup check of a store of ``kind``: its ``ping`` (one round trip within its
    timeout; on SQL the tables are created by it, as by any first operation)."""
    yield from call("ping")
