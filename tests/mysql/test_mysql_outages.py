"""Outages for real: an exhausted pool, connections KILLed by the server, an unreachable
port, slow statements, held locks, driver errors and deadlocks. The server itself is
never stopped (others use it). Every failure is a BackendError (BackendUnavailableError
when it is "not now"), never a driver exception and never a wrong answer; the store
recovers by itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.mysql import aio, sync
from authstore.adapters.mysql.dialect import MySQLDialect
from authstore.adapters.mysql.runner import DEADLOCK_RETRIES
from authstore.adapters.sql import Begin, Query
from authstore.adapters.sql.program import TRANSACTION_RETRIES, Statement
from authstore.contracts.errors import BackendError, BackendUnavailableError
from tests.backends import with_options

from .conftest import UNREACHABLE_URL, admin_connection


def one_row(sql: str, **params: object) -> Op[Any]:
    row = yield Query(sql, params, "one")
    return row


def connection_id(store: Any) -> int:
    row = store._runner.run(one_row("SELECT CONNECTION_ID()"))
    return int(row[0])


def kill(admin: pymysql.Connection[Any], *thread_ids: int) -> None:
    with admin.cursor() as cursor:
        for thread_id in thread_ids:
            cursor.execute(f"KILL {int(thread_id)}")


def report(what: str, seconds: float) -> None:
    print(f"\n[mysql outage] {what}: {seconds * 1000:.0f} ms")


@pytest.fixture
def cache(mysql_url: str) -> Iterator[Any]:
    with authstore.open_cache(mysql_url, namespace="outage", pool_size=1, timeout=0.5) as store:
        store.set("k", "v")
        yield store


def test_an_exhausted_pool_fails_within_the_timeout(cache: Any) -> None:
    held = cache._runner._pool.acquire()  # another operation holds the only connection
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="pool_size=1"):
            cache.is_blacklisted("jti")
        waited = time.monotonic() - started
        report("sync pool exhausted (pool_size=1, timeout=0.5 s)", waited)
        assert 0.45 <= waited < 1.0
    finally:
        cache._runner._pool.release(held, reuse=True)
    assert cache.get("k") == "v"


def test_an_exhausted_async_pool_fails_within_the_timeout(mysql_url: str) -> None:
    async def scenario() -> float:
        async with authstore.open_async_cache(
            mysql_url, namespace="outage", pool_size=1, timeout=0.5
        ) as store:
            await store.set("k", "v")
            pool = store._runner._pool
            held = await pool.acquire()
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError, match="pool_size=1"):
                    await store.is_blacklisted("jti")
                waited = time.monotonic() - started
            finally:
                pool.release(held)
            assert await store.get("k") == "v"
            return waited

    waited = asyncio.run(scenario())
    report("async pool exhausted (pool_size=1, timeout=0.5 s)", waited)
    assert 0.45 <= waited < 1.0


def test_a_killed_idle_connection_is_replaced(cache: Any, admin: pymysql.Connection[Any]) -> None:
    """The pool sees the server closed it (the socket reads EOF) before using it."""
    for _ in range(3):
        victim = connection_id(cache)
        kill(admin, victim)
        time.sleep(0.05)  # the server closes the socket
        started = time.monotonic()
        assert cache.get("k") == "v"
        report("sync op right after KILL of its idle connection", time.monotonic() - started)
        assert connection_id(cache) != victim


def test_all_killed_connections_of_a_pool_are_replaced(
    mysql_url: str, admin: pymysql.Connection[Any]
) -> None:
    with authstore.open_cache(mysql_url, namespace="outage", pool_size=3) as store:
        pool = store._runner._pool
        store.set("k", "v")
        held = [pool.acquire() for _ in range(3)]
        victims = [connection.thread_id() for connection in held]
        for connection in held:
            pool.release(connection, reuse=True)
        kill(admin, *victims)
        time.sleep(0.05)
        assert [store.get("k") for _ in range(6)] == ["v"] * 6


def test_a_connection_killed_mid_statement_fails_closed_then_recovers(
    mysql_url: str, admin: pymysql.Connection[Any]
) -> None:
    with authstore.open_cache(mysql_url, namespace="outage", pool_size=1, timeout=10) as store:
        store.set("k", "v")
        victim = connection_id(store)
        outcome: list[BaseException] = []

        def slow() -> None:
            try:
                store._runner.run(one_row("SELECT SLEEP(5)"))
            except BaseException as error:
                outcome.append(error)

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.3)
        killed = time.monotonic()
        kill(admin, victim)
        worker.join(5)
        report("sync statement failing after its connection was KILLed", time.monotonic() - killed)
        assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailableError)
        assert isinstance(outcome[0].__cause__, pymysql.err.OperationalError)
        assert store.get("k") == "v"


def test_a_killed_async_connection(mysql_url: str, admin: pymysql.Connection[Any]) -> None:
    """The next operation succeeds on a new connection, or fails closed and the one
    after it succeeds."""

    async def scenario() -> list[str]:
        outcomes = []
        async with authstore.open_async_cache(mysql_url, namespace="outage", pool_size=1) as store:
            await store.set("k", "v")
            for _ in range(3):
                row = await store._runner.run(one_row("SELECT CONNECTION_ID()"))
                kill(admin, int(row[0]))
                await asyncio.sleep(0.05)
                started = time.monotonic()
                try:
                    assert await store.get("k") == "v"
                    outcomes.append("ok")
                except BackendUnavailableError:
                    outcomes.append("unavailable")
                    assert await store.get("k") == "v"
                report(
                    "async op right after KILL of its idle connection", time.monotonic() - started
                )
        return outcomes

    outcomes = asyncio.run(scenario())
    print(f"\n[mysql outage] async ops right after a KILL: {outcomes}")
    assert set(outcomes) <= {"ok", "unavailable"}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_an_unreachable_port_fails_fast(asynchronous: bool) -> None:
    started = time.monotonic()
    if asynchronous:

        async def scenario() -> None:
            async with authstore.open_async_cache(UNREACHABLE_URL) as store:
                await store.is_blacklisted("jti")

        with pytest.raises(BackendUnavailableError) as raised:
            asyncio.run(scenario())
    else:
        with (
            authstore.open_cache(UNREACHABLE_URL) as store,
            pytest.raises(BackendUnavailableError) as raised,
        ):
            store.is_blacklisted("jti")
    elapsed = time.monotonic() - started
    report(f"{'async' if asynchronous else 'sync'} unreachable port", elapsed)
    assert elapsed < 1.0
    assert isinstance(raised.value.__cause__, (pymysql.err.MySQLError, OSError))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_slow_statement_times_out_and_the_store_recovers(
    mysql_url: str, asynchronous: bool
) -> None:
    url = with_options(mysql_url, namespace="outage", timeout=0.5)
    if asynchronous:

        async def scenario() -> float:
            async with authstore.open_async_cache(url) as store:
                await store.set("k", "v")
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError):
                    await store._runner.run(one_row("SELECT SLEEP(3)"))
                waited = time.monotonic() - started
                assert await store.get("k") == "v"
                return waited

        waited = asyncio.run(scenario())
    else:
        with authstore.open_cache(url) as store:
            store.set("k", "v")
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                store._runner.run(one_row("SELECT SLEEP(3)"))
            waited = time.monotonic() - started
            assert store.get("k") == "v"
    report(f"{'async' if asynchronous else 'sync'} statement over timeout=0.5 s", waited)
    assert 0.45 <= waited < 1.5


def test_a_held_row_lock_makes_writers_unavailable_not_readers(
    mysql_url: str, admin: pymysql.Connection[Any], table_prefix: str
) -> None:
    """Another transaction holds the row: a rate-limit hit gives up with error 1205
    (BackendUnavailableError, fail closed); a blacklist check still answers, since
    InnoDB reads never wait for writers."""
    with authstore.open_cache(mysql_url, namespace="locked", timeout=2) as store:
        store.add_to_blacklist("jti", 60)
        store.check_rate_limit("rl", 5, 60)
        with admin.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                f"SELECT hits FROM {table_prefix}rate_limits WHERE cache_key = %s FOR UPDATE",
                ("locked:f:rl",),
            )
            cursor.execute(
                f"SELECT 1 FROM {table_prefix}cache WHERE cache_key = %s FOR UPDATE",
                ("locked:b:jti",),
            )
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError) as raised:
                    store.check_rate_limit("rl", 5, 60)
                report(
                    "rate-limit hit waiting on a row lock (lock wait 1 s)",
                    time.monotonic() - started,
                )
                assert raised.value.__cause__.args[0] == 1205  # type: ignore[union-attr]
                assert store.is_blacklisted("jti") is True
            finally:
                cursor.execute("ROLLBACK")
        assert store.check_rate_limit("rl", 5, 60).remaining == 3  # the refused wait cost nothing


def test_a_driver_error_rolls_back_and_the_store_goes_on(
    mysql_url: str, table_prefix: str, admin: pymysql.Connection[Any]
) -> None:
    def two_writes() -> Op[None]:
        yield Begin()
        yield Query(
            f"INSERT INTO {table_prefix}cache (cache_key, value) VALUES (:key, :value)",
            {"key": "first", "value": b"1"},
        )
        yield Query("INSERT INTO no_such_table VALUES (1)")

    with authstore.open_cache(mysql_url, namespace="broken", pool_size=1) as store:
        store.set("k", "v")
        with pytest.raises(BackendError) as raised:
            store._runner.run(two_writes())
        assert not isinstance(raised.value, BackendUnavailableError)
        assert isinstance(raised.value.__cause__, pymysql.err.ProgrammingError)
        with admin.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table_prefix}cache WHERE cache_key = 'first'")
            assert cursor.fetchone() == (0,)
        assert store.get("k") == "v"


class Deadlocks:
    """Fails the next ``count`` commands with InnoDB's deadlock error (1213)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0

    def wrap(self, real: Any) -> Any:
        def send(connection: Any, statement: Statement, multi: bool) -> Any:
            self.sent += 1
            if self.count and statement.text not in ("BEGIN", "ROLLBACK", MySQLDialect.begin):
                self.count -= 1
                raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
            return real(connection, statement, multi)

        return send


def cache_timeout(store: Any) -> float:
    return float(store._runner.settings.timeout)


def test_a_deadlocked_command_is_sent_again_a_bounded_number_of_times(
    cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InnoDB rolls a deadlock's victim back whole: a command that is its own
    transaction is safely sent again; the limit and the error stay exact."""
    cache.get("k")
    deadlocks = Deadlocks(5)
    monkeypatch.setattr(sync, "_send", deadlocks.wrap(sync._send))
    assert cache.check_rate_limit("dl", 1, 60).allowed
    assert deadlocks.sent == 5 + 1
    assert not cache.check_rate_limit("dl", 1, 60).allowed  # counted once
    deadlocks.count, deadlocks.sent = 10**6, 0
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="Deadlock"):
        cache.check_rate_limit("dl2", 1, 60)
    # at most DEADLOCK_RETRIES times, and not past the timeout (random pauses between)
    assert deadlocks.sent <= DEADLOCK_RETRIES + 1
    assert time.monotonic() - started < cache_timeout(cache) + 0.2


def test_a_deadlock_inside_an_operations_transaction_is_replayed_a_bounded_number_of_times(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InnoDB rolled the whole transaction back: it is replayed (see
    test_mysql_deadlocks.py), at most TRANSACTION_RETRIES times."""
    with authstore.open_sessions(mysql_url, namespace="deadlock") as sessions:
        sessions.count("warm-up")
        deadlocks = Deadlocks(0)
        monkeypatch.setattr(sync, "_send", deadlocks.wrap(sync._send))
        deadlocks.count = 2
        sessions.create("u", ttl=60, max_sessions=2)
        assert sessions.count("u") == 1
        deadlocks.count = TRANSACTION_RETRIES + 2
        with pytest.raises(BackendUnavailableError, match="Deadlock"):
            sessions.create("u", ttl=60, max_sessions=2)
        deadlocks.count = 0
        assert sessions.count("u") == 1


def test_async_deadlock_retry(mysql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deadlocks = Deadlocks(0)

    async def flaky(connection: Any, statement: Statement, multi: bool) -> Any:
        if deadlocks.count:
            deadlocks.count -= 1
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        return await real(connection, statement, multi)

    real = aio._send
    monkeypatch.setattr(aio, "_send", flaky)

    async def scenario() -> bool:
        async with authstore.open_async_cache(mysql_url, namespace="deadlock-async") as store:
            await store.get("k")
            deadlocks.count = 2
            return (await store.check_rate_limit("dl", 1, 60)).allowed

    assert asyncio.run(scenario()) is True


def test_a_closed_store_refuses_work(mysql_url: str) -> None:
    store = authstore.open_cache(mysql_url)
    store.set("k", 1)
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(BackendError, match="closed"):
        store.get("k")


def test_a_given_connection_killed_by_the_server_is_revived(
    mysql_server: str, table_prefix: str, admin: pymysql.Connection[Any]
) -> None:
    """authstore never closes a caller's connection, but reconnects it in place (a new
    server session, set up again) when the server dropped it."""
    given = admin_connection(mysql_server)
    try:
        with authstore.open_cache("mysql://", client=given, table_prefix=table_prefix) as store:
            store.set("k", "v")
            victim = given.thread_id()
            kill(admin, victim)
            time.sleep(0.05)
            assert store.get("k") == "v"
            assert given.thread_id() != victim and given.open
            with given.cursor() as cursor:
                cursor.execute("SELECT @@session.time_zone")
                assert cursor.fetchone() == ("+00:00",)
    finally:
        given.close()
