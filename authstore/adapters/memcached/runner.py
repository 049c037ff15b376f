"""What the pymemcache and aiomcache runners share: which server holds a key, how a
command becomes calls to those servers, and how driver errors become authstore's.

``MemcachedRunnerBase.program`` wraps an operation: ``route`` turns each command it
yields into per-server ``Call``s (a multi-key read is one call per server holding some
of the keys), which ``drive``/``drive_async`` hand to the runner's driver one by one;
their answers go back in as the command's. Keys go to servers by rendezvous hashing
over ``host:port`` names, pymemcache HashClient's own scheme, so sync and async stores
(and a HashClient of the same servers) agree on where every key lives. A server that
is down is never dropped from the ring: its keys fail (closed) instead of moving to
another server, where a revocation would silently be missing and a rate limit would
start over.
"""

from __future__ import annotations

import collections
import typing
from collections.abc import Callable, Generator, Iterable
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from authstore.adapters.common.ops import Op, translated
from authstore.adapters.memcached.commands import (
    Command,
    Delete,
    Get,
    Pause,
    SetMany,
    Store,
    Swap,
    Touch,
    Turn,
    Version,
)
from authstore.adapters.memcached.settings import MemcachedSettings
from authstore.contracts.errors import BackendError, BackendUnavailableError, StoreClosedError
from authstore.registry import require_module

__all__ = ["LOCAL", "READS", "Call", "MemcachedRunnerBase", "Method", "Plan", "route"]

C = TypeVar("C")
T = TypeVar("T")

Method = Literal[
    "get",
    "gets",
    "set",
    "add",
    "cas",
    "swap",
    "set_many",
    "delete",
    "touch",
    "version",
    "turn",
    "pause",
    "mget",
]
METHODS: tuple[Method, ...] = typing.get_args(Method)
READS: frozenset[Method] = frozenset(("get", "gets", "mget", "version"))
"""The calls that change nothing on the server: sending one again is harmless."""
LOCAL = ""
"""The server of a call that goes to no server (a ``Turn`` or a ``Pause``): the runner
performs it itself, with no client."""


class Call(NamedTuple):
    """One driver call on one server: ``method(client, *args)``."""

    server: str
    method: Method
    args: tuple[Any, ...]


class Ring:
    """Key -> server name, pymemcache's RendezvousHash over a fixed list of servers."""

    def __init__(self, servers: Iterable[str]) -> None:
        names = list(servers)
        self.names = tuple(names)
        self.only = names[0] if len(names) == 1 else None
        rendezvous = require_module("pymemcache.client.rendezvous", "memcached", "memcached")
        self._hash = rendezvous.RendezvousHash(nodes=names)

    def server(self, key: str) -> str:
        if self.only is not None:
            return self.only
        found: str = self._hash.get_node(key)
        return found

    def group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for key in keys:
            groups[self.server(key)].append(key)
        return groups


class Plan(NamedTuple):
    """A command that takes several driver calls (or whose answer is not one call's)."""

    command: Command
    calls: list[Call]

    def answer(self, answers: list[Any]) -> Any:
        return _answer(self.command, answers)


_new = tuple.__new__
"""Makes a ``Call`` without the Python frame of its generated ``__new__``."""


def route(command: Command, ring: Ring) -> Call | Plan:
    """The driver call a command takes, or its plan of several calls: the common
    commands (a store, a one-key read) are one ``Call`` made here without a plan, whose
    answer the operation receives as it is."""
    if type(command) is Store:
        key = command.key
        args = (key, command.value, command.exptime, command.token)
        return _new(Call, (ring.only or ring.server(key), command.verb, args))
    if type(command) is Swap:
        return _new(Call, (ring.only or ring.server(command.key), "swap", (command,)))
    if type(command) is Get:
        if len(command.keys) == 1:
            key = command.keys[0]
            if command.cas:  # a meta get: lighter than gets (see ``meta_get_request``)
                return _new(Call, (ring.only or ring.server(key), "mget", (key,)))
            return _new(Call, (ring.only or ring.server(key), "get", ([key],)))
        calls = _plan(command, ring)
        return calls[0] if len(calls) == 1 else Plan(command, calls)
    if type(command) is Turn:
        return _new(Call, (LOCAL, "turn", (command,)))
    if type(command) is Pause:
        return _new(Call, (LOCAL, "pause", (command,)))
    return Plan(command, _plan(command, ring))


def _plan(command: object, ring: Ring) -> list[Call]:
    """The driver calls a command takes: one per server for reads and batches, one per key
    for deletes and touches (memcached has no multi-key form of those)."""
    if isinstance(command, Get):
        method: Method = "gets" if command.cas else "get"
        if ring.only is not None:
            return [Call(ring.only, method, (list(dict.fromkeys(command.keys)),))]
        groups = ring.group(dict.fromkeys(command.keys))
        return [Call(server, method, (keys,)) for server, keys in groups.items()]
    if isinstance(command, Store):
        args = (command.key, command.value, command.exptime, command.token)
        return [Call(ring.server(command.key), command.verb, args)]
    if isinstance(command, Swap):
        return [Call(ring.server(command.key), "swap", (command,))]
    if isinstance(command, SetMany):
        items = dict(command.items)
        return [
            Call(server, "set_many", ([(key, items[key]) for key in keys], command.exptime))
            for server, keys in ring.group(items).items()
        ]
    if isinstance(command, Delete):
        return [Call(ring.server(key), "delete", (key,)) for key in dict.fromkeys(command.keys)]
    if isinstance(command, Touch):
        return [
            Call(ring.server(key), "touch", (key, command.exptime))
            for key in dict.fromkeys(command.keys)
        ]
    if isinstance(command, Version):
        return [Call(server, "version", ()) for server in ring.names]
    raise TypeError(f"a memcached operation yielded {command!r}")


def _answer(command: object, answers: list[Any]) -> Any:
    """What the operation receives for its command, from the answers of its calls."""
    if isinstance(command, Get):
        if len(answers) == 1:
            return answers[0]
        found: dict[str, tuple[bytes, object]] = {}
        for answer in answers:
            found.update(answer)
        return found
    if isinstance(command, Store | Swap):
        return answers[0]
    if isinstance(command, SetMany | Version):
        return None
    return sum(map(bool, answers))


class MemcachedRunnerBase(Generic[C]):
    """The servers (name -> driver client), the program and the error policy;
    subclasses perform one call and hold the clients."""

    lock_factory: Callable[[], Any]
    """Makes the locks of the operations' turns (``Turn``): threading's or asyncio's."""
    _unavailable: tuple[type[BaseException], ...]
    """Driver errors that mean the server is unreachable or timed out."""
    _driver_errors: tuple[type[BaseException], ...]
    """Every driver error: what the program translates before the op sees it."""

    def __init__(self, settings: MemcachedSettings) -> None:
        self.settings = settings
        self._closed = False
        self._clients: dict[str, C] = {}
        self._ring: Ring | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings.display}>"

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def _use(self, clients: dict[str, C]) -> None:
        self._clients = clients
        self._ring = Ring(clients)

    def program(self, op: Op[T]) -> Generator[Call, Any, T]:
        """``op`` with each command routed to its servers' calls (see ``route``); a
        driver error goes into the operation translated (the driver's as its cause)."""
        try:
            command = next(op)  # the argument checks run here, before any I/O
            if self._closed:
                self._check_open()
            if self._ready is not None:
                self._ready()
            ring = self._ring
            assert ring is not None
            while True:
                routed = route(command, ring)
                try:
                    if isinstance(routed, Plan):
                        answers = []
                        for call in routed.calls:
                            answers.append((yield call))
                        reply = routed.answer(answers)
                    else:
                        reply = yield routed
                except self._driver_errors as error:
                    command = op.throw(translated(self._translated(error), error))
                except Exception as error:
                    command = op.throw(error)
                else:
                    command = op.send(reply)
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            op.close()

    _ready: Callable[[], None] | None = None
    """Makes the clients a call needs before its first command (after the checks);
    None: nothing to make."""

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this memcached store is closed")

    def _is_unavailable(self, error: BaseException) -> bool:
        return isinstance(error, self._unavailable)

    def _translated(self, error: BaseException) -> BackendError:
        """A driver error as authstore's (what the op is thrown)."""
        return self._error(error, unavailable=self._is_unavailable(error))

    def _error(self, error: BaseException, *, unavailable: bool) -> BackendError:
        kind = BackendUnavailableError if unavailable else BackendError
        text = str(error).strip() or type(error).__name__
        what = "unreachable or timed out" if unavailable else "error"
        return kind(f"memcached {what} at {self.settings.display}: {text}")

    @staticmethod
    def _stored(answer: object, method: Method) -> None:
        if answer is not True:
            raise BackendError(f"memcached did not store ({method})")
