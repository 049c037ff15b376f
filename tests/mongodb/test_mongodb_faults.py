"""Abandoned transactions, one user's creates in a crowd, deadlines with a frozen or
killed server, and stale pooled connections after a restart, on private secantusd
servers (never the shared one, which other test runs use at the same time)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import authstore
from authstore.contracts.errors import BackendUnavailableError
from tests.mongodb.private import PrivateServer
from tests.outages import timed, timed_async

CROWD = 100
SLACK = 0.1
"""What a call may take past its timeout (scheduling on a loaded machine)."""


@pytest.fixture(scope="module")
def calm() -> Iterator[PrivateServer]:
    """A private server for the tests that only load it (no freeze, no kill)."""
    private = PrivateServer()
    private.start()
    yield private
    private.close()


def _block_next(server: PrivateServer, command: str, seconds: float) -> None:
    """The store's next ``command`` (appName authstore) waits ``seconds`` on the server."""
    admin = server.admin()
    try:
        admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 1},
                "data": {
                    "failCommands": [command],
                    "blockConnection": True,
                    "blockTimeMS": int(seconds * 1000),
                    "appName": "authstore",
                },
            }
        )
    finally:
        admin.close()


def test_timed_out_transaction_is_aborted(calm: PrivateServer) -> None:
    """A create(max_sessions) that times out inside its transaction (after writing the
    user's lock document) must not leave it open: the same user creates right after.
    Before the fix the sync store left it to the server's 60 s reaper."""
    url = f"{calm.url}?timeout=0.5&collection_prefix=abort_"
    sessions = authstore.open_sessions(url)
    try:
        sessions.create("alice", ttl=60, max_sessions=2)
        _block_next(calm, "aggregate", 1.5)
        error, took = timed(lambda: sessions.create("alice", ttl=60, max_sessions=2))
        assert isinstance(error, BackendUnavailableError), repr(error)
        assert took < 0.5 + 3 * SLACK, f"took {took:.2f} s"
        # the kill runs in the background; the next create waits for its turn
        created = sessions.create("alice", ttl=60, max_sessions=2)
        assert sessions.get(created.token) is not None
        assert sessions.count("alice") == 2
    finally:
        sessions.close()


def test_async_cancelled_transaction_is_aborted(calm: PrivateServer) -> None:
    url = f"{calm.url}?timeout=0.5&collection_prefix=aabort_"

    async def scenario() -> None:
        sessions = authstore.open_async_sessions(url)
        try:
            await sessions.create("bob", ttl=60, max_sessions=2)
            _block_next(calm, "aggregate", 1.5)
            error, took = await timed_async(lambda: sessions.create("bob", ttl=60, max_sessions=2))
            assert isinstance(error, BackendUnavailableError), repr(error)
            assert took < 0.5 + 3 * SLACK, f"took {took:.2f} s"
            # cancelled from outside: the same
            _block_next(calm, "aggregate", 1.5)
            task = asyncio.ensure_future(sessions.create("bob", ttl=60, max_sessions=2))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            created = await sessions.create("bob", ttl=60, max_sessions=2)
            assert await sessions.get(created.token) is not None
            assert await sessions.count("bob") == 2
        finally:
            await sessions.aclose()

    asyncio.run(scenario())


def test_one_users_crowd_waits_its_turn(calm: PrivateServer) -> None:
    """CROWD concurrent create(max_sessions=3) for one user, threads then tasks: every
    call succeeds within its timeout (they wait their turn instead of conflicting),
    and the cap holds. Before the fix most of them timed out."""
    url = f"{calm.url}?timeout=5&collection_prefix=crowd_"
    sessions = authstore.open_sessions(url)
    barrier = threading.Barrier(CROWD)

    def create(_: int) -> BaseException | None:
        barrier.wait()
        return timed(lambda: sessions.create("carol", ttl=60, max_sessions=3))[0]

    try:
        sessions.count("carol")
        with ThreadPoolExecutor(CROWD) as pool:
            errors = [error for error in pool.map(create, range(CROWD)) if error]
        assert errors == [], f"{len(errors)} failed, first: {errors[0]!r}"
        assert sessions.count("carol") == 3
    finally:
        sessions.close()

    async def tasks() -> None:
        stores = authstore.open_async_sessions(url)
        try:
            await stores.count("dave")
            results = await asyncio.gather(
                *(stores.create("dave", ttl=60, max_sessions=3) for _ in range(CROWD)),
                return_exceptions=True,
            )
            failed = [result for result in results if isinstance(result, BaseException)]
            assert failed == [], f"{len(failed)} failed, first: {failed[0]!r}"
            assert await stores.count("dave") == 3
        finally:
            await stores.aclose()

    asyncio.run(tasks())


def test_sync_calls_end_at_their_timeout(server: PrivateServer) -> None:
    """pymongo's server selection waits in 0.5 s steps: without the watchdog waking it,
    a call at timeout=0.6 against a killed server took 1.0 s."""
    timeout = 0.6
    cache = authstore.open_cache(f"{server.url}?timeout={timeout}")
    try:
        cache.is_blacklisted("jti")
        server.freeze()
        try:
            frozen = [timed(lambda: cache.is_blacklisted("jti")) for _ in range(3)]
        finally:
            server.thaw()
        server.kill()
        killed = [timed(lambda: cache.is_blacklisted("jti")) for _ in range(3)]
        for error, took in frozen + killed:
            assert isinstance(error, BackendUnavailableError), repr(error)
            assert took < timeout + SLACK, f"took {took:.3f} s: {[t for _, t in killed]}"
    finally:
        cache.close()


def test_restart_between_calls(server: PrivateServer) -> None:
    """The server restarts between two calls (its pooled connections are dead): the
    next calls, reads and writes, all succeed, sync and async."""
    url = f"{server.url}?timeout=5&pool_size=4"
    cache = authstore.open_cache(url)

    def restart() -> None:
        server.kill()
        server.start()

    def reads_and_writes(_: int) -> None:
        assert cache.is_blacklisted("jti") is False
        cache.add_to_blacklist("jti2", 60)

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(reads_and_writes, range(8)))
            restart()
            list(pool.map(reads_and_writes, range(8)))
    finally:
        cache.close()

    async def scenario() -> None:
        store = authstore.open_async_cache(url)
        try:
            await asyncio.gather(*(store.add_to_blacklist("jti", 60) for _ in range(8)))
            restart()
            await asyncio.gather(*(store.is_blacklisted("jti") for _ in range(8)))
            restart()
            await asyncio.gather(*(store.add_to_blacklist("jti", 60) for _ in range(8)))
            restart()
            limits = await asyncio.gather(*(store.check_rate_limit("k", 100, 60) for _ in range(8)))
            assert sorted(limit.remaining for limit in limits) == list(range(92, 100))
        finally:
            await store.aclose()

    asyncio.run(scenario())
