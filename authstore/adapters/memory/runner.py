"""The memory runners: one lock per data set, operations run to completion under it.

Memory operations never yield, so the async runner runs them inline in the event
loop; the lock only matters when threads (or a sync and an async store sharing a
``memory://NAME``) touch the same data, and is never held across an await.
"""

from __future__ import annotations

import threading
from typing import TypeVar

from authstore.adapters.common.ops import Op, unexpected
from authstore.adapters.memory.ops import MemoryData

__all__ = ["AsyncMemoryRunner", "MemoryRunner"]

T = TypeVar("T")


class MemoryRunner:
    def __init__(self, data: MemoryData, lock: threading.Lock) -> None:
        self.data = data
        self._lock = lock
        self._acquire, self._release = lock.acquire, lock.release

    def run(self, op: Op[T]) -> T:
        # run_immediate inlined, and acquire/release rather than ``with``, whose exit
        # costs more than the operation's lookup: this is every memory operation's path.
        self._acquire()
        try:
            command = op.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            self._release()
        op.close()
        unexpected(command)

    def close(self) -> None:
        """Data outlives a store: other stores of the same ``memory://NAME`` may share it."""

    def __repr__(self) -> str:
        return "MemoryRunner()"


class AsyncMemoryRunner:
    def __init__(self, data: MemoryData, lock: threading.Lock) -> None:
        self._sync = MemoryRunner(data, lock)

    async def run(self, op: Op[T]) -> T:
        return self._sync.run(op)

    async def close(self) -> None:
        self._sync.close()

    def __repr__(self) -> str:
        return "AsyncMemoryRunner()"
