"""Outages for real, on a private wire-compatible server this module starts (never the
shared one): stopped, and frozen (SIGSTOP). Security reads fail closed with a
BackendUnavailableError within the configured timeout, sync and async, and the store
recovers by itself once a server answers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import authstore
from authstore.contracts.errors import BackendUnavailableError
from tests.mongodb.private import PrivateServer
from tests.outages import timed, timed_async

TIMEOUT = 0.5
SLACK = 1.5  # scheduling noise on a loaded 2-core machine


def _eventually(action: Callable[[], object]) -> object:
    """The store recovers by itself: the first calls after a restart may still time out
    while the new server warms up on a loaded machine."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return action()
        except BackendUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _unavailable(error: BaseException | None, took: float) -> None:
    assert isinstance(error, BackendUnavailableError), repr(error)
    assert error.__cause__ is not None, "the driver error is kept as the cause"
    assert took < TIMEOUT + SLACK, f"took {took:.2f} s"


def test_stopped_server_fails_closed_then_recovers(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.add_to_blacklist("jti", 60)
    created = sessions.create("alice", ttl=60)
    assert cache.is_blacklisted("jti")
    server.stop()
    for action in (
        lambda: cache.is_blacklisted("jti"),
        lambda: cache.user_tokens_revoked_at("alice"),
        lambda: cache.check_rate_limit("k", 1, 60),
        lambda: sessions.get(created.token),
    ):
        _unavailable(*timed(action))
    server.start()  # same port, empty storage
    assert _eventually(lambda: cache.is_blacklisted("jti")) is False
    assert _eventually(lambda: sessions.get(created.token)) is None
    cache.close()
    sessions.close()


def test_frozen_server_times_out(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.add_to_blacklist("jti", 60)
    sessions.count("warm")
    server.freeze()
    try:
        _unavailable(*timed(lambda: cache.is_blacklisted("jti")))
        _unavailable(*timed(lambda: cache.check_rate_limit("k", 1, 60, algorithm="gcra")))
        _unavailable(*timed(lambda: sessions.create("alice", ttl=60, max_sessions=2)))
    finally:
        server.thaw()
    assert _eventually(lambda: cache.is_blacklisted("jti"))
    cache.close()
    sessions.close()


def test_async_stopped_and_frozen(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"

    async def scenario() -> None:
        cache = authstore.open_async_cache(url)
        await cache.add_to_blacklist("jti", 60)
        server.freeze()
        try:
            _unavailable(*await timed_async(lambda: cache.is_blacklisted("jti")))
        finally:
            server.thaw()
        for _ in range(40):
            try:
                assert await cache.is_blacklisted("jti")
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.25)
        else:
            raise AssertionError("the store did not recover after the server thawed")
        server.stop()
        _unavailable(*await timed_async(lambda: cache.is_blacklisted("jti")))
        _unavailable(*await timed_async(lambda: cache.user_tokens_revoked_at("alice")))
        await cache.aclose()

    asyncio.run(scenario())
