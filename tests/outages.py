"""What outage tests share: how long a call took and what it raised, and a free port."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable

__all__ = ["free_port", "timed", "timed_async"]


def timed(action: Callable[[], object]) -> tuple[BaseException | None, float]:
    """What ``action`` raised (None if it returned) and how many seconds it took."""
    started = time.monotonic()
    try:
        action()
    except BaseException as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


async def timed_async(
    action: Callable[[], Awaitable[object]],
) -> tuple[BaseException | None, float]:
    """``timed`` for a coroutine function."""
    started = time.monotonic()
    try:
        await action()
    except BaseException as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def free_port() -> int:
    """A loopback port the kernel has just handed out (free until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
