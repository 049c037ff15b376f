"""Round trips on the wire: one per single-record operation, one transaction for the rest.

Sync: libpq's protocol trace of the store's only connection counts what psycopg
sends (each Sync or simple Query message is one round trip). Async: a relay between
asyncpg and the server reads the messages it sends (``PgWire``), so the runner's own
path to asyncpg's protocol is counted as its ``Connection.fetch`` would be, the pool's
reset query included (there must be none). Each operation runs a few times first, so
psycopg's one-time statement preparation (after five executions) and asyncpg's first
Parse of a statement are not counted.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import pq

import authstore
from authstore.adapters.sql.ops import PURGE_BATCH
from tests.backends import with_options
from tests.counted_operations import cache_single_record_operations
from tests.relay import Relay

WARM_UP = 6  # psycopg prepares a statement on its sixth execution
WARM_UPS: dict[str, Callable[[Any], object]] = {
    "cache": lambda store: store.exists("warm-up"),
    "sessions": lambda store: store.count("warm-up"),
    "totp": lambda store: store.load("warm-up"),
    "magic_links": lambda store: store.peek("warm-up-token"),
}


class WireTrace:
    """What psycopg sends on one connection while an action runs."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def messages(self, action: Callable[[], object]) -> list[str]:
        with tempfile.TemporaryFile("w+") as file:
            pgconn = self.connection.pgconn
            pgconn.trace(file.fileno())
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                action()
            finally:
                pgconn.untrace()
            file.seek(0)
            lines = [line.rstrip("\n").split("\t") for line in file]
        return [
            line[2] if len(line) < 4 else f"{line[2]}\t{line[3]}"
            for line in lines
            if line[0] == "F"
        ]

    def round_trips(self, action: Callable[[], object]) -> list[str]:
        """One entry per round trip: the executed statements (Execute) or simple queries."""
        sent = self.messages(action)
        trips, pending = [], ""
        for message in sent:
            kind, _, detail = message.partition("\t")
            if kind == "Parse":
                pending = detail
            elif kind == "Query":
                trips.append(detail.strip())
            elif kind == "Sync":
                trips.append(pending or "(prepared statement)")
                pending = ""
        return trips


def _the_connection(store: Any) -> psycopg.Connection[Any]:
    """The connection the runner keeps for uncontended operations: with pool_size=1,
    the only one it has."""
    runner = store._runner
    assert runner.pool is not None and runner.pool.max_size == 1
    connection: psycopg.Connection[Any] = runner._hot
    return connection


@pytest.fixture
def open_traced(pg_url: str) -> Iterator[Callable[[str], tuple[Any, WireTrace]]]:
    opened: list[Any] = []

    def make(kind: str) -> tuple[Any, WireTrace]:
        store = getattr(authstore, f"open_{kind}")(pg_url, pool_size=1, pool_min=1)
        opened.append(store)
        WARM_UPS[kind](store)  # connects and migrates
        return store, WireTrace(_the_connection(store))

    yield make
    for store in opened:
        store.close()


def _one_each(trace: WireTrace, operations: dict[str, Callable[[], object]]) -> None:
    problems = {}
    for name, action in operations.items():
        for _ in range(WARM_UP):
            action()
        trips = trace.round_trips(action)
        if len(trips) != 1 or "BEGIN" in trips[0]:
            problems[name] = trips
    assert not problems, problems


def test_cache_operations_are_one_round_trip(open_traced: Any) -> None:
    cache, trace = open_traced("cache")
    cache.set("n", 1)
    cache.set("k", "v", ttl=600)
    _one_each(
        trace,
        cache_single_record_operations(cache)
        | {
            "fixed_window": lambda: cache.check_rate_limit("rl", 10**6, 60),
            "sliding_window": lambda: cache.check_rate_limit(
                "rl", 10**6, 60, algorithm="sliding_window"
            ),
            "gcra": lambda: cache.check_rate_limit("rl", 10**6, 60, algorithm="gcra"),
            "peek_rate_limit": lambda: cache.peek_rate_limit("rl", 10**6, 60),
            "peek_rate_limit gcra": lambda: cache.peek_rate_limit("rl", 10**6, 60, "gcra"),
            "peek_rate_limits": lambda: cache.peek_rate_limits("rl", "1000000/minute;10/day"),
        },
    )


def test_a_group_hit_is_two_round_trips(open_traced: Any) -> None:
    """A group hit reads the record with the clock, then compare-and-sets it (no
    transaction); a refused hit is the read alone."""
    cache, trace = open_traced("cache")
    allowed, refused = f"g-{uuid.uuid4().hex}", f"g-{uuid.uuid4().hex}"
    for _ in range(WARM_UP + 1):  # the first hit creates the record (add), the rest UPDATE
        cache.check_rate_limits(allowed, "1000000/minute;1000000/day")
        cache.check_rate_limits(refused, "1/hour;5/day")
    hit = trace.round_trips(lambda: cache.check_rate_limits(allowed, "1000000/minute;1000000/day"))
    assert len(hit) == 2 and not any("BEGIN" in trip for trip in hit), hit
    assert len(trace.round_trips(lambda: cache.check_rate_limits(refused, "1/hour;5/day"))) == 1


def test_session_totp_and_link_operations_are_one_round_trip(open_traced: Any) -> None:
    sessions, session_trace = open_traced("sessions")
    totp, totp_trace = open_traced("totp")
    links, link_trace = open_traced("magic_links")
    new = sessions.create("u", ttl=600)
    totp.save_pending("u", b"secret")
    totp.enable("u")
    _one_each(
        session_trace,
        {
            "create": lambda: sessions.create("v", ttl=60),
            "get": lambda: sessions.get(new.token),
            "touch": lambda: sessions.touch(new.token, ttl=600),
            "list": lambda: sessions.list("u"),
            "count": lambda: sessions.count("u"),
            "revoke": lambda: sessions.revoke("not-a-token"),
            "revoke_by_id": lambda: sessions.revoke_by_id("no-such-id", user_id="u"),
            "revoke_all": lambda: sessions.revoke_all("v"),
        },
    )
    steps = iter(range(1, 1000))
    _one_each(
        totp_trace,
        {
            "save_pending": lambda: totp.save_pending("w", b"secret2"),
            "enable": lambda: totp.enable("w"),
            "load": lambda: totp.load("u"),
            "claim_step": lambda: totp.claim_step("u", next(steps)),
            "use_backup_code": lambda: totp.use_backup_code("u", "nope"),
        },
    )
    tokens = iter([links.issue("u", "u@example.com", ttl=60).token for _ in range(WARM_UP + 1)])
    _one_each(
        link_trace,
        {
            "issue (keep previous)": lambda: links.issue(
                "u", "u@example.com", ttl=60, revoke_previous=False
            ),
            "peek": lambda: links.peek("no-such-token"),
            "consume": lambda: links.consume(next(tokens)),
            "revoke_user": lambda: links.revoke_user("nobody"),
        },
    )


def test_multi_row_operations_are_one_transaction(open_traced: Any) -> None:
    sessions, session_trace = open_traced("sessions")
    totp, totp_trace = open_traced("totp")
    links, link_trace = open_traced("magic_links")
    cache, cache_trace = open_traced("cache")
    totp.save_pending("u", b"secret")
    cases: list[tuple[str, WireTrace, Callable[[], object], int]] = [
        # name, trace, action, statements between BEGIN and COMMIT
        (
            "sessions.create capped",
            session_trace,
            lambda: sessions.create("u", ttl=60, max_sessions=2),
            3,
        ),
        (
            "totp.replace_backup_codes",
            totp_trace,
            lambda: totp.replace_backup_codes("u", ["a", "b"]),
            4,  # lock, delete, state check, insert
        ),
        ("totp.disable", totp_trace, lambda: totp.disable("u"), 3),
        (
            "links.issue revoking previous",
            link_trace,
            lambda: links.issue("u", "u@e.com", ttl=60),
            3,
        ),
        (
            "cache.set_many of 600",
            cache_trace,
            lambda: cache.set_many({f"k{i}": i for i in range(600)}),
            3,
        ),
    ]
    for name, trace, action, inner in cases:
        action()
        trips = trace.round_trips(action)
        assert trips[0].startswith('"BEGIN ISOLATION LEVEL READ COMMITTED"'), (name, trips)
        assert trips[-1] == '"COMMIT"', (name, trips)
        assert len(trips) == inner + 2, (name, trips)
        if name.startswith("totp") or name.endswith(("capped", "previous")):
            assert "pg_advisory_xact_lock" in trips[1], (name, trips)


UNKNOWN = "<a statement prepared before the relay saw it>"


class PgWire(Relay):
    """A relay to a PostgreSQL server that reads the frontend messages clients send: one
    round trip per Sync, Flush (asyncpg prepares with Parse, Describe, Flush) or simple
    Query, named by the statements it executes or prepares."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        super().__init__((parts.hostname or "127.0.0.1", parts.port or 5432))
        netloc = f"{parts.username}@" if parts.username else ""
        self.url = urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))
        self.trips: list[str] = []
        self._buffers: dict[int, bytearray] = {}
        self._started: set[int] = set()
        self._names: dict[bytes, str] = {}
        """Prepared statement name -> its text (Parse)."""
        self._pending: dict[int, list[str]] = {}

    def from_client(self, number: int, data: bytes, server: socket.socket) -> None:
        with self.lock:
            buffer = self._buffers.setdefault(number, bytearray())
            buffer += data
            while True:
                if number not in self._started:  # SSLRequest or StartupMessage: no type
                    if len(buffer) < 8:
                        break
                    size = int.from_bytes(buffer[:4], "big")
                    if len(buffer) < size:
                        break
                    if int.from_bytes(buffer[4:8], "big") != 80877103:  # not SSLRequest
                        self._started.add(number)
                    del buffer[:size]
                    continue
                if len(buffer) < 5:
                    break
                size = 1 + int.from_bytes(buffer[1:5], "big")
                if len(buffer) < size:
                    break
                kind, body = buffer[:1], bytes(buffer[5:size])
                del buffer[:size]
                self._read(number, kind, body)
        server.sendall(data)

    def _read(self, number: int, kind: bytes, body: bytes) -> None:
        pending = self._pending.setdefault(number, [])
        if kind == b"P":  # Parse: name, text
            name, text = body.split(b"\0")[:2]
            self._names[name] = text.decode()
            pending.append(f"PREPARE {text.decode()}")
        elif kind == b"B":  # Bind: portal, statement name
            pending.append(self._names.get(body.split(b"\0")[1], UNKNOWN))
        elif kind == b"Q":
            self.trips.append(body.rstrip(b"\0").decode())
        elif kind in (b"S", b"H"):
            self.trips.append(" ; ".join(pending) or "(no statement)")
            pending.clear()

    async def sent(self, action: Callable[[], Awaitable[object]]) -> list[str]:
        """The round trips ``action`` made, each named by what it executed (the relay has
        passed every byte on before the server could answer, so nothing is late)."""
        with self.lock:
            before = len(self.trips)
        await action()
        with self.lock:
            return self.trips[before:]


def test_async_operations_are_one_query_and_the_pool_sends_no_reset(pg_url: str) -> None:
    wire = PgWire(pg_url)

    async def scenario() -> dict[str, list[str]]:
        cache = authstore.open_async_cache(wire.url, pool_size=1, pool_min=1)
        sessions = authstore.open_async_sessions(wire.url, pool_size=1, pool_min=1)
        links = authstore.open_async_magic_links(wire.url, pool_size=1, pool_min=1)
        seen: dict[str, list[str]] = {}
        try:
            await cache.exists("warm-up")
            new = await sessions.create("u", ttl=600)
            links_of_u = [await links.issue("u", "u@example.com", ttl=60) for _ in range(3)]
            consumed = iter(links_of_u)
            actions: dict[str, Callable[[], Awaitable[object]]] = {
                "set": lambda: cache.set("k", 1),
                "incr": lambda: cache.incr("k"),
                "get": lambda: cache.get("k"),
                "fixed_window": lambda: cache.check_rate_limit("r", 3, 10),
                "gcra": lambda: cache.check_rate_limit("r", 3, 10, algorithm="gcra"),
                "is_blacklisted": lambda: cache.is_blacklisted("j"),
                "sessions.get": lambda: sessions.get(new.token),
                "sessions.touch": lambda: sessions.touch(new.token),
                "consume": lambda: links.consume(next(consumed).token),
                "issue": lambda: links.issue("u", "u@example.com", ttl=60),
            }
            for name, action in actions.items():
                await action()  # its statements prepared (a Parse round trip each)
                seen[name] = await wire.sent(action)
            # with one connection, concurrent operations queue for it: one query each
            seen["5 concurrent gets"] = await wire.sent(
                lambda: asyncio.gather(*(cache.get("k") for _ in range(5)))
            )
        finally:
            for store in (cache, sessions, links):
                await store.aclose()
        return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        wire.close()
    for name in (
        "set",
        "incr",
        "get",
        "fixed_window",
        "gcra",
        "is_blacklisted",
        "sessions.get",
        "sessions.touch",
        "consume",
    ):
        assert len(seen[name]) == 1, (name, seen[name])
        assert not seen[name][0].startswith("BEGIN") and UNKNOWN not in seen[name][0], seen[name]
    assert seen["issue"][0].startswith("BEGIN") and seen["issue"][-1] == "COMMIT", seen["issue"]
    assert len(seen["issue"]) == 5, seen["issue"]
    assert seen["5 concurrent gets"] == seen["get"] * 5, seen["5 concurrent gets"]


def test_async_statements_reach_query_loggers(pg_url: str) -> None:
    """A query logger on a connection of the runner's own pool (asyncpg's API: nobody
    else holds these connections, but a debugging user may reach one) sees every
    statement: the runner's direct path to the protocol, which skips the loggers, is not
    taken while a connection has one."""

    async def scenario() -> list[str]:
        cache = authstore.open_async_cache(pg_url, pool_size=1, pool_min=1)
        sent: list[str] = []
        try:
            await cache.set("k", 1)
            cast(Any, cache)._runner._hot.add_query_logger(lambda record: sent.append(record.query))
            await cache.get("k")
            await cache.incr("k")
            await asyncio.sleep(0.01)  # asyncpg calls query loggers with call_soon
        finally:
            await cache.aclose()
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) == 2 and sent[0].startswith("SELECT") and "UPDATE" in sent[1], sent


def test_async_operations_schedule_no_timer_per_statement(pg_url: str) -> None:
    """One deadline timer for every operation in flight (common/deadlines.py), not one
    per statement: asyncpg's own timeout schedules and cancels a loop timer for each
    statement, which cost as much as the rest of the runner's work. A transaction (a
    link issue: five statements) and single statements alike."""

    async def scenario() -> int:
        cache = authstore.open_async_cache(pg_url, pool_size=1, pool_min=1)
        links = authstore.open_async_magic_links(pg_url, pool_size=1, pool_min=1)
        try:
            await cache.set("k", 1)
            await links.issue("u", "u@example.com", ttl=60)
            loop = asyncio.get_running_loop()
            scheduled = 0
            call_at = loop.call_at

            def counted(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
                nonlocal scheduled
                scheduled += 1
                return call_at(*args, **kwargs)

            loop.call_at = counted  # type: ignore[method-assign]  # call_later calls it too
            try:
                for _ in range(10):
                    await cache.get("k")
                    await cache.check_rate_limit("r", 100, 10)
                    await links.issue("u", "u@example.com", ttl=60)
            finally:
                del loop.call_at  # type: ignore[method-assign]
            return scheduled
        finally:
            await cache.aclose()
            await links.aclose()

    # each store's timer is scheduled when none is pending, at most once here
    assert asyncio.run(scenario()) <= 2


def test_purge_deletes_in_bounded_batches(pg_url: str, open_traced: Any) -> None:
    cache, trace = open_traced("cache")
    rows = 2 * PURGE_BATCH + 500
    cache.set_many({f"old{i}": i for i in range(rows)}, ttl=0.2)
    cache.set("keeper", 1)
    time.sleep(0.3)
    trips = trace.round_trips(cache.purge_expired)
    deletes = [trip for trip in trips if "DELETE" in trip]
    # three batches on the cache table (the last one short), one on the rate-limit table
    assert len(deletes) == 4, trips
    assert all("ctid = ANY(ARRAY(SELECT ctid" in trip for trip in deletes)
    assert cache.get("keeper") == 1


def test_an_entry_renewed_while_a_purge_runs_survives(
    pg_url: str, table_prefix: str, admin: Any
) -> None:
    """The purge picks rows as expired, then deletes them; a row renewed in between
    (a revoked token's blacklist entry written again) must not be deleted on the
    stale verdict: PostgreSQL re-checks the outer WHERE on the row it locks."""
    with authstore.open_cache(pg_url, namespace="renew") as cache:
        cache.add_to_blacklist("jti-1", 0.2)
        time.sleep(0.3)
        assert not cache.is_blacklisted("jti-1")
        admin.execute("BEGIN")
        admin.execute(
            f"UPDATE {table_prefix}cache SET expires_at = "
            "extract(epoch FROM statement_timestamp()) + 3600 WHERE cache_key = 'renew:b:jti-1'"
        )
        purged: list[int] = []
        worker = threading.Thread(target=lambda: purged.append(cache.purge_expired()))
        worker.start()
        time.sleep(0.5)  # the purge has chosen the row and now waits for its lock
        admin.execute("COMMIT")
        worker.join()
        assert cache.is_blacklisted("jti-1")


def _retype_user_agent(server: str, table: str) -> None:
    """Another process's migration: ``user_agent`` changes type, so the result type of
    every statement that returns it changes too (the server refuses them prepared)."""
    with psycopg.connect(server.partition("?")[0], autocommit=True) as other:
        other.execute(f"ALTER TABLE {table} ALTER COLUMN user_agent TYPE varchar(2000)")


def test_async_statements_survive_a_schema_change(postgres_server: str, fresh_prefix: str) -> None:
    """The runner's prepared statements outlive a schema change made elsewhere (another
    process's migration): the server refuses a statement whose result type changed, and
    the runner prepares it again, as ``Connection.fetch`` does for its own cache."""

    async def scenario() -> tuple[object, object]:
        url = with_options(postgres_server, table_prefix=fresh_prefix)
        sessions = authstore.open_async_sessions(url, pool_size=1, pool_min=1)
        try:
            new = await sessions.create("u", ttl=600, user_agent="agent")
            await sessions.get(new.token)  # prepared on the runner's connection
            _retype_user_agent(
                postgres_server, cast(Any, sessions)._runner.settings.tables.sessions
            )
            first = await sessions.get(new.token)
            second = await sessions.get(new.token)
        finally:
            await sessions.aclose()
        return first, second

    first, second = asyncio.run(scenario())
    assert first == second and getattr(first, "user_agent", None) == "agent", (first, second)


def test_async_stale_statement_in_a_transaction_fails_once_and_leaves_nothing(
    postgres_server: str, fresh_prefix: str
) -> None:
    """Inside a transaction a stale statement aborts it: the operation fails with the
    server's reason (as with ``Connection.fetch``), rolled back whole, and the next one
    prepares afresh."""

    async def scenario() -> tuple[BaseException | None, bool, bool]:
        url = with_options(postgres_server, table_prefix=fresh_prefix)
        links = authstore.open_async_magic_links(url, pool_size=1, pool_min=1)
        failed: BaseException | None = None
        try:
            await links.issue("u", "u@example.com", ttl=600, user_agent="agent")
            await links.issue("u", "u@example.com", ttl=600, revoke_previous=False)
            kept = await links.issue("u", "u@example.com", ttl=600, revoke_previous=False)
            _retype_user_agent(
                postgres_server, cast(Any, links)._runner.settings.tables.magic_links
            )
            try:
                await links.issue("u", "u@example.com", ttl=600, revoke_previous=True)
            except authstore.BackendError as error:
                failed = error
            still_valid = await links.peek(kept.token) is not None
            again = await links.issue("u", "u@example.com", ttl=600, revoke_previous=True)
            revoked = await links.peek(kept.token) is None and await links.peek(again.token)
        finally:
            await links.aclose()
        return failed, still_valid, bool(revoked)

    failed, still_valid, revoked = asyncio.run(scenario())
    # the server's reason, not the aborted transaction's "commands ignored" that a second
    # try inside it would meet
    assert type(failed) is authstore.BackendError and "cached statement plan" in str(failed), failed
    assert still_valid  # the failed issue's revoke of the earlier links was rolled back
    assert revoked
