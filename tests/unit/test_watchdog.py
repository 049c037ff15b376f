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
