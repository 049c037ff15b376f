"""Outages for real, on a private wire-compatible server this module starts (never the
shared one): stopped, and frozen (SIGSTOP). Security reads fail closed with a
BackendUnavailableError within the configured timeout, sync and async, and the store
recovers by itself once a server answers again."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo
import pytest

import authstore
from authstore.contracts.errors import BackendUnavailableError
from tests.outages import free_port, stopped, timed, timed_async

TIMEOUT = 0.5
SLACK = 1.5  # scheduling noise on a loaded 2-core machine


class PrivateServer:
    """secantusd-py in a subprocess on a free port, with in-memory storage."""

    def __init__(self) -> None:
        executable = shutil.which("secantusd-py") or str(
            Path(sys.executable).with_name("secantusd-py")
        )
        if not Path(executable).exists():
            pytest.skip("secantusd-py is not installed (pip install secantusdb)")
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/authstore_test"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                ":memory:",
                "--log-level",
                "ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                self.url, serverSelectionTimeoutMS=500
            )
            try:
                client.admin.command("ping")
                # the answer came from our process, not from another server that
                # took the port while ours failed to bind it
                assert self.process.poll() is None, "the private server exited"
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP, and wait until every thread of the server has stopped."""
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not self._stopped() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self._stopped(), "the server did not stop"

    def _stopped(self) -> bool:
        assert self.process is not None
        return stopped(self.process.pid)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    private = PrivateServer()
    private.start()
    yield private
    private.stop()


def _eventually(action: Callable[[], object]) -> object:
    """The store recovers by itself: the first calls after a restart may still time out
    while the new server warms up on a loaded machine."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return action()
        except BackendUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _unavailable(error: BaseException | None, took: float) -> None:
    assert isinstance(error, BackendUnavailableError), repr(error)
    assert error.__cause__ is not None, "the driver error is kept as the cause"
    assert took < TIMEOUT + SLACK, f"took {took:.2f} s"


def test_stopped_server_fails_closed_then_recovers(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.add_to_blacklist("jti", 60)
    created = sessions.create("alice", ttl=60)
    assert cache.is_blacklisted("jti")
    server.stop()
    for action in (
        lambda: cache.is_blacklisted("jti"),
        lambda: cache.user_tokens_revoked_at("alice"),
        lambda: cache.check_rate_limit("k", 1, 60),
        lambda: sessions.get(created.token),
    ):
        _unavailable(*timed(action))
    server.start()  # same port, empty storage
    assert _eventually(lambda: cache.is_blacklisted("jti")) is False
    assert _eventually(lambda: sessions.get(created.token)) is None
    cache.close()
    sessions.close()


def test_frozen_server_times_out(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"
    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    cache.add_to_blacklist("jti", 60)
    sessions.count("warm")
    server.freeze()
    try:
        _unavailable(*timed(lambda: cache.is_blacklisted("jti")))
        _unavailable(*timed(lambda: cache.check_rate_limit("k", 1, 60, algorithm="gcra")))
        _unavailable(*timed(lambda: sessions.create("alice", ttl=60, max_sessions=2)))
    finally:
        server.thaw()
    assert _eventually(lambda: cache.is_blacklisted("jti"))
    cache.close()
    sessions.close()


def test_async_stopped_and_frozen(server: PrivateServer) -> None:
    url = f"{server.url}?timeout={TIMEOUT}"

    async def scenario() -> None:
        cache = authstore.open_async_cache(url)
        await cache.add_to_blacklist("jti", 60)
        server.freeze()
        try:
            _unavailable(*await timed_async(lambda: cache.is_blacklisted("jti")))
        finally:
            server.thaw()
        for _ in range(40):
            try:
                assert await cache.is_blacklisted("jti")
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.25)
        else:
            raise AssertionError("the store did not recover after the server thawed")
        server.stop()
        _unavailable(*await timed_async(lambda: cache.is_blacklisted("jti")))
        _unavailable(*await timed_async(lambda: cache.user_tokens_revoked_at("alice")))
        await cache.aclose()

    asyncio.run(scenario())
