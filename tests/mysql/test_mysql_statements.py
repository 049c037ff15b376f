"""Round trips per operation, counted: the ``Statement``s the runner sends to the driver.

MySQL has no RETURNING: an operation that needs the row it wrote sends the write and
the read of that row as ONE command of four statements (BEGIN; write; SELECT; COMMIT),
which the server runs in one round trip. The tables below are the documentation:
``(round trips, statements the server runs)`` for every operation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import authstore
from authstore.adapters.mysql import aio, sync
from authstore.adapters.sql.ops import PURGE_BATCH
from authstore.adapters.sql.program import Statement
from tests.counted_operations import (
    Operations,
    cache_single_record_operations,
    session_totp_and_link_operations,
)

WRITE_THEN_READ = (1, 4)
BOUND_WRITE_THEN_READ = (1, 5)
"""The same command led by a SET binding its repeated parameters once (see MySQLDialect)."""
ONE = (1, 1)


CACHE_READ_BACKS = {
    "incr": BOUND_WRITE_THEN_READ,
    "incr creates": BOUND_WRITE_THEN_READ,
    "expire": WRITE_THEN_READ,
    "add_to_blacklist": WRITE_THEN_READ,
    "revoke_user_tokens": WRITE_THEN_READ,
}
"""The cache's single-record operations that are not ONE: the value or state the write
left comes back, write and read in one command."""
SESSION_TOTP_AND_LINK_READ_BACKS = {
    "sessions.create": WRITE_THEN_READ,
    "sessions.touch": WRITE_THEN_READ,
    "links.issue (keep previous)": WRITE_THEN_READ,
    "links.consume": WRITE_THEN_READ,
}
"""Likewise for the sessions, TOTP and links."""

Expected = dict[str, tuple[Callable[[], object], tuple[int, int]]]


def _counted(operations: Operations, read_backs: dict[str, tuple[int, int]]) -> Expected:
    """Each operation with what it sends: ONE unless ``read_backs`` names it."""
    assert read_backs.keys() <= operations.keys()
    return {name: (action, read_backs.get(name, ONE)) for name, action in operations.items()}


class Trace:
    """Every command the runners send (round trips) and the statements in each."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def count(self) -> tuple[int, int]:
        return len(self.sent), sum(len(text.split(";\n")) for text in self.sent)

    def during(self, action: Callable[[], object]) -> tuple[int, int]:
        self.sent.clear()
        action()
        return self.count()


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> Trace:
    tracer = Trace()
    for module in (sync, aio):
        real = module._send

        def send(connection: Any, statement: Statement, multi: bool, real: Any = real) -> Any:
            tracer.sent.append(statement.text)
            return real(connection, statement, multi)

        monkeypatch.setattr(module, "_send", send)
    return tracer


def test_cache_operations(mysql_url: str, trace: Trace) -> None:
    with authstore.open_cache(mysql_url, namespace="counted") as cache:
        cache.exists("warm-up")  # connects, sets the session up, migrates
        cache.set("n", 1)
        group = f"group-{uuid.uuid4().hex}"
        expected = _counted(cache_single_record_operations(cache), CACHE_READ_BACKS) | {
            "fixed_window": (
                lambda: cache.check_rate_limit("rl", 5, 60, algorithm="fixed_window"),
                BOUND_WRITE_THEN_READ,
            ),
            "sliding_window": (
                lambda: cache.check_rate_limit("rl", 5, 60, algorithm="sliding_window"),
                BOUND_WRITE_THEN_READ,
            ),
            "gcra": (
                lambda: cache.check_rate_limit("rl", 5, 60, algorithm="gcra"),
                BOUND_WRITE_THEN_READ,
            ),
            "peek_rate_limit": (lambda: cache.peek_rate_limit("rl", 5, 60), ONE),
            "peek_rate_limit gcra": (lambda: cache.peek_rate_limit("rl", 5, 60, "gcra"), ONE),
            "peek_rate_limits": (lambda: cache.peek_rate_limits(group, "2/hour;5/day"), ONE),
            # a group hit: the record and the clock read, then a compare-and-set
            "group hit creates": (lambda: cache.check_rate_limits(group, "2/hour;5/day"), (2, 2)),
            "group hit": (lambda: cache.check_rate_limits(group, "2/hour;5/day"), (2, 2)),
            "group hit refused": (lambda: cache.check_rate_limits(group, "2/hour;5/day"), ONE),
        }
        for name, (action, counts) in expected.items():
            assert trace.during(action) == counts, name
        # BEGIN goes with its SET TRANSACTION: one round trip, two statements
        assert trace.during(lambda: cache.set_many({f"k{i}": i for i in range(600)})) == (5, 6)


def test_session_totp_and_link_operations(mysql_url: str, trace: Trace) -> None:
    with (
        authstore.open_sessions(mysql_url, namespace="counted") as sessions,
        authstore.open_totp(mysql_url, namespace="counted") as totp,
        authstore.open_magic_links(mysql_url, namespace="counted") as links,
    ):
        operations = session_totp_and_link_operations(sessions, totp, links)
        expected = _counted(operations, SESSION_TOTP_AND_LINK_READ_BACKS) | {
            # several rows in one transaction: BEGIN (sent with its SET TRANSACTION), the
            # statements, COMMIT, one round trip each (the next statement waits for the
            # previous one's answer)
            "sessions.create with max_sessions (lock, insert, read, evict)": (
                lambda: sessions.create("u", ttl=60, max_sessions=2),
                (6, 7),
            ),
            "links.issue revoking previous (lock, delete, insert, read)": (
                lambda: links.issue("u", "u@example.com", ttl=60),
                (6, 7),
            ),
            "totp.replace_backup_codes (lock, delete, state check, insert)": (
                lambda: totp.replace_backup_codes("u", ["a"]),
                (6, 7),
            ),
            "totp.disable (lock, delete, delete)": (lambda: totp.disable("u"), (5, 6)),
        }
        for name, (action, counts) in expected.items():
            assert trace.during(action) == counts, name


def test_purge_deletes_in_bounded_batches(mysql_url: str, trace: Trace) -> None:
    with authstore.open_sessions(mysql_url, namespace="purged") as sessions:
        for _ in range(3):
            sessions.create("p", ttl=0.05)
        sessions.count("warm-up")
        asyncio.run(asyncio.sleep(0.1))
        trace.sent.clear()
        assert sessions.purge_expired() >= 3
        assert all(text.endswith(f"LIMIT {PURGE_BATCH}") for text in trace.sent), trace.sent


def test_async_operations(mysql_url: str, trace: Trace) -> None:
    async def scenario() -> dict[str, tuple[int, int]]:
        async with (
            authstore.open_async_cache(mysql_url, namespace="counted-async") as cache,
            authstore.open_async_sessions(mysql_url, namespace="counted-async") as sessions,
        ):
            await cache.exists("warm-up")
            await sessions.count("warm-up")
            token = (await sessions.create("u", ttl=60)).token
            actions: dict[str, Callable[[], Awaitable[object]]] = {
                "get": lambda: cache.get("k"),
                "set": lambda: cache.set("k", 1),
                "incr": lambda: cache.incr("n"),
                "fixed_window": lambda: cache.check_rate_limit("r", 3, 10),
                "is_blacklisted": lambda: cache.is_blacklisted("j"),
                "sessions.get": lambda: sessions.get(token),
                "sessions.touch": lambda: sessions.touch(token),
            }
            seen = {}
            for name, action in actions.items():
                trace.sent.clear()
                await action()
                seen[name] = trace.count()
            return seen

    assert asyncio.run(scenario()) == {
        "get": ONE,
        "set": ONE,
        "incr": BOUND_WRITE_THEN_READ,
        "fixed_window": BOUND_WRITE_THEN_READ,
        "is_blacklisted": ONE,
        "sessions.get": ONE,
        "sessions.touch": WRITE_THEN_READ,
    }


def test_a_new_connection_costs_one_setup_round_trip(mysql_url: str, trace: Trace) -> None:
    with authstore.open_cache(mysql_url, namespace="setup", pool_size=1) as cache:
        cache.exists("warm-up")
        # The first operation also migrated; later ones on the same connection do not
        # repeat the session setup.
        assert trace.during(lambda: cache.get("k")) == ONE
    with authstore.open_cache(mysql_url, namespace="setup", pool_size=1) as fresh:
        rounds, _ = trace.during(lambda: fresh.get("k"))
        # session setup, the migration's version check (2), the InnoDB check, the get
        assert rounds == 5, trace.sent
