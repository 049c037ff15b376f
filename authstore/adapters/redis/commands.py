"""What Redis operations yield to a runner: a command, a Lua script call, or a batch.

Scripts are package data files (``scripts/*.lua``) shared by the sync and async
runners, each after the helper files (``scripts/_*.lua``) its first line includes; a
runner calls them by EVALSHA and sends the source once when the server answers
NOSCRIPT (after a restart, a failover or SCRIPT FLUSH).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "Batch",
    "Call",
    "Command",
    "Durable",
    "Lua",
    "Script",
    "includes",
    "lua",
    "security_write",
]

P = ParamSpec("P")
T = TypeVar("T")

Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class Call:
    """One Redis command, e.g. ``Call(("GET", key))``."""

    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Lua:
    """A script file's source and SHA-1 (what EVALSHA names it by)."""

    name: str
    source: bytes
    sha: str


@dataclass(frozen=True, slots=True)
class Script:
    """A script call; every key it touches shares ``keys[0]``'s hash slot (Redis Cluster)."""

    lua: Lua
    keys: tuple[str, ...]
    args: tuple[Arg, ...]

    def evalsha(self) -> tuple[Arg, ...]:
        return ("EVALSHA", self.lua.sha, len(self.keys), *self.keys, *self.args)

    def eval(self) -> tuple[Arg, ...]:
        return ("EVAL", self.lua.source, len(self.keys), *self.keys, *self.args)


@dataclass(frozen=True, slots=True)
class Batch:
    """Several independent commands sent in one round trip (a pipeline); the result is
    the list of their replies. On one server it runs as MULTI/EXEC; on a cluster each
    command is atomic on its own node."""

    calls: tuple[Call, ...]


@dataclass(frozen=True, slots=True)
class Durable:
    """A security write's command (``security_write``): with ``durability=replicated`` the
    runner sends ``WAIT`` right behind it on the same connection and acknowledges the
    write only once enough replicas have it; otherwise it runs as ``command`` would."""

    command: Call | Script

    @property
    def key(self) -> str | bytes | int | float:
        """The key naming the node that takes the write (Redis Cluster)."""
        command = self.command
        return command.keys[0] if type(command) is Script else command.args[1]


Command = Call | Script | Batch | Durable


def security_write(
    method: Callable[P, Generator[Any, Any, T]],
) -> Callable[P, Generator[Any, Any, T]]:
    """Marks an op as a security write (a revocation, a consumed link, a claimed TOTP
    step): a write a failover must not undo. Every command it yields goes as
    ``Durable``; a ``Batch`` cannot (its WAIT would land in its MULTI/EXEC)."""

    @functools.wraps(method)
    def op(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, T]:
        inner = method(*args, **kwargs)
        try:
            command = next(inner)
            while True:
                if type(command) is Batch:
                    raise TypeError(f"{method.__qualname__}: a security write yielded a Batch")
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

    op.security_write = True  # type: ignore[attr-defined]
    return op


INCLUDE = b"-- include:"
"""A script's first line may name the helper files it needs, in order
(``-- include: _prelude.lua, _sessions.lua``): shared clock, number format, key layout."""


def includes(script: bytes) -> list[str]:
    """The helper files a script's first line names (none without that line)."""
    first = script.split(b"\n", 1)[0]
    if not first.startswith(INCLUDE):
        return []
    return [name.strip() for name in first[len(INCLUDE) :].decode().split(",") if name.strip()]


@cache
def lua(name: str) -> Lua:
    """The script ``scripts/<name>.lua`` after the helper files it includes."""
    folder = resources.files("authstore.adapters.redis") / "scripts"
    script = (folder / f"{name}.lua").read_bytes()
    parts = [(folder / helper).read_bytes() for helper in includes(script)]
    source = b"\n".join([*parts, script])
    return Lua(name, source, hashlib.sha1(source, usedforsecurity=False).hexdigest())
