"""The deadlock scenario both SQL servers' deadlock tests share: a magic-link issue (user
"u", token TOKEN) is driven into a deadlock whose victim is the store's transaction,
and the store must replay that transaction and give the true answer.

A ``Blocker`` is a second connection that speaks the server's SQL: it holds the token's
row, waits until the store's transaction waits for it, then asks for the user's lock,
which the store's transaction holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import authstore
from authstore.contracts.values import hash_token

TOKEN = "deadlock-token-" + "x" * 40


class Blocker(Protocol):
    error: type[BaseException]
    """What the blocker's driver raises when the server picks the blocker as the victim."""
    poll_interval: float
    """How long to wait between two looks at whether the store waits for the blocker."""

    def hold_token(self, namespace: str, token_hash: str) -> None:
        """Begin a transaction that inserts the link row of ``token_hash``."""

    def store_waits(self) -> bool:
        """Whether a transaction waits for one of the blocker's locks."""

    def take_user_lock(self, key: str) -> None:
        """Ask for the store's per-user lock ``key``: the deadlock."""

    def rollback(self) -> None: ...


def deadlock(blocker: Blocker, namespace: str, issue: Callable[[], Any]) -> tuple[Any, str]:
    """Runs ``issue`` (user "u", token TOKEN) into a deadlock; the blocker then rolls
    back. Returns what ``issue`` returned or raised, and what the blocker saw."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(issue())
        except BaseException as error:
            outcome.append(error)

    blocker.hold_token(namespace, hash_token(TOKEN))
    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not blocker.store_waits():
            if time.monotonic() >= deadline:
                raise AssertionError(f"the store never waited for the blocker: {outcome}")
            time.sleep(blocker.poll_interval)
        seen = "no deadlock"
        try:
            blocker.take_user_lock(f"authstore:magic_links:{namespace}:u")
        except blocker.error as error:
            seen = f"blocker failed: {error}"
        time.sleep(0.1)  # the store's replay now waits for the user's lock
    finally:
        blocker.rollback()
        thread.join(10)
    assert not thread.is_alive()
    return outcome[0], seen


def check_a_deadlocked_link_issue_is_replayed(url: str, blocker: Blocker, mode: str) -> None:
    """The issue (sync, or async from another thread) comes back issued, not a deadlock,
    and its link is consumed once."""
    namespace = f"dl-{uuid.uuid4().hex[:8]}"
    if mode == "sync":
        with authstore.open_magic_links(url, namespace=namespace) as links:
            links.issue("u", "u@example.com", ttl=60)  # migrated; a link to revoke
            result, seen = deadlock(
                blocker, namespace, lambda: links.issue("u", "u@example.com", ttl=60, token=TOKEN)
            )
            assert seen == "no deadlock"
            assert not isinstance(result, BaseException), repr(result)
            assert links.consume(TOKEN) is not None
            assert links.consume(TOKEN) is None
        return

    async def scenario() -> None:
        async with authstore.open_async_magic_links(url, namespace=namespace) as links:
            await links.issue("u", "u@example.com", ttl=60)
            loop = asyncio.get_running_loop()

            def issue() -> Any:
                call = links.issue("u", "u@example.com", ttl=60, token=TOKEN)
                return asyncio.run_coroutine_threadsafe(call, loop).result(10)

            result, seen = await asyncio.to_thread(deadlock, blocker, namespace, issue)
            assert seen == "no deadlock"
            assert not isinstance(result, BaseException), repr(result)
            assert await links.consume(TOKEN) is not None
            assert await links.consume(TOKEN) is None

    asyncio.run(scenario())
