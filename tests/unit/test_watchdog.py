"""The watchdog that ends a blocking read past its deadline (sync PostgreSQL)."""

from __future__ import annotations

import socket
import time

from authstore.adapters.common.watchdog import Watchdog


def test_a_read_with_no_answer_ends_at_the_deadline() -> None:
    watchdog = Watchdog("test")
    mine, silent_peer = socket.socketpair()
    try:
        started = time.monotonic()
        watchdog.arm("op", 0.2, mine.fileno())
        assert mine.recv(1) == b""  # shut down: the blocked read returns
        took = time.monotonic() - started
        assert watchdog.disarm("op") is False, "it fired"
        assert 0.15 <= took < 2.0, took
        assert watchdog.fired == 1
    finally:
        watchdog.close()
        mine.close()
        silent_peer.close()


def test_a_disarmed_deadline_never_fires() -> None:
    watchdog = Watchdog("test")
    mine, peer = socket.socketpair()
    try:
        watchdog.arm("op", 0.1, mine.fileno())
        assert watchdog.disarm("op") is True
        time.sleep(0.3)
        peer.sendall(b"x")
        assert mine.recv(1) == b"x", "the socket still works"
        assert watchdog.fired == 0
    finally:
        watchdog.close()
        mine.close()
        peer.close()


def test_an_earlier_deadline_armed_later_still_fires_on_time() -> None:
    """Stores of different timeouts share one watchdog thread."""
    watchdog = Watchdog("test")
    slow, slow_peer = socket.socketpair()
    fast, fast_peer = socket.socketpair()
    try:
        watchdog.arm("slow", 30.0, slow.fileno())
        time.sleep(0.05)  # the thread now sleeps until the slow deadline
        started = time.monotonic()
        watchdog.arm("fast", 0.2, fast.fileno())
        assert fast.recv(1) == b""
        assert time.monotonic() - started < 2.0
        assert watchdog.disarm("slow") is True, "the slow deadline has not passed"
    finally:
        watchdog.close()
        for sock in (slow, slow_peer, fast, fast_peer):
            sock.close()
