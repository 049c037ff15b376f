"""Outages for real: refused connections, an exhausted pool, a lock that never comes,
and server-side connections killed under the store (pg_terminate_backend on this
test's own application_name; the server itself is never stopped).

Each failure must be a BackendUnavailableError within the configured timeout, never a
hang nor a leaked driver error, and the store must recover by itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import asyncpg
import psycopg
import pytest

import authstore
from authstore.contracts.errors import BackendUnavailableError
from tests.outages import timed, timed_async

TIMEOUT = 0.5
SLACK = 1.5  # scheduling noise on a loaded 2-core machine

Admin = psycopg.Connection[tuple[Any, ...]]


def _kill(admin: Admin, application: str) -> int:
    row = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        [application],
    ).fetchone()
    assert row is not None
    return int(row[0])


def _hold_lock(admin: Admin, name: str) -> None:
    admin.execute("BEGIN")
    admin.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


# --- refused --------------------------------------------------------------------------


def test_an_unreachable_server_fails_fast_sync_and_async() -> None:
    url = "postgresql://postgres@127.0.0.1:1/authstore_test?timeout=3&connect_timeout=3"
    with authstore.open_cache(url) as cache:
        for _ in range(3):
            error, took = timed(lambda: cache.is_blacklisted("jti"))
            assert isinstance(error, BackendUnavailableError), error
            assert took < 1.0, took  # refused is known at once: no waiting out the timeout

    async def scenario() -> list[tuple[BaseException | None, float]]:
        async with authstore.open_async_cache(url) as cache:
            return [await timed_async(lambda: cache.is_blacklisted("jti")) for _ in range(3)]

    for error, took in asyncio.run(scenario()):
        assert isinstance(error, BackendUnavailableError), error
        assert took < 1.0, took


# --- pool exhaustion and lock waits ---------------------------------------------------


def test_sync_pool_exhaustion_fails_within_the_timeout(pg_url: str) -> None:
    namespace = f"exhaust{uuid.uuid4().hex[:6]}"
    with authstore.open_cache(
        pg_url, namespace=namespace, pool_size=1, pool_min=1, timeout=TIMEOUT
    ) as cache:
        cache.set("k", 1)
        # the only connection is the one the runner keeps at hand: mark it busy
        with cast(Any, cache)._runner._hot_lock:
            error, took = timed(lambda: cache.get("k"))
        assert isinstance(error, BackendUnavailableError), error
        assert "no pooled connection free" in str(error)
        assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK, took
        assert cache.get("k") == 1  # free again: back to work


def test_async_pool_exhaustion_fails_within_the_timeout(pg_url: str, postgres_server: str) -> None:
    async def scenario() -> tuple[Any, ...]:
        namespace = f"exhaust{uuid.uuid4().hex[:6]}"
        cache = authstore.open_async_cache(
            pg_url, namespace=namespace, pool_size=1, pool_min=1, timeout=TIMEOUT
        )
        given = await asyncpg.create_pool(postgres_server, min_size=1, max_size=1)
        on_given = authstore.open_async_cache(
            "postgresql://",
            client=given,
            namespace=namespace,
            table_prefix=cast(Any, cache)._runner.settings.tables.prefix,
            timeout=TIMEOUT,
        )
        try:
            pool = await cast(Any, cache)._runner._ready_pool()
            async with pool.acquire(), given.acquire():  # every connection, held elsewhere
                own = await timed_async(lambda: cache.get("k"))
                client = await timed_async(lambda: on_given.get("k"))
            return own, client, await cache.get("k"), await on_given.get("k")
        finally:
            await cache.aclose()
            await on_given.aclose()
            await given.close()

    own, client, *after = asyncio.run(scenario())
    for error, took in (own, client):
        assert isinstance(error, BackendUnavailableError), error
        assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK, took
    assert after == [None, None]  # free again: back to work


def test_async_lock_wait_times_out_and_rolls_back(pg_url: str, admin: Admin) -> None:
    """The only connection is stuck behind a lock held elsewhere: the stuck statement
    times out, an operation queued behind it fails or runs, never hangs."""
    namespace = f"exhaust{uuid.uuid4().hex[:6]}"
    _hold_lock(admin, f"authstore:sessions:{namespace}:alice")

    async def scenario() -> tuple[Any, ...]:
        sessions = authstore.open_async_sessions(
            pg_url, namespace=namespace, pool_size=1, pool_min=1, timeout=TIMEOUT
        )
        try:
            await sessions.count("warm-up")
            stuck = asyncio.create_task(
                timed_async(lambda: sessions.create("alice", ttl=60, max_sessions=1))
            )
            await asyncio.sleep(0.05)
            queued = await timed_async(lambda: sessions.count("bob"))
            blocked = await stuck
            admin.execute("COMMIT")
            return blocked, queued, await sessions.count("alice")
        finally:
            await sessions.aclose()

    try:
        (error, took), (queued_error, queued_took), left = asyncio.run(scenario())
    finally:
        if admin.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            admin.execute("ROLLBACK")
    assert isinstance(error, BackendUnavailableError), error
    assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK, took
    assert queued_error is None or isinstance(queued_error, BackendUnavailableError)
    assert queued_took < TIMEOUT + SLACK, queued_took
    assert left == 0  # the timed-out create left nothing behind


def test_sync_lock_wait_times_out_and_rolls_back(pg_url: str, admin: Admin) -> None:
    namespace = f"lockwait{uuid.uuid4().hex[:6]}"
    with authstore.open_sessions(pg_url, namespace=namespace, timeout=TIMEOUT) as sessions:
        sessions.count("warm-up")
        _hold_lock(admin, f"authstore:sessions:{namespace}:alice")
        try:
            error, took = timed(lambda: sessions.create("alice", ttl=60, max_sessions=2))
        finally:
            admin.execute("COMMIT")
        assert isinstance(error, BackendUnavailableError), error
        assert "statement timeout" in str(error)
        assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK, took
        assert sessions.count("alice") == 0
        assert sessions.create("alice", ttl=60, max_sessions=2).record.user_id == "alice"


# --- connections killed by the server -------------------------------------------------


@pytest.mark.parametrize("pool_min", [1, 3])
def test_sync_store_recovers_after_its_connections_are_killed(
    pg_url: str, admin: Admin, pool_min: int
) -> None:
    application = f"authstore-kill-{uuid.uuid4().hex[:8]}"
    with authstore.open_cache(
        pg_url, application_name=application, pool_min=pool_min, pool_size=4, timeout=2
    ) as cache:
        cache.set("k", "v")
        workers = [
            threading.Thread(target=lambda: [cache.get("k") for _ in range(20)]) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert _kill(admin, application) >= 1
        error, took = timed(lambda: cache.is_blacklisted("jti"))
        assert error is None or isinstance(error, BackendUnavailableError), error
        assert took < 2.0, took
        assert cache.get("k") == "v"  # the one after works, on a fresh connection
        assert not cache.is_blacklisted("jti")


def test_async_store_recovers_after_its_connections_are_killed(pg_url: str, admin: Admin) -> None:
    application = f"authstore-kill-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[Any, ...]:
        async with authstore.open_async_cache(
            pg_url, application_name=application, pool_min=2, pool_size=4, timeout=2
        ) as cache:
            await cache.set("k", "v")
            await asyncio.gather(*(cache.get("k") for _ in range(20)))
            killed = _kill(admin, application)
            first = await timed_async(lambda: cache.is_blacklisted("jti"))
            return killed, first, await cache.get("k"), await cache.is_blacklisted("jti")

    killed, (error, took), value, listed = asyncio.run(scenario())
    assert killed >= 1
    assert error is None or isinstance(error, BackendUnavailableError), error
    assert took < 2.0, took
    assert (value, listed) == ("v", False)


def test_an_async_hot_connection_closed_between_operations_is_replaced(pg_url: str) -> None:
    """The hot connection is checked when an operation takes it, not when the previous
    one gives it back: one closed in between (here by the client; asyncpg also closes a
    connection whose socket it saw fail) never reaches an operation, which gets a fresh
    connection and answers."""

    async def scenario() -> list[Any]:
        async with authstore.open_async_cache(pg_url, pool_min=1, pool_size=2) as cache:
            await cache.set("k", "v")
            answers = []
            for _ in range(3):
                runner = cast(Any, cache)._runner
                hot = runner._hot_driver
                assert hot is not None and not runner._hot_busy
                hot.terminate()
                answers.append(await cache.get("k"))
                assert runner._hot_driver is not hot
            return answers

    assert asyncio.run(scenario()) == ["v", "v", "v"]


def test_a_transaction_killed_midway_leaves_nothing(pg_url: str, admin: Admin) -> None:
    """The backend dies while the operation waits on its lock inside BEGIN: the client
    sees BackendUnavailableError, the server rolled everything back, the store goes on."""
    application = f"authstore-midway-{uuid.uuid4().hex[:8]}"
    namespace = f"midway{uuid.uuid4().hex[:6]}"
    with authstore.open_sessions(
        pg_url, namespace=namespace, application_name=application, timeout=5
    ) as sessions:
        sessions.count("warm-up")
        _hold_lock(admin, f"authstore:sessions:{namespace}:alice")
        outcome: list[tuple[BaseException | None, float]] = []
        worker = threading.Thread(
            target=lambda: outcome.append(
                timed(lambda: sessions.create("alice", ttl=60, max_sessions=1))
            )
        )
        worker.start()
        time.sleep(0.3)
        assert _kill(admin, application) >= 1
        worker.join(5)
        admin.execute("COMMIT")
        error, took = outcome[0]
        assert isinstance(error, BackendUnavailableError), error
        assert took < 2.0
        assert sessions.count("alice") == 0
        assert sessions.create("alice", ttl=60, max_sessions=1).record.user_id == "alice"


def test_security_reads_fail_closed_while_unreachable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/authstore_test?timeout=1"
    with authstore.open_cache(url) as cache, authstore.open_sessions(url) as sessions:
        for call in (
            lambda: cache.is_blacklisted("jti"),
            lambda: cache.user_tokens_revoked_at("alice"),
            lambda: cache.check_rate_limit("login", 5, 60),
            lambda: sessions.get("some-token"),
        ):
            with pytest.raises(BackendUnavailableError):
                call()


def test_a_cancelled_async_operation_leaves_nothing_and_the_store_works(
    pg_url: str, admin: Admin
) -> None:
    """A caller's timeout cancels the task mid-transaction: asyncpg is still cancelling
    on the server, so that connection must not serve the next operation as is."""
    namespace = f"cancel{uuid.uuid4().hex[:6]}"

    async def scenario() -> list[int]:
        async with authstore.open_async_sessions(
            pg_url, namespace=namespace, pool_size=2
        ) as sessions:
            await sessions.count("warm-up")
            _hold_lock(admin, f"authstore:sessions:{namespace}:alice")
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await sessions.create("alice", ttl=60, max_sessions=1)
            finally:
                admin.execute("COMMIT")
            return [await sessions.count("alice") for _ in range(3)]

    assert asyncio.run(scenario()) == [0, 0, 0]


def test_async_transaction_on_a_frozen_server_fails_within_one_timeout() -> None:
    """The deadline bounds the whole operation: a transaction interrupted on a frozen
    server sends no ROLLBACK (asyncpg would first wait for its cancellation, which a
    frozen server never acknowledges) and takes no new connection for one. Each
    statement used to have its own timeout: the ROLLBACK's doubled the wait."""
    from tests.private_servers import PRIVATE_SERVERS, private_server

    reason = PRIVATE_SERVERS["postgres"].available()
    if reason is not None:
        pytest.skip(f"private postgres server: {reason}")
    timeout = 2.0

    async def scenario(url: str, freeze: Callable[[], None]) -> list[tuple[Any, float]]:
        prefix = f"frz{uuid.uuid4().hex[:6]}_"
        sessions = authstore.open_async_sessions(
            f"{url}?timeout={timeout:g}&connect_timeout={timeout:g}&table_prefix={prefix}"
        )
        try:
            await sessions.create("alice", ttl=600)
            freeze()
            # a transaction (eviction down to max_sessions), on the hot connection and
            # then on a new one (the first timeout drops the pool's connections)
            return [
                await timed_async(lambda: sessions.create("bob", ttl=60, max_sessions=2))
                for _ in range(2)
            ]
        finally:
            await sessions.aclose()

    with private_server("postgres") as server:
        safety = threading.Timer(20.0, server.thaw)
        safety.daemon = True
        safety.start()
        try:
            outcomes = asyncio.run(scenario(server.url, server.freeze))
        finally:
            safety.cancel()
            server.thaw()
    for error, took in outcomes:
        assert isinstance(error, BackendUnavailableError), error
        # one timeout, and scheduling noise; two timeouts would be 4 s
        assert timeout * 0.9 <= took < timeout * 1.5, took
