"""The scenario both SQL servers' abandoned-transaction tests share: a capped session
create waits on a row another connection holds, past the store's timeout (or its task is
cancelled), and the same user's next create must go through at once, on a connection
that is not the abandoned one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import authstore
from authstore.adapters.common.ops import Op
from authstore.contracts.errors import BackendUnavailableError


async def cancel_while_waiting(call: Awaitable[Any]) -> None:
    """Start ``call``, cancel it while it waits on the held lock (0.2 s in, within the
    store's 0.5 s timeout), and check that it ends cancelled."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def abandon_then_create(
    url: str,
    mode: str,
    hold: Callable[[], None],
    release: Callable[[], None],
    connection_id: Callable[[], Op[Any]] | None = None,
    check_store: Callable[[Any], None] = lambda sessions: None,
) -> tuple[Any, Any]:
    """Run the scenario in ``mode`` (sync, async or cancelled) on a store opened from
    ``url`` (timeout 0.5 s, one pooled connection); the server's ids of the connection
    before the abandoned create and of the one after it (None without
    ``connection_id``). ``check_store`` looks at the store once the next create went
    through."""
    if mode == "sync":
        with authstore.open_sessions(url) as sessions:
            for _ in range(2):
                sessions.create("u", ttl=60, max_sessions=2)
            first = sessions._runner.run(connection_id()) if connection_id else None
            hold()
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError):
                    sessions.create("u", ttl=60, max_sessions=2)
                assert time.monotonic() - started < 1.0
            finally:
                release()
            started = time.monotonic()
            sessions.create("u", ttl=60, max_sessions=2)
            assert time.monotonic() - started < 0.5
            second = sessions._runner.run(connection_id()) if connection_id else None
            check_store(sessions)
            assert sessions.count("u") == 2
            return first, second

    async def scenario() -> tuple[Any, Any]:
        async with authstore.open_async_sessions(url) as sessions:
            for _ in range(2):
                await sessions.create("u", ttl=60, max_sessions=2)
            first = await sessions._runner.run(connection_id()) if connection_id else None
            hold()
            try:
                started = time.monotonic()
                if mode == "cancelled":
                    await cancel_while_waiting(sessions.create("u", ttl=60, max_sessions=2))
                else:
                    with pytest.raises(BackendUnavailableError):
                        await sessions.create("u", ttl=60, max_sessions=2)
                assert time.monotonic() - started < 1.0
            finally:
                release()
            started = time.monotonic()
            await sessions.create("u", ttl=60, max_sessions=2)
            assert time.monotonic() - started < 0.5
            second = await sessions._runner.run(connection_id()) if connection_id else None
            check_store(sessions)
            assert await sessions.count("u") == 2
            return first, second

    return asyncio.run(scenario())
