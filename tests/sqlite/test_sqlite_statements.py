"""Round trips: every single-record operation is ONE statement, multi-row ones one transaction.

Counted with sqlite3's trace callback on a connection handed to the store, after
the first operation has migrated the schema.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import authstore
from authstore.adapters.common.stores import Cache
from authstore.adapters.sql import SqlCacheOps, Tables
from authstore.adapters.sql.ops import PURGE_BATCH
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.adapters.sqlite.sync import SyncSQLiteRunner
from tests.counted_operations import (
    cache_single_record_operations,
    session_totp_and_link_operations,
)


class Trace:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, statement: str) -> None:
        self.statements.append(statement)

    def count(self, action: Callable[[], object]) -> list[str]:
        self.statements.clear()
        action()
        return list(self.statements)


@pytest.fixture
def connection(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    yield conn
    conn.close()


@pytest.fixture
def trace(connection: sqlite3.Connection) -> Iterator[Trace]:
    tracer = Trace()
    connection.set_trace_callback(tracer)
    yield tracer
    connection.set_trace_callback(None)


def _open(kind: str, connection: sqlite3.Connection) -> Any:
    store = getattr(authstore, f"open_{kind}")("sqlite://", connection=connection)
    return store


def test_cache_single_record_operations_are_one_statement(
    connection: sqlite3.Connection, trace: Trace
) -> None:
    cache = _open("cache", connection)
    cache.exists("warm-up")  # migrates
    cache.set("n", 1)
    operations = cache_single_record_operations(cache)
    for name, action in operations.items():
        sent = trace.count(action)
        assert len(sent) == 1, (name, sent)
        assert not sent[0].startswith(("BEGIN", "COMMIT")), (name, sent)


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_hit_is_a_read_and_a_write_and_a_refused_one_only_the_read(
    connection: sqlite3.Connection, trace: Trace, algorithm: str
) -> None:
    """SQLite decides in this process (Dialect.local): no transaction, and a refused hit
    that changes nothing writes nothing."""
    cache = _open("cache", connection)
    cache.exists("warm-up")
    for write in ("INSERT", "UPDATE"):  # a new row, then the row as read
        sent = trace.count(lambda: cache.check_rate_limit("rl", 2, 60, algorithm=algorithm))
        assert [s.split()[0] for s in sent] == ["SELECT", write], sent
    for _ in range(2):
        sent = trace.count(lambda: cache.check_rate_limit("rl", 2, 60, algorithm=algorithm))
        assert [s.split()[0] for s in sent] == ["SELECT"], sent


@pytest.mark.parametrize("existing", [False, True], ids=["new-row", "existing-row"])
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_hit_written_between_read_and_write_is_not_lost(
    db_path: Path, algorithm: str, existing: bool
) -> None:
    """Another connection's hit lands after this hit read the row (or found none) and
    before it writes: the guarded write must miss and the hit be decided again under
    BEGIN IMMEDIATE, so the limit still lets exactly that many hits through."""
    ours = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    theirs = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    ops = SqlCacheOps(ours.dialect, Tables())
    other = Cache(SqlCacheOps(theirs.dialect, Tables()), theirs)
    other.exists("warm-up")  # migrates, outside the race
    now = 1_700_000_000.0
    limit = 2 if existing else 1
    armed = [False]

    def racing_clock() -> float:
        if armed[0]:  # read right after our read of the row, before our write
            armed[0] = False
            assert other.check_rate_limit("k", limit, 60, algorithm=algorithm).allowed
        return now

    theirs.dialect.clock = lambda: now
    ours.dialect.clock = racing_clock
    tracer = Trace()
    key = f"authstore:{algorithm[0]}:k"
    ours.run(ops.fixed_window("authstore:f:warm", 1, 60.0, 1))  # connects, migrates
    if existing:  # the row holds one hit when we read it
        assert ours.run(getattr(ops, algorithm)(key, limit, 60.0, 1))[0] is True
    armed[0] = True
    assert ours.connection is not None
    ours.connection.set_trace_callback(tracer)
    state = ours.run(getattr(ops, algorithm)(key, limit, 60.0, 1))
    ours.connection.set_trace_callback(None)
    assert state[0] is False, state
    assert tracer.statements[2] == "BEGIN IMMEDIATE", tracer.statements
    assert tracer.statements[-1] == "COMMIT", tracer.statements
    ours.close()
    other.close()


def test_group_hit_is_a_read_and_a_guarded_write_and_a_refused_one_only_the_read(
    connection: sqlite3.Connection, trace: Trace
) -> None:
    cache = _open("cache", connection)
    cache.exists("warm-up")
    for write in ("INSERT", "UPDATE"):  # the record created where none is live, then replaced
        sent = trace.count(lambda: cache.check_rate_limits("g", "2/minute;5/hour"))
        assert [s.split()[0] for s in sent] == ["SELECT", write], sent
    sent = trace.count(lambda: cache.check_rate_limits("g", "2/minute;5/hour"))
    assert [s.split()[0] for s in sent] == ["SELECT"], sent
    for peek in (
        lambda: cache.peek_rate_limits("g", "2/minute;5/hour"),
        lambda: cache.peek_rate_limit("g", 2, 60, "gcra"),
    ):
        sent = trace.count(peek)
        assert [s.split()[0] for s in sent] == ["SELECT"], sent


@pytest.mark.parametrize("existing", [False, True], ids=["new-record", "existing-record"])
def test_group_hit_written_between_read_and_write_is_not_lost(
    db_path: Path, existing: bool
) -> None:
    """Another connection's group hit lands after this one read the record (or found
    none) and before it writes: the compare-and-set misses, the hit is decided again
    on the record as it now is, and exactly ``limit`` hits pass in all."""
    ours = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    theirs = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    cache = Cache(SqlCacheOps(ours.dialect, Tables()), ours)
    other = Cache(SqlCacheOps(theirs.dialect, Tables()), theirs)
    other.exists("warm-up")  # migrates, outside the race
    group = "2/minute;5/hour" if existing else "1/minute;5/hour"
    if existing:
        assert other.check_rate_limits("k", group).allowed
    calls = [0]
    real_clock = ours.dialect.clock
    assert real_clock is not None

    def racing_clock() -> float:
        # read by the statement about to run: the first is our read of the record, the
        # second our write; the other hit lands between the two
        calls[0] += 1
        if calls[0] == 2:
            assert other.check_rate_limits("k", group).allowed
        return real_clock()

    cache.exists("warm-up")
    ours.dialect.clock = racing_clock
    mine = cache.check_rate_limits("k", group)
    assert calls[0] >= 3, "the race did not run (the hit was not decided again)"
    assert mine.allowed is False, mine
    assert not other.check_rate_limits("k", group).allowed
    ours.close()
    other.close()


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_reset_between_read_and_write_is_not_undone(
    db_path: Path, algorithm: str
) -> None:
    """Another connection resets the limiter after this hit read the row and before it
    writes: the write must not bring the row back as it was before the reset."""
    ours = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    theirs = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    ops = SqlCacheOps(ours.dialect, Tables())
    other = Cache(SqlCacheOps(theirs.dialect, Tables()), theirs)
    other.exists("warm-up")
    now = 1_700_000_000.0
    armed = [False]

    def racing_clock() -> float:
        if armed[0]:
            armed[0] = False
            other.reset_rate_limit("k")
        return now

    theirs.dialect.clock = lambda: now
    ours.dialect.clock = racing_clock
    key = f"authstore:{algorithm[0]}:k"
    assert ours.run(getattr(ops, algorithm)(key, 2, 60.0, 1))[0] is True
    armed[0] = True
    assert ours.run(getattr(ops, algorithm)(key, 2, 60.0, 1))[0] is True
    # after the reset at most this hit counts: one more hit of the limit of 2 passes
    assert other.check_rate_limit("k", 2, 60, algorithm=algorithm).allowed
    ours.close()
    other.close()


def test_session_totp_and_link_operations_are_one_statement(
    connection: sqlite3.Connection, trace: Trace
) -> None:
    sessions, totp, links = (_open(k, connection) for k in ("sessions", "totp", "magic_links"))
    operations = session_totp_and_link_operations(sessions, totp, links)
    for name, action in operations.items():
        sent = trace.count(action)
        assert len(sent) == 1, (name, sent)
        assert not sent[0].startswith(("BEGIN", "COMMIT")), (name, sent)


def test_multi_row_operations_are_one_immediate_transaction(
    connection: sqlite3.Connection, trace: Trace
) -> None:
    cache, sessions, totp, links = (
        _open(k, connection) for k in ("cache", "sessions", "totp", "magic_links")
    )
    cache.exists("x")  # each store migrates on first use
    sessions.count("x")
    totp.load("x")
    links.peek("x-token")
    totp.save_pending("u", b"secret")
    operations: dict[str, tuple[Callable[[], object], int]] = {
        # name: (action, statements between BEGIN IMMEDIATE and COMMIT)
        "sessions.create with max_sessions": (
            lambda: sessions.create("u", ttl=60, max_sessions=2),
            2,
        ),
        "totp.replace_backup_codes": (
            lambda: totp.replace_backup_codes("u", ["a", "b"]),
            3,
        ),  # + state check
        "totp.disable": (lambda: totp.disable("u"), 2),
        "links.issue revoking previous": (lambda: links.issue("u", "u@example.com", ttl=60), 2),
        "cache.set_many beyond one chunk": (
            lambda: cache.set_many({f"k{i}": i for i in range(600)}),
            3,
        ),
    }
    for name, (action, inner) in operations.items():
        sent = trace.count(action)
        assert sent[0] == "BEGIN IMMEDIATE", (name, sent)
        assert sent[-1] == "COMMIT", (name, sent)
        assert len(sent) == inner + 2, (name, sent)


def test_purge_deletes_in_bounded_batches(db_path: Path) -> None:
    runner = SyncSQLiteRunner(SQLiteSettings(str(db_path)))
    clock = [1_000_000.0]
    runner.dialect.clock = lambda: clock[0]
    cache = Cache(SqlCacheOps(runner.dialect, Tables()), runner)
    rows = 2 * PURGE_BATCH + 500
    cache.set_many({f"k{i}": i for i in range(rows)}, ttl=10)
    cache.set("keeper", 1)
    clock[0] += 11
    assert runner.connection is not None
    tracer = Trace()
    runner.connection.set_trace_callback(tracer)
    assert cache.purge_expired() == rows
    runner.connection.set_trace_callback(None)
    deletes = [s for s in tracer.statements if s.startswith("DELETE")]
    # three batches on the cache table (the last one short), one on the rate-limit table
    assert len(deletes) == 4, deletes
    assert cache.get("keeper") == 1
    cache.close()


def test_async_operations_are_one_statement(db_path: Path) -> None:
    async def scenario() -> dict[str, list[str]]:
        connection = await aiosqlite.connect(db_path, isolation_level=None)
        sent: list[str] = []
        try:
            cache = authstore.open_async_cache("sqlite://", connection=connection)
            links = authstore.open_async_magic_links("sqlite://", connection=connection)
            await cache.exists("warm-up")
            await links.peek("warm-up-token")
            link = await links.issue("u", "u@example.com", ttl=60)
            await connection.set_trace_callback(sent.append)
            actions: dict[str, Callable[[], Awaitable[object]]] = {
                "set": lambda: cache.set("k", 1),
                "incr": lambda: cache.incr("k"),
                "gcra": lambda: cache.check_rate_limit("r", 3, 10, algorithm="gcra"),
                "is_blacklisted": lambda: cache.is_blacklisted("j"),
                "consume": lambda: links.consume(link.token),
                "issue": lambda: links.issue("u", "u@example.com", ttl=60),
            }
            seen: dict[str, list[str]] = {}
            for name, action in actions.items():
                sent.clear()
                await action()
                seen[name] = list(sent)
            await connection.set_trace_callback(None)  # type: ignore[arg-type]
            return seen
        finally:
            await connection.close()

    seen = asyncio.run(scenario())
    for name in ("set", "incr", "is_blacklisted", "consume"):
        assert len(seen[name]) == 1, (name, seen[name])
    # a rate-limit hit on SQLite: a read and a guarded write, no transaction
    assert [s.split()[0] for s in seen["gcra"]] == ["SELECT", "INSERT"], seen["gcra"]
    assert seen["issue"][0] == "BEGIN IMMEDIATE" and seen["issue"][-1] == "COMMIT"


def test_revocation_instant_keeps_sub_second_precision(
    connection: sqlite3.Connection,
) -> None:
    cache = _open("cache", connection)
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert cache.revoke_user_tokens("u", at=at) == at
    assert cache.user_tokens_revoked_at("u") == at
