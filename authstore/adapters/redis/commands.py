"""What Redis operations yield to a runner: a command, a Lua script call, or a batch.

Scripts are package data files (``scripts/*.lua``) shared by the sync and async
runners, each after the helper files (``scripts/_*.lua``) its first line includes; a
runner calls them by EVALSHA and sends the source once when the server answers
NOSCRIPT (after a restart, a failover or SCRIPT FLUSH).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Batch", "Call", "Command", "Lua", "Script", "includes", "lua"]

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


Command = Call | Script | Batch

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
