"""Client-side deadlines for async operations: one timer per event loop, not one per
operation.

``asyncio.timeout`` schedules a timer handle per use and cancels it on the way out
(a Python context manager, a heap push, a cancelled handle the loop sweeps later):
several microseconds per operation, as much as the rest of a runner's work on a
fast server. ``Deadlines`` keeps the operations in flight in a dict in deadline
order (one timeout per runner, so the order they start in), with one loop timer at
the earliest deadline. Past it, the operation's task is cancelled, exactly as
``asyncio.timeout`` would, and ``finish`` tells the runner it was its deadline (so
it reports a timeout) and not a cancellation from outside (which goes on as it is).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Deadlines"]

Task = asyncio.Task[Any]

_current_task: Callable[[asyncio.AbstractEventLoop], Task | None] = asyncio.current_task
if sys.version_info < (3, 12):  # pragma: no cover - the version decides
    # Python 3.11's asyncio.current_task is a Python function around this dict's get
    # (3.12 made it C): one Python call less per operation.
    _current_task = getattr(asyncio.tasks, "_current_tasks", {}).get or asyncio.current_task

_BASE_TIME = asyncio.BaseEventLoop.time


class Deadlines:
    """Each operation ``start``s (its task gets ``seconds`` from now) and ``finish``es."""

    __slots__ = ("_clock", "_due", "_expired", "_timer", "loop", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop of the latest ``start`` (a runner checks its connections belong to it
        without asking asyncio again)."""
        self._due: dict[Task, float] = {}
        """Tasks in flight -> their deadline (loop time), earliest first."""
        self._expired: set[Task] = set()
        """Tasks this cancelled: their CancelledError is a timeout."""
        self._timer: asyncio.TimerHandle | None = None
        self._clock: Callable[[], float] = time.monotonic
        """``loop.time``; ``time.monotonic`` itself where that is all it does (asyncio's
        own loops: their ``time`` is a Python method around it)."""

    def start(self) -> tuple[Task, int] | None:
        """The running task gets its deadline; None when it already has one (an
        operation inside another: the outer, earlier deadline bounds both)."""
        loop = asyncio.get_running_loop()
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("an async authstore operation must run in an asyncio task")
        if task in self._due:
            return None
        if loop is not self.loop:  # a store used from a new loop: the old one's tasks are gone
            self.loop, self._due, self._expired, self._timer = loop, {}, set(), None
            same = getattr(loop.time, "__func__", None) is _BASE_TIME
            self._clock = time.monotonic if same else loop.time
        due = self._clock() + self.seconds
        self._due[task] = due
        if self._timer is None:
            self._timer = loop.call_at(due, self._fire)
        return task, task.cancelling()

    def finish(self, started: tuple[Task, int] | None, error: BaseException | None) -> bool:
        """End the deadline; True when it expired and ``error`` is the cancellation it
        caused (the runner reports a timeout instead)."""
        if started is None:
            return False
        task, cancelling = started
        self._due.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        # as asyncio.timeout does: withdraw our cancellation; one from outside stays
        return task.uncancel() <= cancelling and isinstance(error, asyncio.CancelledError)

    def expired(self, started: tuple[Task, int] | None) -> bool:
        """Whether the deadline ``start`` gave has passed and cancelled its task (before
        ``finish``: a runner deciding how to give back what the task held)."""
        return started is not None and started[0] in self._expired

    def _fire(self) -> None:
        self._timer = None
        loop, due = self.loop, self._due
        assert loop is not None
        now = loop.time()
        while due:
            task = next(iter(due))
            when = due[task]
            if when > now:
                self._timer = loop.call_at(when, self._fire)
                return
            del due[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
