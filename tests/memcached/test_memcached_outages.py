"""Outages for real, on a memcached of each test's own (killed or frozen with SIGSTOP;
the shared server is never touched).

Security reads fail closed: a down or silent memcached gives BackendUnavailableError
within the timeout, never "not revoked" nor "allowed"; and a call cut short by its
timeout never leaves a reply behind that a later call would read as its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import authstore
from authstore.contracts.errors import BackendUnavailableError
from tests.memcached.conftest import PrivateMemcached
from tests.relay import Relay

TIMEOUT = 0.5
SLACK = 1.5  # scheduling noise on a loaded 2-core machine

SECURITY_READS: dict[str, Callable[[Any], Any]] = {
    "is_blacklisted": lambda c: c.is_blacklisted("revoked"),
    "user_tokens_revoked_at": lambda c: c.user_tokens_revoked_at("alice"),
    "fixed_window": lambda c: c.check_rate_limit("login", 5, 60),
    "sliding_window": lambda c: c.check_rate_limit("login", 5, 60, algorithm="sliding_window"),
    "gcra": lambda c: c.check_rate_limit("login", 5, 60, algorithm="gcra"),
    "get": lambda c: c.get("k"),
}


def _url(server: PrivateMemcached) -> str:
    return f"{server.url}?timeout={TIMEOUT}&connect_timeout={TIMEOUT}"


def _seed(cache: Any) -> None:
    cache.add_to_blacklist("revoked", 600)
    cache.revoke_user_tokens("alice")
    cache.set("k", "v")


async def _seed_async(cache: Any) -> None:
    await cache.add_to_blacklist("revoked", 600)
    await cache.revoke_user_tokens("alice")
    await cache.set("k", "v")


def _all_fail_in_time(outcomes: dict[str, tuple[BaseException | None, float]]) -> None:
    problems = [
        f"{name}: {error!r} after {took:.2f} s"
        for name, (error, took) in outcomes.items()
        if not isinstance(error, BackendUnavailableError) or took > TIMEOUT + SLACK
    ]
    assert not problems, problems


async def _outcome(action: Callable[[], object]) -> tuple[BaseException | None, float]:
    """What ``action`` raised (awaited if it gives an awaitable) and how long it took."""
    started = time.monotonic()
    try:
        answer = action()
        if isinstance(answer, Awaitable):
            await answer
    except BaseException as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def _timed(action: Callable[[], object]) -> tuple[BaseException | None, float]:
    return asyncio.run(_outcome(action))


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_security_reads_fail_closed_sync(private_memcached: PrivateMemcached, outage: str) -> None:
    with authstore.open_cache(_url(private_memcached)) as cache:
        _seed(cache)
        private_memcached.stop() if outage == "killed" else private_memcached.freeze()
        outcomes = {
            name: _timed(lambda read=read: read(cache)) for name, read in SECURITY_READS.items()
        }
        _all_fail_in_time(outcomes)


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_security_reads_fail_closed_async(private_memcached: PrivateMemcached, outage: str) -> None:
    async def scenario() -> dict[str, tuple[BaseException | None, float]]:
        async with authstore.open_async_cache(_url(private_memcached)) as cache:
            await _seed_async(cache)
            private_memcached.stop() if outage == "killed" else private_memcached.freeze()
            return {
                name: await _outcome(lambda read=read: read(cache))
                for name, read in SECURITY_READS.items()
            }

    _all_fail_in_time(asyncio.run(scenario()))


def test_unreachable_fails_at_once() -> None:
    url = "memcached://127.0.0.1:1?timeout=3&connect_timeout=3"
    with authstore.open_cache(url) as cache:
        error, took = _timed(lambda: cache.is_blacklisted("jti"))
    assert isinstance(error, BackendUnavailableError) and took < 1.0, (error, took)
    assert isinstance(error.__cause__, OSError), "the driver error is kept as the cause"


def test_no_stale_reply_after_a_timeout(private_memcached: PrivateMemcached) -> None:
    """A read times out on a frozen server, which answers once thawed: that late answer
    must never be read by a later call (it would say "not revoked" for another key)."""

    def sync_scenario(cache: Any) -> list[Any]:
        _seed(cache)
        private_memcached.freeze()
        error, _ = _timed(lambda: cache.is_blacklisted("revoked"))
        assert isinstance(error, BackendUnavailableError)
        private_memcached.thaw()
        time.sleep(0.2)
        return [cache.is_blacklisted("other"), cache.is_blacklisted("revoked"), cache.get("k")]

    with authstore.open_cache(_url(private_memcached), namespace="sync") as cache:
        assert sync_scenario(cache) == [False, True, "v"]

    async def async_scenario() -> list[Any]:
        async with authstore.open_async_cache(_url(private_memcached), namespace="a") as cache:
            await _seed_async(cache)
            private_memcached.freeze()
            error, _ = await _outcome(lambda: cache.is_blacklisted("revoked"))
            assert isinstance(error, BackendUnavailableError)
            private_memcached.thaw()
            await asyncio.sleep(0.2)
            return [
                await cache.is_blacklisted("other"),
                await cache.is_blacklisted("revoked"),
                await cache.get("k"),
                await cache.is_blacklisted("revoked"),
            ]

    assert asyncio.run(async_scenario()) == [False, True, "v", True]


def test_recovers_after_a_restart(private_memcached: PrivateMemcached) -> None:
    """A restarted memcached is empty: the store reconnects by itself (and what it held is
    gone, which is why docs/backends.md asks for memcached sized never to evict)."""
    url = _url(private_memcached)
    with authstore.open_cache(url) as cache:
        cache.set("k", 1)
        port = private_memcached.port
        private_memcached.stop()
        error, _ = _timed(lambda: cache.get("k"))
        assert isinstance(error, BackendUnavailableError)
        restarted = PrivateMemcached.on_port(port)
        try:
            assert cache.get("k") is None
            cache.set("k", 2)
            assert cache.get("k") == 2
        finally:
            restarted.stop()


EOF_SCENARIO = """
import asyncio, sys
import aiomcache
import authstore
from authstore.adapters.memcached.aio import _safe_client_class

port, which = int(sys.argv[1]), sys.argv[2]

async def main():
    if which == "own":
        client = _safe_client_class(aiomcache)("127.0.0.1", port)
    else:  # a caller's client, given to a store
        client = aiomcache.Client("127.0.0.1", port)
        authstore.open_async_cache("memcached://", client=client)
    conn = await client._pool.acquire()
    try:
        # memcached closes the connection on quit without a reply: the reader sees EOF
        await client._execute_simple_command(conn, b"quit\\r\\n")
    except Exception as error:
        print("RAISED", type(error).__name__)

asyncio.run(main())
"""


@pytest.mark.parametrize("client", ["own", "given"])
def test_a_connection_closed_mid_reply_raises(
    private_memcached: PrivateMemcached, client: str
) -> None:
    """aiomcache 0.8 reads the empty line at EOF forever without yielding to the event
    loop (no timeout can end that): authstore's clients, and a client given to a store,
    raise instead. memcached answers ``quit`` by closing the connection: a real EOF
    mid-reply. Run in a child process, so a frozen loop fails this test by timeout
    instead of hanging the run."""
    import subprocess
    import sys

    args = [str(private_memcached.port), client]
    try:
        done = subprocess.run(
            [sys.executable, "-c", EOF_SCENARIO, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the event loop froze on a connection closed mid-reply")
    assert "RAISED ConnectionResetError" in done.stdout, done.stdout + done.stderr


def _restart(server: PrivateMemcached) -> PrivateMemcached:
    """Killed and started again on its port: every pooled connection is now stale."""
    port = server.port
    server.stop()
    return PrivateMemcached.on_port(port)


def test_no_call_fails_on_a_stale_connection_after_a_restart_sync(
    private_memcached: PrivateMemcached,
) -> None:
    """Each thread holds its own connection: after a restart, none of them fails its
    first call (a read is sent again on a new connection; a write's stale socket is
    seen readable, at EOF, before anything is sent on it), and each rate-limit hit
    counts once."""
    threads = 4
    barrier = threading.Barrier(threads)

    def each_thread(action: Callable[[], Any]) -> list[Any]:
        def one(_: int) -> Any:
            barrier.wait()  # one call on each of the pool's threads
            try:
                return action()
            except BaseException as error:
                return error

        return list(pool.map(one, range(threads)))

    with (
        authstore.open_cache(_url(private_memcached)) as cache,
        ThreadPoolExecutor(threads) as pool,
    ):
        each_thread(lambda: cache.set("k", 1))
        restarted = _restart(private_memcached)
        try:
            assert each_thread(lambda: cache.get("k")) == [None] * threads
            hits = each_thread(lambda: cache.check_rate_limit("login", 100, 60).remaining)
            assert sorted(hits) == [96, 97, 98, 99]
            restarted = _restart(restarted)
            hits = each_thread(lambda: cache.check_rate_limit("login", 100, 60).remaining)
            assert sorted(hits) == [96, 97, 98, 99]  # counted once each, on the new server
        finally:
            restarted.stop()


@pytest.mark.parametrize("client", ["own", "given"])
def test_no_call_fails_on_a_stale_connection_after_a_restart_async(
    private_memcached: PrivateMemcached, client: str
) -> None:
    """The restart happens while the event loop is busy (blocked here): the loop never
    saw the connections close, and aiomcache's own check (the reader at EOF) passes
    them; the socket itself is readable, so they are replaced before use. Also on a
    caller's aiomcache client."""
    import aiomcache

    async def scenario() -> None:
        given = None
        if client == "given":
            given = aiomcache.Client("127.0.0.1", private_memcached.port, pool_size=4)
            store = authstore.open_async_cache("memcached://", client=given)
        else:
            store = authstore.open_async_cache(f"{_url(private_memcached)}&pool_size=4")
        restarted = private_memcached
        try:
            async with store as cache:
                await asyncio.gather(*(cache.set("k", 1) for _ in range(8)))
                restarted = _restart(private_memcached)  # blocks the loop
                assert await asyncio.gather(*(cache.get("k") for _ in range(8))) == [None] * 8
                restarted = _restart(restarted)
                hits = await asyncio.gather(
                    *(cache.check_rate_limit("login", 100, 60) for _ in range(8))
                )
                assert sorted(hit.remaining for hit in hits) == list(range(92, 100))
        finally:
            restarted.stop()
            if given is not None:
                await given.close()

    asyncio.run(scenario())


class _CutRelay(Relay):
    """A relay to ``target`` that, while ``cut`` is set, hands a request starting with it
    to the server, waits for the server's reply (so the server has applied it) and drops
    the connection instead of passing the reply on: the client sees EOF mid-call."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.cut: bytes | None = None
        self._cutting: set[int] = set()
        super().__init__(target)

    def from_client(self, number: int, data: bytes, server: Any) -> None:
        if self.cut is not None and data.startswith(self.cut):
            self.cut = None
            self._cutting.add(number)
        server.sendall(data)

    def from_server(self, number: int, data: bytes, client: Any) -> None:
        if number in self._cutting:
            client.shutdown(socket.SHUT_RDWR)
            return
        client.sendall(data)


class _LateRelay(Relay):
    """A relay that holds the server's replies for ``late`` seconds while it is set."""

    late = 0.0

    def from_server(self, number: int, data: bytes, client: Any) -> None:
        if self.late:
            time.sleep(self.late)
        client.sendall(data)


def _relay_url(memcached_url: str, relay: Relay) -> str:
    return f"memcached://127.0.0.1:{relay.port}?timeout=2&connect_timeout=2"


def _target(memcached_url: str) -> tuple[str, int]:
    host, _, port = memcached_url.partition("://")[2].split("?")[0].rpartition(":")
    return host, int(port)


def test_a_write_cut_off_mid_call_is_never_sent_again(memcached_url: str) -> None:
    """A read on a connection the server closed is sent again on a new one (it changes
    nothing); a write never is: a rate-limit hit the server applied before the
    connection dropped fails the call (fail closed), and is counted once, not twice."""
    relay = _CutRelay(_target(memcached_url))
    namespace = f"cut{uuid.uuid4().hex[:10]}"
    try:
        with authstore.open_cache(_relay_url(memcached_url, relay), namespace=namespace) as cache:
            assert cache.check_rate_limit("login", 10, 60).remaining == 9
            relay.cut = b"ms "  # the next hit's write (a Swap: a meta set, then a meta get)
            error, _ = _timed(lambda: cache.check_rate_limit("login", 10, 60))
            assert isinstance(error, BackendUnavailableError), error
            assert relay.cut is None, "the write was not the one cut off"
            assert cache.peek_rate_limit("login", 10, 60).remaining == 8  # applied once
            assert cache.check_rate_limit("login", 10, 60).remaining == 7
    finally:
        relay.close()


class _Interrupted(BaseException):
    """What a signal handler raises in the middle of a call (as KeyboardInterrupt)."""


def test_a_call_interrupted_mid_reply_leaves_no_reply_behind(memcached_url: str) -> None:
    """A read cut short by a BaseException (KeyboardInterrupt, from a signal handler)
    while its reply is on its way: the reply, arriving later, is never read by the next
    call as its own (reads are not polled first; the connection is closed instead)."""
    import signal

    relay = _LateRelay(_target(memcached_url))
    namespace = f"late{uuid.uuid4().hex[:10]}"

    def interrupt(*_: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with authstore.open_cache(_relay_url(memcached_url, relay), namespace=namespace) as cache:
            cache.set("a", "A")
            cache.set("b", "B")
            cache.add_to_blacklist("revoked", 600)
            assert cache.get("a") == "A"  # a connection used before: the next read is not polled
            for read in (lambda: cache.get("a"), lambda: cache.is_blacklisted("revoked")):
                relay.late = 0.3
                signal.setitimer(signal.ITIMER_REAL, 0.1)
                with pytest.raises(_Interrupted):
                    read()
                time.sleep(0.4)  # the late reply has arrived
                relay.late = 0.0
                assert cache.get("b") == "B"
                assert cache.is_blacklisted("other") is False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        relay.close()
