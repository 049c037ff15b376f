"""Redis outages on private servers (never the shared ones): a frozen server, a killed
and restarted one, a Sentinel failover and a Cluster resharding.

During each, security reads raise BackendUnavailableError (never "not revoked" or
"valid"), every operation returns or raises within its timeout, and afterwards the
same store works again without being reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from authstore import (
    BackendUnavailableError,
    open_async_cache,
    open_cache,
    open_sessions,
)
from tests.contention import at_once_in_threads
from tests.outages import timed
from tests.servers.redis_topology import (
    PrivateCluster,
    PrivateSentinel,
    private_cluster,
    private_redis,
    private_sentinel,
)

TIMEOUT = 0.5
MARGIN = 0.6
"""Seconds past the timeout an operation may take (interpreter, loaded machine)."""


def _namespace() -> str:
    return "f" + uuid.uuid4().hex


SECURITY_READS: dict[str, Callable[[Any], Any]] = {
    "is_blacklisted": lambda cache: cache.is_blacklisted("jti"),
    "user_tokens_revoked_at": lambda cache: cache.user_tokens_revoked_at("alice"),
    "check_rate_limit": lambda cache: cache.check_rate_limit("login", 10, 60),
}


def _assert_fails_closed_in_time(cache: Any) -> None:
    for name, read in SECURITY_READS.items():
        error, elapsed = timed(lambda read=read: read(cache))
        assert isinstance(error, BackendUnavailableError), f"{name}: {error!r}"
        assert elapsed < TIMEOUT + MARGIN, f"{name} took {elapsed:.2f} s"


def test_frozen_server_sync_and_async() -> None:
    with private_redis() as node:
        url = f"{node.url}?timeout={TIMEOUT}"
        namespace = _namespace()
        cache = open_cache(url, namespace=namespace)
        cache.add_to_blacklist("jti", 60)
        acache = open_async_cache(url, namespace=namespace)

        async def async_reads() -> list[tuple[float, BaseException | None]]:
            assert await acache.is_blacklisted("jti")
            node.pause()
            found = []
            for read in SECURITY_READS.values():
                started = time.monotonic()
                try:
                    await read(acache)
                    found.append((time.monotonic() - started, None))
                except BaseException as error:
                    found.append((time.monotonic() - started, error))
            node.resume()
            return found

        with node.frozen():
            _assert_fails_closed_in_time(cache)
        assert cache.is_blacklisted("jti")  # the same store, after the thaw
        # a connection left with an unread reply must never serve the next command: the
        # frozen reads above answered 1 (revoked), which a stale read would return here
        assert not cache.is_blacklisted("never-revoked")

        loop = asyncio.new_event_loop()
        try:
            for elapsed, error in loop.run_until_complete(async_reads()):
                assert isinstance(error, BackendUnavailableError), repr(error)
                assert elapsed < TIMEOUT + MARGIN
            assert not loop.run_until_complete(acache.is_blacklisted("never-revoked"))
            assert loop.run_until_complete(acache.is_blacklisted("jti"))
            assert not loop.run_until_complete(acache.is_blacklisted("never-revoked"))
            loop.run_until_complete(acache.aclose())
        finally:
            loop.close()
        cache.close()


def test_killed_and_restarted_server_keeps_acknowledged_writes() -> None:
    with private_redis(appendonly=True) as node:
        url = f"{node.url}?timeout={TIMEOUT}"
        namespace = _namespace()
        with (
            open_cache(url, namespace=namespace) as cache,
            open_sessions(url, namespace=namespace) as sessions,
        ):
            cache.add_to_blacklist("jti", 60)
            _, token = sessions.create("alice", ttl=60)
            node.kill()
            _assert_fails_closed_in_time(cache)
            error, elapsed = timed(lambda: sessions.get(token))
            assert isinstance(error, BackendUnavailableError) and elapsed < TIMEOUT + MARGIN
            started = time.monotonic()
            node.start()
            recovered = None
            while time.monotonic() - started < 10:
                try:
                    recovered = cache.is_blacklisted("jti")
                    break
                except BackendUnavailableError:
                    time.sleep(0.05)
            print(f"redis restart: store answered again {time.monotonic() - started:.2f} s later")
            assert recovered is True  # acknowledged write kept (AOF, fsync always)
            assert sessions.get(token) is not None


def test_sentinel_failover_without_reopening() -> None:
    with private_sentinel() as topology:
        url = f"{topology.url}?timeout={TIMEOUT}"
        namespace = _namespace()
        with open_cache(url, namespace=namespace) as cache:
            cache.add_to_blacklist("jti", 60)
            assert cache.incr("n") == 1
            during: list[object] = []
            stop = threading.Event()

            def hammer() -> None:  # security reads while the master dies and the replica rises
                while not stop.is_set():
                    try:
                        during.append(cache.is_blacklisted("jti"))
                    except Exception as error:
                        during.append(error)
                    time.sleep(0.01)

            reader = threading.Thread(target=hammer)
            reader.start()
            started = time.monotonic()
            try:
                topology.fail_over()
            finally:
                stop.set()
                reader.join()
            wrong = [
                r for r in during if r is not True and not isinstance(r, BackendUnavailableError)
            ]
            assert not wrong, wrong[:5]  # never "not revoked", never a raw driver error
            failures: list[BaseException] = []
            deadline = time.monotonic() + 15
            answered = None
            while time.monotonic() < deadline:
                try:
                    answered = cache.is_blacklisted("jti")
                    break
                except Exception as error:
                    failures.append(error)
                    time.sleep(0.05)
            errors = sum(isinstance(r, BackendUnavailableError) for r in during)
            print(
                f"sentinel failover: switch done {time.monotonic() - started:.2f} s after the "
                f"master was killed; meanwhile {len(during) - errors} reads answered, "
                f"{errors} raised BackendUnavailableError"
            )
            assert answered is True  # the promoted replica has the entry
            assert all(isinstance(f, BackendUnavailableError) for f in failures), failures
            assert cache.incr("n") == 2  # writes go to the new master


def test_cluster_follows_moved_after_resharding() -> None:
    with private_cluster() as cluster:
        url = f"{cluster.url}?timeout=2"
        namespace = _namespace()
        with (
            open_cache(url, namespace=namespace) as cache,
            open_sessions(url, namespace=namespace) as sessions,
        ):
            cache.set("k", "v")
            _, token = sessions.create("alice", ttl=60)
            slots = {
                cluster.slot_of(f"{namespace}:k:k"),
                cluster.slot_of(f"{{{namespace}:sessions}}:seq"),
            }
            for slot in slots:
                owner = cluster.owner_of(slot)
                target = next(n for n in cluster.nodes if n is not owner)
                cluster.migrate_slot(slot, target)
            assert cache.get("k") == "v"  # MOVED followed, the slot map refreshed
            assert sessions.get(token) is not None
            assert cache.check_rate_limit("k", 1, 60).allowed


@pytest.mark.parametrize("asynchronous", [False, True])
def test_pool_exhaustion_is_bounded(asynchronous: bool) -> None:
    with private_redis() as node:
        url = f"{node.url}?timeout={TIMEOUT}&pool_size=1"
        if not asynchronous:
            cache = open_cache(url, namespace=_namespace())
            cache.set("k", 1)
            with node.frozen():
                error, elapsed = timed(lambda: cache.get("k"))
            assert isinstance(error, BackendUnavailableError)
            assert elapsed < TIMEOUT + MARGIN
            assert cache.get("k") == 1
            cache.close()
            return

        async def main() -> None:
            store = open_async_cache(url, namespace=_namespace())
            await store.set("k", 1)
            node.pause()
            started = time.monotonic()
            results = await asyncio.gather(
                *(store.get("k") for _ in range(5)), return_exceptions=True
            )
            elapsed = time.monotonic() - started
            node.resume()
            assert all(isinstance(r, BackendUnavailableError) for r in results), results
            assert elapsed < TIMEOUT + MARGIN
            assert await store.get("k") == 1
            await store.aclose()

        asyncio.run(main())


def _incoming_connections(nodes: list[Any]) -> list[int]:
    """Clients connected to each node, the admin connection asking included."""
    counts = []
    for node in nodes:
        with node.client() as admin:
            counts.append(len(admin.client_list()))
    return counts


@pytest.mark.parametrize("topology", ["single", "sentinel"])
def test_closing_a_store_closes_its_connections(topology: str) -> None:
    """After close()/aclose() the servers see no connection of the store, sync and async:
    a client built over a pool it did not own left its connection open, and a Sentinel
    client its connections to the sentinels."""
    with contextlib.ExitStack() as stack:
        if topology == "single":
            node = stack.enter_context(private_redis())
            url, nodes = node.url, [node]
        else:
            sentinel = stack.enter_context(private_sentinel())
            url, nodes = sentinel.url, [sentinel.master, sentinel.sentinel]
        before = _incoming_connections(nodes)

        cache = open_cache(url, namespace=_namespace())
        cache.set("k", 1)
        assert _incoming_connections(nodes) != before
        cache.close()
        assert _incoming_connections(nodes) == before, "sync"

        async def use_and_close() -> None:
            acache = open_async_cache(url, namespace=_namespace())
            await acache.set("k", 1)
            assert _incoming_connections(nodes) != before
            await acache.aclose()

        asyncio.run(use_and_close())
        assert _incoming_connections(nodes) == before, "async"


# --------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """One private cluster for the module's cluster faults (a start costs 1-3 s). Its
    node timeout outlasts every freeze: the healthy masters never mark a frozen one as
    failed, so the cluster stays up and what is measured is the client's behaviour."""
    with private_cluster(node_timeout_ms=60_000) as running:
        yield running


def _key_per_master(cluster: PrivateCluster, namespace: str, kind: str = "k") -> dict[int, str]:
    """A key stored on each master (by port); the cache keeps a value's ``key`` under
    ``namespace:k:key``, a blacklisted ``jti`` under ``namespace:b:jti``."""
    found: dict[int, str] = {}
    for index in range(1000):
        key = f"key{index}"
        found.setdefault(cluster.owner_of(cluster.slot_of(f"{namespace}:{kind}:{key}")).port, key)
        if len(found) == len(cluster.nodes):
            return found
    raise AssertionError("no key found for every master")


class _Timed:
    """Calls a store's operation (sync or async, one body) and times it."""

    def __init__(self, asynchronous: bool) -> None:
        self.loop = asyncio.new_event_loop() if asynchronous else None

    def __call__(self, call: Callable[[], Any]) -> tuple[Any, float]:
        started = time.monotonic()
        try:
            result = call()
            if self.loop is not None:
                result = self.loop.run_until_complete(result)
        except Exception as error:
            result = error
        return result, time.monotonic() - started

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_cluster_with_one_master_frozen_serves_the_others(
    cluster: PrivateCluster, asynchronous: bool
) -> None:
    """The first listed master (the one of slot 0, redis-py's default node) frozen: keys
    on the other masters keep answering, on a store opened before the freeze and on one
    opened during it; keys on the frozen master fail closed within the timeout. With
    every master frozen a new store fails within the timeout too (it took one timeout
    per startup node), and everything answers again after the thaw."""
    url = f"{cluster.url}?timeout={TIMEOUT}"
    namespace = _namespace()
    frozen = cluster.nodes[0]
    keys = _key_per_master(cluster, namespace)
    jti = _key_per_master(cluster, namespace, "b")[frozen.port]
    call = _Timed(asynchronous)
    opener = open_async_cache if asynchronous else open_cache
    stores = [opener(url, namespace=namespace)]
    try:
        for port, key in keys.items():
            assert call(lambda key=key, port=port: stores[0].set(key, port))[0] is None
        assert call(lambda: stores[0].add_to_blacklist(jti, 60))[0] is None
        counter = next(
            f"n{index}"
            for index in range(1000)
            if cluster.owner_of(cluster.slot_of(f"{namespace}:k:n{index}")) is frozen
        )
        assert call(lambda: stores[0].incr(counter))[0] == 1
        with frozen.frozen():
            stores.append(opener(url, namespace=namespace))  # opened during the freeze
            for store in reversed(stores):
                for port, key in keys.items():
                    result, elapsed = call(lambda store=store, key=key: store.get(key))
                    assert elapsed < TIMEOUT + MARGIN, f"{port}: {elapsed:.2f} s"
                    if port == frozen.port:
                        assert isinstance(result, BackendUnavailableError), repr(result)
                        assert cluster.url in str(result)
                    else:
                        assert result == port, f"key on a healthy master: {result!r}"
                read, elapsed = call(lambda store=store: store.is_blacklisted(jti))
                assert isinstance(read, BackendUnavailableError) and elapsed < TIMEOUT + MARGIN
                added, elapsed = call(lambda store=store: store.incr(counter))
                assert isinstance(added, BackendUnavailableError) and elapsed < TIMEOUT + MARGIN
            others = [node for node in cluster.nodes if node is not frozen]
            for node in others:
                node.pause()
            try:
                stores.append(opener(url, namespace=namespace))
                for store in stores[::2]:  # the first store, and a new one
                    result, elapsed = call(lambda store=store: store.get(keys[others[0].port]))
                    assert isinstance(result, BackendUnavailableError), repr(result)
                    assert elapsed < TIMEOUT + MARGIN, f"every master frozen: {elapsed:.2f} s"
            finally:
                for node in others:
                    node.resume()
        for store in stores:  # the same stores, after the thaw (a redis-py refresh may
            deadline = time.monotonic() + 10  # still be on its way: a few tries)
            while True:
                result, _ = call(lambda store=store: store.get(keys[frozen.port]))
                if result == frozen.port or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert result == frozen.port, repr(result)
        # two increments failed during the freeze: each may have been applied, once (a
        # driver that resent one after its timeout counted it again)
        assert call(lambda: stores[0].get(counter))[0] in (1, 2, 3)
    finally:
        for store in stores:
            call(store.aclose if asynchronous else store.close)
        call.close()


CONNECTIONS = 6


def _concurrently(
    store: Any,
    loop: asyncio.AbstractEventLoop | None,
    call: Callable[[Any], Any],
    count: int = CONNECTIONS,
) -> list[Any]:
    """``count`` calls at once (threads, or tasks on ``loop``), so each takes a pooled
    connection of its own; their results or errors."""
    if loop is not None:
        if count == 1:  # the call's task runs before the loop reads what came meanwhile

            async def alone() -> list[Any]:
                try:
                    return [await call(store)]
                except Exception as error:
                    return [error]

            return loop.run_until_complete(alone())

        async def gather() -> list[Any]:
            calls = (call(store) for _ in range(count))
            return await asyncio.gather(*calls, return_exceptions=True)

        return loop.run_until_complete(gather())
    return at_once_in_threads(count, lambda: call(store), seconds=30)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_stale_pooled_connections_are_replaced_after_a_restart(
    topology: str, asynchronous: bool, request: pytest.FixtureRequest
) -> None:
    """An idle server restarts (kill, start on the same port): the next calls, one per
    pooled connection, all succeed on new connections, and an increment sent once
    counts once (a stale connection is replaced before anything is sent on it; the
    async pool used to fail the first call on each of them)."""
    with contextlib.ExitStack() as stack:
        if topology == "single":
            node = stack.enter_context(private_redis())
            url = node.url
        else:
            running: PrivateCluster = request.getfixturevalue("cluster")
            url = running.url
        namespace = _namespace()
        key = "counter"
        if topology == "cluster":
            node = running.owner_of(running.slot_of(f"{namespace}:k:{key}"))
        store = (open_async_cache if asynchronous else open_cache)(
            f"{url}?timeout=2&pool_size={CONNECTIONS}", namespace=namespace
        )
        loop = asyncio.new_event_loop() if asynchronous else None
        try:
            warm = _concurrently(store, loop, lambda s: s.get(key))
            assert warm == [None] * CONNECTIONS, warm
            node.restart()  # memory only: it comes back empty
            if topology == "cluster":  # until it has met the others again: CLUSTERDOWN
                deadline = time.monotonic() + 20
                while not running._ok() and time.monotonic() < deadline:
                    time.sleep(0.05)
            # one call first (from a loop that has not run since the restart), then the
            # others at once, each on another of the pooled connections
            counted = _concurrently(store, loop, lambda s: s.incr(key), count=1)
            counted += _concurrently(store, loop, lambda s: s.incr(key), CONNECTIONS - 1)
            failed = [c for c in counted if isinstance(c, BaseException)]
            assert not failed, failed
            assert sorted(counted) == list(range(1, CONNECTIONS + 1))
        finally:
            if loop is not None:
                loop.run_until_complete(store.aclose())
                loop.close()
            else:
                store.close()


# --------------------------------------------------------------------------- sentinel


@pytest.fixture(scope="module")
def sentinel() -> Iterator[PrivateSentinel]:
    """One private master, replica and sentinel for the module's freezes; the sentinel
    waits a minute before it calls a master down, so a freeze never turns into a
    failover (test_sentinel_failover_without_reopening has its own)."""
    with private_sentinel(down_after_ms=60_000) as running:
        yield running


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_sentinel_frozen_master_frozen_and_killed_sentinel(
    sentinel: PrivateSentinel, asynchronous: bool
) -> None:
    """Master frozen: security reads fail closed within the timeout, on a store opened
    before and one opened during the freeze. Sentinel frozen or killed: a store with
    pooled connections to the master goes on answering, a new one (which must ask the
    sentinel where the master is) fails closed within the timeout; all answer after."""
    url = f"{sentinel.url}?timeout={TIMEOUT}"
    namespace = _namespace()
    call = _Timed(asynchronous)
    opener = open_async_cache if asynchronous else open_cache
    stores = [opener(url, namespace=namespace)]

    def fails_closed(store: Any, what: str, reads: int = 1) -> None:
        for name, read in list(SECURITY_READS.items())[:reads]:
            result, elapsed = call(lambda read=read: read(store))
            assert isinstance(result, BackendUnavailableError), f"{what}, {name}: {result!r}"
            assert sentinel.url in str(result)
            assert elapsed < TIMEOUT + MARGIN, f"{what}, {name}: {elapsed:.2f} s"

    def revoked(store: Any) -> Any:
        return call(lambda: store.is_blacklisted("jti"))[0]

    try:
        assert call(lambda: stores[0].add_to_blacklist("jti", 60))[0] is None
        with sentinel.master.frozen():
            fails_closed(stores[0], "master frozen, store opened before", len(SECURITY_READS))
            stores.append(opener(url, namespace=namespace))
            fails_closed(stores[-1], "master frozen, store opened during")
        assert [revoked(store) for store in stores] == [True, True]
        with sentinel.sentinel.frozen():
            assert revoked(stores[0]) is True  # its pooled connection to the master
            stores.append(opener(url, namespace=namespace))
            fails_closed(stores[-1], "sentinel frozen, new store")
        assert revoked(stores[-1]) is True
        sentinel.sentinel.kill()
        try:
            assert revoked(stores[0]) is True
            stores.append(opener(url, namespace=namespace))
            fails_closed(stores[-1], "sentinel killed, new store")
        finally:
            sentinel.sentinel.start()
        assert revoked(stores[-1]) is True
    finally:
        for store in stores:
            call(store.aclose if asynchronous else store.close)
        call.close()
