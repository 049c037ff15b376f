"""The watchdog that ends a blocking read past its deadline (sync PostgreSQL)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from authstore.adapters.common.watchdog import Watchdog

SocketPair = Callable[[], tuple[socket.socket, socket.socket]]


@pytest.fixture
def socket_pair() -> Iterator[SocketPair]:
    """Makes connected socket pairs, all closed after the test."""
    opened: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        mine, peer = socket.socketpair()
        opened.extend((mine, peer))
        return mine, peer

    yield make
    for sock in opened:
        sock.close()


@pytest.fixture
def watchdog(socket_pair: SocketPair) -> Iterator[Watchdog]:
    """Closed before the sockets are (it may still hold their descriptors)."""
    dog = Watchdog("test")
    yield dog
    dog.close()


def test_a_read_with_no_answer_ends_at_the_deadline(
    watchdog: Watchdog, socket_pair: SocketPair
) -> None:
    mine, _silent_peer = socket_pair()
    started = time.monotonic()
    watchdog.arm("op", 0.2, mine.fileno())
    assert mine.recv(1) == b""  # shut down: the blocked read returns
    took = time.monotonic() - started
    assert watchdog.disarm("op") is False, "it fired"
    assert 0.15 <= took < 2.0, took
    assert watchdog.fired == 1


def test_a_disarmed_deadline_never_fires(watchdog: Watchdog, socket_pair: SocketPair) -> None:
    mine, peer = socket_pair()
    watchdog.arm("op", 0.1, mine.fileno())
    assert watchdog.disarm("op") is True
    time.sleep(0.3)
    peer.sendall(b"x")
    assert mine.recv(1) == b"x", "the socket still works"
    assert watchdog.fired == 0


def test_an_earlier_deadline_armed_later_still_fires_on_time(
    watchdog: Watchdog, socket_pair: SocketPair
) -> None:
    """Stores of different timeouts share one watchdog thread."""
    slow, _slow_peer = socket_pair()
    fast, _fast_peer = socket_pair()
    watchdog.arm("slow", 30.0, slow.fileno())
    time.sleep(0.05)  # the thread now sleeps until the slow deadline
    started = time.monotonic()
    watchdog.arm("fast", 0.2, fast.fileno())
    assert fast.recv(1) == b""
    assert time.monotonic() - started < 2.0
    assert watchdog.disarm("slow") is True, "the slow deadline has not passed"
