"""What outage tests share: how long a call took and what it raised, a free port,
whether a frozen (SIGSTOP) server has really stopped, and ending a process a test
started."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["end_process", "free_port", "stopped", "timed", "timed_async"]


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


def end_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a process this test started; kill it if it is still there 10 s later."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stopped(pid: int) -> bool:
    """Every thread of process ``pid`` is stopped: SIGSTOP is delivered asynchronously,
    and a thread still running could answer one more request after ``kill``."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.exists():
        return True  # no /proc here: trust the signal
    states = []
    for task in tasks.iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return all(state in ("T", "t") for state in states)
