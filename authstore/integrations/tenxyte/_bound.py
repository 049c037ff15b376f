"""How the tenxyte classes run one flow over sync or async stores.

A flow is a generator that yields ``Call``s (which store, which method, which
arguments) and receives their results, so each storage step of tenxyte's interfaces
and services is written once: ``Bound.run`` executes it with the sync stores,
``Bound.arun`` awaits the async stores (never a thread for a store's I/O), through
authstore's own ``drive``/``drive_async``. CPU work (hashing, JWT, bcrypt) happens in
the flow itself, synchronously.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from authstore.adapters.common.ops import drive, drive_async
from authstore.contracts.errors import ConfigurationError

__all__ = ["Bound", "Call", "Flow", "call", "check_twins"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    target: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Flow = Generator[Call, Any, T]
"""Yields store calls, receives their results, returns the answer."""


def call(target: str, method: str, *args: Any, **kwargs: Any) -> Flow[Any]:
    """A flow of one call: ``result = yield from call("cache", "get", key)``."""
    return (yield Call(target, method, args, kwargs))


@dataclass(frozen=True, slots=True)
class Pair:
    """An authstore store: a sync object and an async object with the same method names."""

    sync: object | None
    aio: object | None


@dataclass(frozen=True, slots=True)
class Suffixed:
    """An application's tenxyte-style object: ``name`` and, where it has one, ``name_async``.

    Only these (user lookups, e-mail senders) may fall back to a thread in async
    flows, as tenxyte itself does, when the application gave no ``_async`` method.
    """

    obj: object


def _process_data(store: object) -> tuple[str, object] | None:
    """Where a store keeps its data when that is inside this process, else None:
    ``("memory", data set)`` for a memory store, ``("sqlite", None)`` for a SQLite
    ``:memory:`` database (private to the store that opened it)."""
    from authstore.adapters.memory.runner import AsyncMemoryRunner, MemoryRunner

    runner = getattr(store, "_runner", None)
    runner = getattr(runner, "_runner", runner)  # observability's wrapper, when enabled
    if isinstance(runner, AsyncMemoryRunner):
        runner = runner.sync_runner
    if isinstance(runner, MemoryRunner):
        return "memory", runner.data
    settings = getattr(runner, "settings", None)
    if (
        type(runner).__module__.startswith("authstore.adapters.sqlite.")
        and getattr(settings, "database", None) == ":memory:"
    ):
        return "sqlite", None
    return None


def check_twins(owner: str, name: str, pair: Pair) -> None:
    """Refuse a sync and an async store that cannot see each other's data.

    ``memory://`` without a name (or two names) and SQLite's ``:memory:`` give every
    store data of its own: a token blacklisted through the sync store would stay valid
    through the async one. Stores of one named ``memory://NAME`` share their data."""
    if pair.sync is None or pair.aio is None:
        return
    sync, aio = _process_data(pair.sync), _process_data(pair.aio)
    if sync is None and aio is None:
        return
    if sync is not None and aio is not None and sync[0] == "memory" and sync[1] is aio[1]:
        return  # one memory://NAME
    raise ConfigurationError(
        f"{owner} was given a sync and an async {name} store over separate in-process "
        "data (memory:// without a name, or SQLite :memory:, opens new data for each "
        "store): what one of them records, a revoked token say, the other would never "
        "see. Open both from one named URL, e.g. memory://auth (or a SQLite file), or "
        "give only one of them"
    )


class Bound:
    """Targets by name; ``run`` drives a flow synchronously, ``arun`` asynchronously."""

    def __init__(self, owner: str, targets: Mapping[str, Pair | Suffixed]) -> None:
        self._owner = owner
        self.targets: dict[str, Pair | Suffixed] = dict(targets)
        for name, target in self.targets.items():
            if isinstance(target, Pair):
                check_twins(owner, name, target)

    def _target(self, name: str) -> Pair | Suffixed:
        try:
            return self.targets[name]
        except KeyError:
            raise ConfigurationError(f"{self._owner} has no {name!r} store") from None

    def _sync_call(self, step: Call) -> Any:
        target = self._target(step.target)
        if isinstance(target, Suffixed):
            return getattr(target.obj, step.method)(*step.args, **step.kwargs)
        if target.sync is None:
            raise ConfigurationError(
                f"{self._owner} was given only an async {step.target} store: its sync methods"
                " need a sync store (its async methods use the async one, or the sync one in"
                " a worker thread)"
            )
        return getattr(target.sync, step.method)(*step.args, **step.kwargs)

    def _async_call(self, step: Call) -> Awaitable[Any]:
        target = self._target(step.target)
        if isinstance(target, Suffixed):
            method = getattr(target.obj, f"{step.method}_async", None)
            if method is not None:
                result: Awaitable[Any] = method(*step.args, **step.kwargs)
                return result
            sync = getattr(target.obj, step.method)
            return asyncio.to_thread(sync, *step.args, **step.kwargs)
        if target.aio is None:
            # Only a sync store: what tenxyte does for an object without ``*_async``
            # methods, a worker thread per call, so its async services work over it.
            return asyncio.to_thread(getattr(target.sync, step.method), *step.args, **step.kwargs)
        awaitable: Awaitable[Any] = getattr(target.aio, step.method)(*step.args, **step.kwargs)
        return awaitable

    def run(self, flow: Flow[T]) -> T:
        return drive(flow, self._sync_call)

    async def arun(self, flow: Flow[T]) -> T:
        return await drive_async(flow, self._async_call)
