"""Operations of one store that take turns by name, in the process.

MongoDB's transactions on one user's records (``Exclusive``) and memcached's
compare-and-set writes to one key under contention (``Turn``) queue here instead of
conflicting on the server, where each conflict costs a retry: contention degrades to
waiting, first come first served.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Turns"]


class Turns:
    """Locks by name, made on first use and dropped when no operation holds or waits
    for them. ``factory`` makes a threading.Lock or an asyncio.Lock."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._guard = threading.Lock()
        self.locks: dict[str, list[Any]] = {}
        """name -> [its lock, how many operations hold or wait for it]: read it (a name
        in it is contended), never write it."""

    def join(self, name: str) -> Any:
        """The lock of ``name``, counted until ``leave``."""
        with self._guard:
            entry = self.locks.get(name)
            if entry is None:
                entry = self.locks[name] = [self._factory(), 0]
            entry[1] += 1
            return entry[0]

    def leave(self, name: str, *, held: bool) -> None:
        with self._guard:
            entry = self.locks[name]
            if held:
                entry[0].release()
            entry[1] -= 1
            if entry[1] == 0:
                del self.locks[name]

    def __len__(self) -> int:
        return len(self.locks)
