"""The operations the race tests fire from many clients at once, and the clients that fire them.

Kept apart from the test classes (no pytest import): a cross-process race runs
``run_hits`` in ``multiprocessing`` children started with ``spawn``, which import
this module to unpickle it. Every operation is written once for sync and async
stores (it returns the store's answer, awaitable or not) and answers with a small
picklable summary, so results travel back from a child process unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import (
    IssuedMagicLink,
    MagicLinkRecord,
    NewSession,
    RateLimitResult,
    StoreKind,
)

__all__ = [
    "IN_USE",
    "LONG",
    "OPERATIONS",
    "RACE_TIMEOUT",
    "Params",
    "child_init",
    "child_run",
    "fast_switching",
    "run_hits",
]

LONG = 3600.0
RACE_TIMEOUT = 60.0
"""Seconds a race may take before the clients give up waiting for each other."""
IN_USE = "TokenInUseError"
"""What a hit that raised TokenInUseError answers."""

Params = dict[str, Any]
"""What a race's setup hands every hit: tokens, ttls, instants; picklable."""
Operation = Callable[[Any, int, Params], Any]
"""``(store, hit index across all clients, params) -> answer`` (awaitable on async stores)."""


def _limit(algorithm: str) -> Operation:
    def hit(store: Any, index: int, params: Params) -> Any:
        return store.check_rate_limit("hot", params["limit"], LONG, 1, algorithm)

    return hit


def _revoke(store: Any, index: int, params: Params) -> Any:
    """Odd hits revoke for a moment, even ones for an hour; instants rise with the index."""
    at = params["base"] + timedelta(milliseconds=7 * index)
    expires_in = params["short"] if index % 2 else LONG
    return store.revoke_user_tokens("u", at=at, expires_in=expires_in)


OPERATIONS: dict[str, Operation] = {
    "incr": lambda store, index, params: store.incr("n"),
    "fixed_window": _limit("fixed_window"),
    "sliding_window": _limit("sliding_window"),
    "gcra": _limit("gcra"),
    "blacklist": lambda store, index, params: store.add_to_blacklist(
        "jti", params["short"] if index % 2 else LONG
    ),
    "user_revocation": _revoke,
    "consume": lambda store, index, params: store.consume(params["token"]),
    "claim_step": lambda store, index, params: store.claim_step("alice", 1000),
    "use_backup_code": lambda store, index, params: store.use_backup_code("alice", "once"),
    "max_sessions": lambda store, index, params: store.create("alice", ttl=LONG, max_sessions=3),
    "create_with_token": lambda store, index, params: store.create(
        "alice", ttl=LONG, token=params["token"], max_sessions=1000
    ),
    "issue_with_token": lambda store, index, params: store.issue(
        "alice", "alice@example.com", ttl=LONG, token=params["token"], revoke_previous=False
    ),
}


def summary(answer: Any) -> Any:
    """A picklable stand-in for an answer: what the race checks need, no more."""
    if isinstance(answer, RateLimitResult):
        return (answer.allowed, answer.remaining)
    if isinstance(answer, NewSession | IssuedMagicLink | MagicLinkRecord):
        return type(answer).__name__
    if answer is None or isinstance(answer, bool | int | datetime):
        return answer
    return repr(answer)


def _sync_hits(store: Any, operation: Operation, indexes: range, params: Params) -> list[Any]:
    answers = []
    for index in indexes:
        try:
            answers.append(summary(operation(store, index, params)))
        except TokenInUseError:
            answers.append(IN_USE)
    return answers


async def _async_hits(store: Any, operation: Operation, indexes: range, params: Params) -> list[Any]:
    """All of one client's hits at once on its loop, as an async app would send them."""

    async def one(index: int) -> Any:
        try:
            return summary(await operation(store, index, params))
        except TokenInUseError:
            return IN_USE

    return list(await asyncio.gather(*(one(index) for index in indexes)))


def run_hits(
    open_store: Callable[[], Any],
    asynchronous: bool,
    name: str,
    indexes: range,
    params: Params,
    ready: Callable[[], None],
) -> list[Any]:
    """One client: open a store of its own, wait for the others (``ready``), fire the hits
    ``indexes``, close. An async client runs on an event loop of its own in this thread."""
    operation = OPERATIONS[name]
    if not asynchronous:
        store = open_store()
        try:
            ready()
            return _sync_hits(store, operation, indexes, params)
        finally:
            store.close()

    async def client() -> list[Any]:
        store = open_store()
        if inspect.isawaitable(store):
            store = await store
        try:
            await asyncio.to_thread(ready)  # the loop stays free while the others start
            return await _async_hits(store, operation, indexes, params)
        finally:
            await store.aclose()

    return asyncio.run(client())


@contextmanager
def fast_switching() -> Iterator[None]:
    """Let threads interleave every few microseconds instead of every 5 ms.

    A read-modify-write done in two steps by a backend without I/O between them (a
    process-local dict behind two lock acquisitions) then loses updates in a few
    dozen hits instead of once in thousands of runs.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


# -- in a child process ---------------------------------------------------------------------

_start_line: Any = None
"""The processes' shared barrier, handed to each child when the pool starts it."""


def child_init(barrier: Any) -> None:
    """Pool initializer: keep the barrier every race of this pool starts at."""
    global _start_line
    _start_line = barrier


def child_run(
    url: str,
    namespace: str,
    kind: str,
    asynchronous: bool,
    name: str,
    indexes: range,
    params: Params,
) -> list[Any]:
    """A child process's client: opens the store by URL (the registry and its entry
    points, as an application process would) and fires its hits."""
    from authstore.contracts.testing.harness import open_store

    def make() -> Any:
        return open_store(url, StoreKind(kind), asynchronous, namespace=namespace)

    def ready() -> None:
        _start_line.wait(RACE_TIMEOUT)

    with fast_switching():
        return run_hits(make, asynchronous, name, indexes, params, ready)


def start_line(parties: int) -> threading.Barrier:
    """The threads' barrier: every client opened before any hit is fired."""
    return threading.Barrier(parties)
