"""Faults on a private server: frozen (SIGSTOP), killed (SIGKILL: connections reset,
then refused) and restarted. During each, every operation, sync and async, gives up
within its timeout and fails closed; after recovery the same store works again
without being reopened and every acknowledged write is there. Recovery times are
printed (run with -s).

Only on a private server this module starts (tests/postgres/private.py), never on the
shared one. psycopg has no client-side limit on waiting for an answer and a frozen
server cannot run its statement_timeout: the sync runner's watchdog is what ends the
wait (authstore/adapters/common/watchdog.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import authstore
from authstore.adapters.common.watchdog import watchdog_margin
from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.testing import unavailable
from authstore.contracts.testing.harness import Stores, url_factory
from tests.postgres.private import PrivatePostgres, find_binaries, private_postgres

TIMEOUT = 1.0
SLACK = 1.0  # scheduling noise on a loaded 2-core machine
BOUND = TIMEOUT + watchdog_margin(TIMEOUT) + SLACK
FREEZE_AT_MOST = 12.0
"""A safety net: the server thaws by itself after this, so a hang shows as a slow
failure, not a test run that never ends."""


@pytest.fixture(scope="module")
def server() -> Iterator[PrivatePostgres]:
    if find_binaries() is None:
        unavailable("no PostgreSQL binaries (/usr/lib/postgresql/*/bin) for a private server")
    with private_postgres() as running:
        yield running


@pytest.fixture
def frozen(server: PrivatePostgres) -> Iterator[Callable[[], None]]:
    """Call it to freeze the server; it thaws at the end of the test (or after
    FREEZE_AT_MOST seconds)."""
    timers: list[threading.Timer] = []

    def freeze() -> None:
        server.freeze()
        timer = threading.Timer(FREEZE_AT_MOST, server.thaw)
        timer.daemon = True
        timer.start()
        timers.append(timer)

    yield freeze
    for timer in timers:
        timer.cancel()
    server.thaw()


def _url(server: PrivatePostgres, prefix: str) -> str:
    return f"{server.url}?timeout={TIMEOUT}&connect_timeout=1&table_prefix={prefix}"


def _timed(action: Callable[[], object]) -> tuple[BaseException | None, object, float]:
    started = time.monotonic()
    try:
        result = action()
    except BaseException as error:
        return error, None, time.monotonic() - started
    return None, result, time.monotonic() - started


def _recover(action: Callable[[], object], within: float = 15.0) -> tuple[object, float]:
    """Retry ``action`` until it answers; its answer and how long after the thaw."""
    started = time.monotonic()
    while True:
        try:
            return action(), time.monotonic() - started
        except BackendUnavailableError:
            if time.monotonic() - started > within:
                raise
            time.sleep(0.05)


def test_sync_operations_end_within_the_timeout_while_frozen(
    server: PrivatePostgres, frozen: Callable[[], None]
) -> None:
    url = _url(server, "freeze_sync_")
    with (
        authstore.open_cache(url) as cache,
        authstore.open_sessions(url) as sessions,
        authstore.open_magic_links(url) as links,
        authstore.open_totp(url) as totp,
    ):
        cache.add_to_blacklist("jti", 600)
        cache.set("k", "v")
        token = sessions.create("alice", ttl=600).token
        link = links.issue("alice", "alice@example.com", ttl=600).token
        totp.save_pending("alice", b"ciphertext")
        calls: dict[str, Callable[[], object]] = {
            "is_blacklisted": lambda: cache.is_blacklisted("jti"),
            "get": lambda: cache.get("k"),
            "incr": lambda: cache.incr("n"),
            "rate limit": lambda: cache.check_rate_limit("rl", 5, 60),
            "session get": lambda: sessions.get(token),
            "session create": lambda: sessions.create("bob", ttl=60, max_sessions=2),
            "consume": lambda: links.consume(link),
            "claim_step": lambda: totp.claim_step("alice", 7),
        }
        frozen()
        problems = []
        for name, call in calls.items():
            error, answer, took = _timed(call)
            if not isinstance(error, BackendUnavailableError) or took > BOUND:
                problems.append(f"{name}: {error!r} / {answer!r} after {took:.2f} s")
        with ThreadPoolExecutor(8) as threads:
            started = time.monotonic()
            outcomes = list(threads.map(lambda _: _timed(calls["is_blacklisted"]), range(8)))
            everyone = time.monotonic() - started
        problems += [
            f"concurrent is_blacklisted: {error!r} / {answer!r} after {took:.2f} s"
            for error, answer, took in outcomes
            if not isinstance(error, BackendUnavailableError) or took > BOUND
        ]
        assert not problems, "while frozen:\n" + "\n".join(problems)
        assert everyone <= BOUND, everyone
        server.thaw()
        answer, recovery = _recover(lambda: cache.is_blacklisted("jti"))
        print(f"\nsync PostgreSQL: first answer {recovery:.3f} s after SIGCONT")
        assert answer is True, "an acknowledged revocation survived the freeze"
        assert cache.get("k") == "v"
        assert sessions.get(token) is not None
        assert totp.load("alice") is not None


def test_async_operations_end_within_the_timeout_while_frozen(
    server: PrivatePostgres, frozen: Callable[[], None]
) -> None:
    url = _url(server, "freeze_async_")

    async def timed(action: Callable[[], Awaitable[object]]) -> tuple[Any, Any, float]:
        started = time.monotonic()
        try:
            result = await action()
        except BaseException as error:
            return error, None, time.monotonic() - started
        return None, result, time.monotonic() - started

    async def scenario() -> tuple[list[str], float]:
        async with (
            authstore.open_async_cache(url) as cache,
            authstore.open_async_sessions(url) as sessions,
        ):
            await cache.add_to_blacklist("jti", 600)
            token = (await sessions.create("alice", ttl=600)).token
            frozen()
            outcomes = await asyncio.gather(
                *(timed(lambda: cache.is_blacklisted("jti")) for _ in range(8)),
                timed(lambda: sessions.get(token)),
                timed(lambda: cache.incr("n")),
            )
            problems = [
                f"{error!r} / {answer!r} after {took:.2f} s"
                for error, answer, took in outcomes
                if not isinstance(error, BackendUnavailableError) or took > BOUND
            ]
            server.thaw()
            started = time.monotonic()
            while True:
                try:
                    revoked = await cache.is_blacklisted("jti")
                    break
                except BackendUnavailableError:
                    assert time.monotonic() - started < 15
                    await asyncio.sleep(0.05)
            recovery = time.monotonic() - started
            assert revoked is True
            assert await sessions.get(token) is not None
            return problems, recovery

    problems, recovery = asyncio.run(scenario())
    print(f"\nasync PostgreSQL: first answer {recovery:.3f} s after SIGCONT")
    assert not problems, "while frozen:\n" + "\n".join(problems)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_killed_server_fails_closed_and_recovers(server: PrivatePostgres, mode: str) -> None:
    stores = Stores(url_factory(_url(server, f"kill_{mode}_"), "faults"), mode)  # type: ignore[arg-type]
    try:
        cache, sessions, links = stores.cache(), stores.sessions(), stores.magic_links()
        cache.add_to_blacklist("jti", 600)
        token = sessions.create("alice", ttl=600).token
        link = links.issue("alice", "alice@example.com", ttl=600).token
        for _ in range(5):
            cache.incr("n")
        server.kill()
        calls: dict[str, Callable[[], object]] = {
            "is_blacklisted": lambda: cache.is_blacklisted("jti"),
            "session get": lambda: sessions.get(token),
            "consume": lambda: links.consume(link),
            "rate limit": lambda: cache.check_rate_limit("rl", 5, 60),
            "incr": lambda: cache.incr("n"),
        }
        problems = []
        for _ in range(2):  # the broken pooled connections first, then refused connects
            for name, call in calls.items():
                error, answer, took = _timed(call)
                if not isinstance(error, BackendUnavailableError) or took > BOUND:
                    problems.append(f"{name}: {error!r} / {answer!r} after {took:.2f} s")
        assert not problems, "while down:\n" + "\n".join(problems)
        started = time.monotonic()
        server.start()
        ready = time.monotonic() - started
        answer, recovery = _recover(lambda: cache.is_blacklisted("jti"))
        print(
            f"\n{mode} PostgreSQL after SIGKILL: server ready {ready:.2f} s after restart, "
            f"store answered {recovery:.3f} s later"
        )
        assert answer is True, "an acknowledged revocation survived the crash"
        assert cache.get("n") == 5, "every acknowledged increment survived, no other"
        assert sessions.get(token) is not None
        assert links.consume(link) is not None
    finally:
        stores.close()
        if not server.running:
            server.start()
