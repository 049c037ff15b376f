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
import time
from collections.abc import Callable, Iterator, MutableSequence, Sequence
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
    "IO_MIN_RACE",
    "MIN_RACE",
    "LONG",
    "OPERATIONS",
    "RACE_LIMIT",
    "RACE_TIMEOUT",
    "WARM_UPS",
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


RACE_LIMIT = 2**16
RACE_WINDOW = 2.0**24
"""A limit no race reaches, over 194 days: every hit is allowed and must see its own
count (remaining goes down by one per hit, never twice the same). A lost update shows
for as long as the race lasts, not only until a small limit is reached. GCRA gives
back one unit per 256 s (a power of two: its arithmetic stays exact)."""


def _limit(algorithm: str) -> Operation:
    def hit(store: Any, index: int, params: Params) -> Any:
        return store.check_rate_limit("hot", RACE_LIMIT, RACE_WINDOW, 1, algorithm)

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

UNKNOWN_TOKEN = "w" * 43
WARM_UPS: dict[str, Callable[[Any], Any]] = {
    "incr": lambda store: store.exists("warm-up"),
    "fixed_window": lambda store: store.check_rate_limit("warm-up", 1, LONG),
    "sliding_window": lambda store: store.check_rate_limit("warm-up", 1, LONG, 1, "sliding_window"),
    "gcra": lambda store: store.check_rate_limit("warm-up", 1, LONG, 1, "gcra"),
    "blacklist": lambda store: store.is_blacklisted("warm-up"),
    "user_revocation": lambda store: store.user_tokens_revoked_at("warm-up"),
    "consume": lambda store: store.peek(UNKNOWN_TOKEN),
    "claim_step": lambda store: store.load("warm-up"),
    "use_backup_code": lambda store: store.load("warm-up"),
    "max_sessions": lambda store: store.count("warm-up"),
    "create_with_token": lambda store: store.count("warm-up"),
    "issue_with_token": lambda store: store.peek(UNKNOWN_TOKEN),
}
"""A harmless read each client makes before the start line: connections are open and
workers started, so the hits of all clients overlap instead of the first ones
finishing while the last client still connects."""


def summary(answer: Any) -> Any:
    """A picklable stand-in for an answer: what the race checks need, no more."""
    if isinstance(answer, RateLimitResult):
        return (answer.allowed, answer.remaining)
    if isinstance(answer, NewSession | IssuedMagicLink | MagicLinkRecord):
        return type(answer).__name__
    if answer is None or isinstance(answer, bool | int | datetime):
        return answer
    return repr(answer)


ROUND = 4
"""Hits an async client fires at once on its loop, between two looks at the others' progress."""
OVERRUN = 10
"""A client that has fired its quota goes on while another has not (so every client's
hits overlap the others'), up to this many quotas."""


MIN_RACE = 0.1
"""Seconds every client in one process goes on firing at least when the backend's data
lives in the process: it fires its quota in a millisecond, too short for threads to
interleave reliably in its Python code."""
IO_MIN_RACE = 0.03
"""The same for clients of a backend that does I/O: they interleave at every round trip."""
CHILD_MIN_RACE = 0.0
"""Processes run truly in parallel: waiting for the slowest one is overlap enough."""


def _more(progress: Sequence[int], number: int, quota: int, until: float) -> bool:
    """Client ``number`` fires more hits: its quota is not reached, or the race is
    younger than its minimum, or another client's quota is not reached (the slowest
    client's hits always meet the others' hits; up to OVERRUN quotas)."""
    done = progress[number]
    if done < quota or time.monotonic() < until:
        return True
    return done < OVERRUN * quota and min(progress) < quota


def _indexes(progress: Sequence[int], number: int, count: int) -> range:
    """The next ``count`` hit indexes of client ``number``; clients never share one."""
    clients, start = len(progress), progress[number]
    return range(number + clients * start, number + clients * (start + count), clients)


def _answer(operation: Operation, store: Any, index: int, params: Params) -> Any:
    try:
        return summary(operation(store, index, params))
    except TokenInUseError:
        return IN_USE


async def _async_answer(operation: Operation, store: Any, index: int, params: Params) -> Any:
    try:
        return summary(await operation(store, index, params))
    except TokenInUseError:
        return IN_USE


def run_hits(
    open_store: Callable[[], Any],
    asynchronous: bool,
    name: str,
    number: int,
    progress: MutableSequence[int],
    quota: int,
    params: Params,
    ready: Callable[[], object],
    min_race: float = MIN_RACE,
) -> list[Any]:
    """Client ``number``: open a store of its own, warm it up, wait for the other clients
    (``ready``), then fire hits until it and every other client have fired ``quota``
    (``progress`` holds every client's count); close. An async client runs on an
    event loop of its own in this thread and fires ``ROUND`` hits at once."""
    operation, warm_up = OPERATIONS[name], WARM_UPS[name]
    answers: list[Any] = []
    if not asynchronous:
        store = open_store()
        try:
            warm_up(store)
            ready()
            until = time.monotonic() + min_race
            while _more(progress, number, quota, until):
                (index,) = _indexes(progress, number, 1)
                answers.append(_answer(operation, store, index, params))
                progress[number] += 1
            return answers
        finally:
            store.close()

    async def client() -> list[Any]:
        store = open_store()
        if inspect.isawaitable(store):
            store = await store
        try:
            await warm_up(store)
            ready()  # blocks the loop: it has nothing else to do, and wakes as fast as a thread
            until = time.monotonic() + min_race
            while _more(progress, number, quota, until):
                batch = _indexes(progress, number, ROUND)
                answers.extend(
                    await asyncio.gather(
                        *(_async_answer(operation, store, index, params) for index in batch)
                    )
                )
                progress[number] += ROUND
            return answers
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
_progress: Any = None
"""The processes' hit counts (shared memory), likewise."""


def child_init(barrier: Any, progress: Any) -> None:
    """Pool initializer: keep what every race of this pool shares."""
    global _start_line, _progress
    _start_line, _progress = barrier, progress


def child_run(
    url: str,
    namespace: str,
    kind: str,
    asynchronous: bool,
    name: str,
    number: int,
    quota: int,
    params: Params,
) -> list[Any]:
    """A child process's client: opens the store by URL (the registry and its entry
    points, as an application process would) and fires its hits."""
    from authstore.contracts.testing.harness import open_store

    def make() -> Any:
        return open_store(url, StoreKind(kind), asynchronous, namespace=namespace)

    def ready() -> None:
        _start_line.wait(RACE_TIMEOUT)

    try:
        with fast_switching():
            return run_hits(
                make, asynchronous, name, number, _progress, quota, params, ready, CHILD_MIN_RACE
            )
    except BaseException:
        _start_line.abort()  # the other children stop waiting for this one
        raise


def start_line(parties: int) -> threading.Barrier:
    """The threads' barrier: every client opened before any hit is fired."""
    return threading.Barrier(parties)
