"""What a backend implements: its operations as generators, once for sync and async.

The op protocol (every backend alike; psycopg 3's generators are the model):

- An **op** is a generator. Its first step checks its arguments (bad input raises
  ValueError/TypeError there, before any I/O). It then **yields commands** (a SQL
  ``Query``, a Redis ``Call``/``Script``, a MongoDB ``Command``, ...), each of which
  the backend executes in one request, and **receives each result** by ``send``. It
  **returns the answer** (``StopIteration.value``).
- A **driver error is thrown into the op** at the ``yield`` that sent the command
  (``op.throw``), for every backend, **translated once at the driver boundary** into
  authstore's errors (``BackendError`` and its subclasses, the driver's error as
  ``__cause__``): by the backend's program (Redis, memcached, MongoDB) or its
  ``execute`` (SQL). Ops never see a driver's class, so they stay driver-agnostic; an
  op that must recognise a condition catches the backend's own class for it (MongoDB's
  ``DuplicateKey`` and ``Conflict``). An op may handle the error or let it go on; what
  leaves the op leaves ``drive`` as it is, already translated.
- A backend's **program** wraps the op in a generator of its own where it needs hooks
  that are the same in both modes (SQL: transactions and replays, migration before
  the first statement; Redis: EVALSHA then EVAL on NOSCRIPT; MongoDB: resend of a
  read on a stale connection, index creation). A program is an op too.
- ``drive(program, execute)`` and ``drive_async(program, execute)`` are the **one
  driver loop**: ``execute`` runs one command (the only code a sync and an async
  runner do not share). The loop **closes** the program when it ends, however it
  ends (its ``finally`` blocks run: an op must not yield in one).
- A **security write** (a revocation, a consumed link or backup code, a claimed TOTP
  step: what a failover must not undo) is an op marked ``@security_write``. A store
  opened with ``durability=replicated`` runs ops made ``durable_ops``: each command a
  marked op yields arrives wrapped in ``Durable``, and its runner has it confirmed by
  replicas (Redis: WAIT; MongoDB: write concern majority). Without the option the
  mark costs nothing: the ops run as written.
- **Deadlines** belong to the runner, not the op: a sync runner bounds each driver
  call (socket and statement timeouts), an async runner the whole ``drive_async``
  (``common.deadlines``); past it, the op is closed and never sends another command.

Arguments arrive checked and encoded: keys are full keys (namespace and kind
included), values are bytes, TTLs positive floats or None, times are epoch seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, NoReturn, ParamSpec, Protocol, TypeVar

from authstore.contracts.records import (
    MagicLinkRecord,
    RateLimitAlgorithm,
    SessionRecord,
    TotpState,
)

__all__ = [
    "AsyncRunner",
    "CacheOps",
    "Durable",
    "HealthOps",
    "LinkDraft",
    "MagicLinkOps",
    "Op",
    "Runner",
    "SessionDraft",
    "SessionOps",
    "TotpOps",
    "drive",
    "drive_async",
    "immediate",
    "durable_ops",
    "security_write",
    "translated",
    "unexpected",
]

T = TypeVar("T")
P = ParamSpec("P")

Op = Generator[Any, Any, T]
"""An operation: yields commands, receives their results, returns the answer."""

FixedWindowState = tuple[bool, int, float, float]
"""allowed, count in the window after this hit, window end, store now."""
SlidingWindowState = tuple[bool, int, int, float, float]
"""allowed, previous window count, current window count, current window start, store now."""
GcraState = tuple[bool, float, int, float]
"""allowed, anchor, units after this hit, store now: TAT = anchor + units * window / limit."""


class Runner(Protocol):
    """Executes operations synchronously; owns the connection or pool."""

    def run(self, op: Op[T]) -> T: ...
    def close(self) -> None: ...


class AsyncRunner(Protocol):
    def run(self, op: Op[T]) -> Awaitable[T]:
        """A coroutine (``async def run``) or a future: the caller awaits it at once."""
        ...

    async def close(self) -> None: ...


def immediate(fn: Callable[P, T]) -> Callable[P, Op[T]]:
    """Turn a plain function into an operation that needs no I/O (the memory backend)."""

    @functools.wraps(fn)
    def operation(*args: P.args, **kwargs: P.kwargs) -> Op[T]:
        return fn(*args, **kwargs)
        yield  # pragma: no cover - makes this a generator function

    return operation


C = TypeVar("C")
OpsT = TypeVar("OpsT")


class Durable(NamedTuple):
    """A command of a security write (``security_write``) of a store opened with
    ``durability=replicated``: the runner acknowledges it only once replicas have it."""

    command: Any


def security_write(method: Callable[P, Op[T]]) -> Callable[P, Op[T]]:
    """Mark an op as a security write (``security_write = True``: what ``durable_ops``
    and the tests look for). The method itself is unchanged."""
    method.security_write = True  # type: ignore[attr-defined]
    return method


def durable_ops(ops: OpsT) -> OpsT:
    """``ops`` with every ``security_write`` op yielding its commands as ``Durable``:
    what a store opened with ``durability=replicated`` runs (the bound methods are
    replaced on this instance only)."""
    for name in dir(type(ops)):
        if getattr(getattr(type(ops), name, None), "security_write", False):
            setattr(ops, name, _tagged(getattr(ops, name)))
    return ops


def _tagged(method: Callable[P, Op[T]]) -> Callable[P, Op[T]]:
    @functools.wraps(method)
    def op(*args: P.args, **kwargs: P.kwargs) -> Op[T]:
        inner = method(*args, **kwargs)
        try:
            command = next(inner)
            while True:
                try:
                    reply = yield Durable(command)
                except GeneratorExit:
                    raise
                except BaseException as error:
                    command = inner.throw(error)
                else:
                    command = inner.send(reply)
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            inner.close()

    return op


def drive(program: Generator[C, Any, T], execute: Callable[[C], Any]) -> T:
    """Run a program of driver requests: each request's result (or error) goes back in."""
    try:
        request = next(program)
        while True:
            try:
                result = execute(request)
            except BaseException as error:
                request = program.throw(error)
            else:
                request = program.send(result)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        program.close()


async def drive_async(program: Generator[C, Any, T], execute: Callable[[C], Awaitable[Any]]) -> T:
    """``drive`` with an awaited driver call: the only difference between the two."""
    try:
        request = next(program)
        while True:
            try:
                result = await execute(request)
            except BaseException as error:
                request = program.throw(error)
            else:
                request = program.send(result)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        program.close()


def translated(error: BaseException, cause: BaseException) -> BaseException:
    """``error`` (authstore's) with ``cause`` (the driver's) as its cause: what
    ``raise error from cause`` sets, for an error thrown into an op rather than raised."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error


def unexpected(command: object) -> NoReturn:
    raise RuntimeError(f"operation yielded {command!r} to a runner that performs no I/O")


class HealthOps(Protocol):
    def ping(self) -> Op[None]:
        """One cheap round trip to the backend (what ``store.ping()`` runs); a backend
        family writes it once, on the base its four ops classes share."""


class CacheOps(HealthOps, Protocol):
    def get(self, key: str) -> Op[bytes | None]: ...
    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]: ...
    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]: ...
    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Op[None]: ...
    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]: ...
    def delete(self, key: str) -> Op[bool]: ...
    def delete_many(self, keys: list[str]) -> Op[int]: ...
    def exists(self, key: str) -> Op[bool]: ...
    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        """Raise ValueError when the stored value is not an integer."""

    def expire(self, key: str, ttl: float | None) -> Op[bool]: ...
    def ttl(self, key: str) -> Op[float | None]:
        """None when missing, math.inf when the key has no expiry."""

    def raise_to(self, key: str, at: float | None, ttl: float | None) -> Op[float]:
        """Store max(current, at or store now) as an epoch float; return what is stored."""

    def read_epoch(self, key: str) -> Op[float | None]: ...
    def fixed_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[FixedWindowState]: ...
    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]: ...
    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]: ...
    def read_limiter(
        self, key: str, algorithm: RateLimitAlgorithm
    ) -> Op[tuple[tuple[Any, ...] | None, float]]:
        """The state ``check_rate_limit`` keeps for ``algorithm`` at ``key``, in the form
        ``ratelimit.step_*`` takes (None when there is none), and the store's now;
        one read that writes, creates and extends nothing."""

    def read_record(self, key: str, writing: bool = True) -> Op[tuple[bytes | None, object, float]]:
        """A record's live body (None: none), a token for ``replace_record``, and the
        store's now, read together. Without ``writing`` (a peek) the clock may be
        anything when there is no record, and the read must create nothing."""

    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> Op[bool]:
        """Store ``body`` for ``ttl`` seconds only if the record is still what
        ``read_record`` gave ``token`` for (no live record: still none), atomically;
        False, writing nothing, when another write came in between."""

    def purge_expired(self) -> Op[int]: ...


class SessionDraft(NamedTuple):
    """A session to create, checked and encoded by the logic, taken whole by every
    backend's ``create``: its fields are written here once, not in each signature."""

    token_hash: str
    session_id: str
    user_id: str
    device_id: str | None
    application_id: str | None
    ip_address: str | None
    user_agent: str | None
    metadata: str
    """JSON text."""
    ttl: float


class SessionOps(HealthOps, Protocol):
    def create(self, draft: SessionDraft, max_sessions: int | None) -> Op[SessionRecord]:
        """Eviction down to ``max_sessions`` happens in the same atomic step.

        Raise TokenInUseError, changing nothing, when ``token_hash`` belongs to a session
        that has not expired, live or revoked (a revocation keeps the hash taken)."""

    def get(self, token_hash: str) -> Op[SessionRecord | None]: ...
    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]: ...
    def revoke(self, token_hash: str) -> Op[bool]: ...
    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]: ...
    def revoke_all(
        self, user_id: str, except_hash: str | None, except_id: str | None
    ) -> Op[int]: ...
    def list(self, user_id: str) -> Op[list[SessionRecord]]: ...
    def count(self, user_id: str) -> Op[int]: ...
    def purge_expired(self) -> Op[int]: ...


class TotpOps(HealthOps, Protocol):
    def save_pending(self, user_id: str, secret: bytes) -> Op[None]: ...
    def enable(self, user_id: str) -> Op[bool]: ...
    def disable(self, user_id: str) -> Op[bool]: ...
    def load(self, user_id: str) -> Op[TotpState | None]:
        """With ``backup_code_hashes``: the unused ones, in the order they were given."""

    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]: ...
    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]: ...
    def claim_step(self, user_id: str, step: int) -> Op[bool]: ...


class LinkDraft(NamedTuple):
    """A magic link to issue, checked by the logic, taken whole by every backend's
    ``issue``: its fields are written here once, not in each signature."""

    token_hash: str
    link_id: str
    user_id: str
    email: str
    ttl: float
    application_id: str | None
    ip_address: str | None
    user_agent: str | None


class MagicLinkOps(HealthOps, Protocol):
    def issue(self, draft: LinkDraft, revoke_previous: bool) -> Op[MagicLinkRecord]:
        """``revoke_previous``: the user's usable links are revoked in the same atomic
        step. Raise TokenInUseError, changing nothing, when ``token_hash`` belongs to a link
        that has not expired (usable, consumed or revoked)."""

    def peek(self, token_hash: str) -> Op[MagicLinkRecord | None]: ...
    def consume(
        self, token_hash: str, application_id: str | None
    ) -> Op[MagicLinkRecord | None]: ...
    def revoke_user(self, user_id: str) -> Op[int]: ...
    def purge_expired(self) -> Op[int]: ...
