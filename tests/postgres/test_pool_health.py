"""The psycopg pool's health policy, without a server: a fake clock and fake connects.

How long an operation waits for a pooled connection depends on the pool's latest
connection attempt; these tests drive ``PoolHealth`` through each case. The outage
tests check the same policy against real servers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from authstore.adapters.postgres.health import (
    FAIL_FAST_WAIT,
    FIRST_CONNECT_SLICE,
    PoolHealth,
    tracked_connection,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def walk(health: PoolHealth, clock: FakeClock, timeout: float) -> list[tuple[float, Any]]:
    """Every look of one operation that never finds a connection (each waits in full)."""
    seen = []
    for wait, failure in health.looks(timeout):
        seen.append((round(wait, 6), failure))
        if failure is not None:
            break  # the runner raises the failure
        clock.now += wait
    return seen


def test_before_any_connection_the_wait_is_sliced_until_the_timeout() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    looks = walk(health, clock, 0.2)
    assert looks[:4] == [(FIRST_CONNECT_SLICE, None)] * 4
    # float rounding may leave a sliver of the timeout: one shortest look at most
    assert [wait for wait, _ in looks[4:]] in ([], [0.001])


def test_a_failed_attempt_ends_the_wait_with_its_error_at_once() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    refused = ConnectionRefusedError("refused")
    health.failed(refused)
    assert walk(health, clock, 5.0) == [(FAIL_FAST_WAIT, refused)]


def test_a_failure_seen_between_slices_ends_the_wait() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    looks = health.looks(5.0)
    assert next(looks) == (FIRST_CONNECT_SLICE, None)
    clock.now += FIRST_CONNECT_SLICE
    refused = ConnectionRefusedError("refused")
    health.failed(refused)  # the pool's thread, meanwhile
    assert next(looks) == (FAIL_FAST_WAIT, refused)


def test_once_connected_an_operation_waits_the_rest_of_its_timeout() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    health.failed(ConnectionRefusedError("refused"))
    health.succeeded()  # a later attempt went through: the old failure is forgotten
    assert walk(health, clock, 3.0) == [(3.0, None)]


def test_the_deadline_counts_from_the_call_not_the_first_look() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    health.succeeded()
    looks = health.looks(3.0)
    clock.now += 2.0  # a pool check held the operation up
    assert next(looks) == (pytest.approx(1.0), None)
    clock.now += 1.0
    assert next(looks, "ended") == "ended"


def test_a_wait_past_its_deadline_is_still_one_brief_look() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=True, clock=clock)
    health.succeeded()
    looks = health.looks(1.0)
    clock.now += 5.0
    wait, failure = next(looks)
    assert 0 < wait <= 0.001 and failure is None
    assert next(looks, "ended") == "ended"


def test_a_callers_pool_is_not_tracked() -> None:
    clock = FakeClock()
    health = PoolHealth(tracked=False, clock=clock)
    health.failed(ConnectionRefusedError("refused"))  # never set for such a pool anyway
    assert walk(health, clock, 2.0) == [(2.0, None)]


def test_tracked_connects_report_their_outcome() -> None:
    attempts: list[BaseException | None] = []

    class FakeConnection:
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            outcome = attempts.pop(0)
            if outcome is not None:
                raise outcome
            return cls()

    health = PoolHealth(tracked=True)
    connection_class = tracked_connection(FakeConnection, health)
    assert connection_class.__qualname__ == "TrackedConnection"
    refused = ConnectionRefusedError("refused")
    attempts[:] = [refused, None, refused]
    with pytest.raises(ConnectionRefusedError):
        connection_class.connect("dsn")
    assert health.error is refused and not health.connected
    assert isinstance(connection_class.connect("dsn"), FakeConnection)
    assert health.error is None and health.connected
    with pytest.raises(ConnectionRefusedError):
        connection_class.connect("dsn")
    assert health.error is refused and health.connected


def test_one_pool_check_at_a_time_and_operations_wait_for_it() -> None:
    health = PoolHealth(tracked=True)
    assert health.wait_checked(0)  # no check running: no wait
    assert health.begin_check()
    assert not health.begin_check()  # a second lost connection starts no second check
    started = time.monotonic()
    assert not health.wait_checked(0.05)  # outlasted: the runner raises
    assert time.monotonic() - started >= 0.04
    ender = threading.Timer(0.05, health.end_check)
    ender.start()
    assert health.wait_checked(5.0)
    ender.join()
    assert health.begin_check()  # the next loss checks again
    health.end_check()
