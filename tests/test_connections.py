"""Close means closed, and one URL is one pool: connections as the server counts them.

Each backend gets a counter of the connections the server sees from the store under
test only: Redis ``CLIENT LIST`` filtered by a ``client_name`` set per test,
PostgreSQL ``pg_stat_activity`` by an ``application_name`` set per test, MariaDB's
processlist by a database created for the test, and for MongoDB (secantusdb) and
memcached, whose counts cannot be filtered, a private server of the test's own on a
free port. SQLite counts the process's open descriptors of the database file.

Every test counts before the store opens, while it is in use, and after it is closed,
and must find the baseline again (waiting a moment for the server to notice a
disconnect, never asserting on time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authstore import open_async_cache, open_async_stores, open_cache, open_stores
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL
from tests.outages import end_process, free_port

Counter = Callable[[], int]

SETTLE_SECONDS = 10.0
"""How long a count may take to come back to the baseline: a server notices a closed
socket on its next loop turn (the assertion is on the count, not on the time)."""


@dataclass
class Counted:
    url: str
    count: Counter


def _with(url: str, **options: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# --- counters, one per backend ----------------------------------------------------------


def _redis_admin(url: str) -> Any:
    """A plain redis-py client of the URL's server (its own name, not counted)."""
    import redis

    from authstore.adapters.redis.client import make_client
    from authstore.adapters.redis.settings import parse_settings

    settings = parse_settings(StoreURL.parse(_with(url, client_name="authstore-counter")))
    return make_client(redis, settings, asynchronous=False)


def _named(client: Any, name: str) -> int:
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


@contextlib.contextmanager
def _redis(url: str) -> Iterator[Counted]:
    import redis

    name = _unique("authstore-count-")
    parsed = StoreURL.parse(url)
    admins: list[Any] = []
    if parsed.scheme in ("redis+cluster", "redis+sentinel"):
        # every node (cluster) or the sentinels and the master they name
        admins += [redis.Redis(host, port or 26379) for host, port in parsed.hosts]
        if parsed.scheme == "redis+sentinel":
            service = parsed.path.strip("/").split("/")[0]
            host, port = admins[0].sentinel_get_master_addr_by_name(service)
            admins.append(redis.Redis(host, int(port)))
    else:
        admins.append(_redis_admin(url))
    try:
        yield Counted(_with(url, client_name=name), lambda: sum(_named(a, name) for a in admins))
    finally:
        for admin in admins:
            admin.close()
            admin.connection_pool.disconnect()


@contextlib.contextmanager
def _postgres(url: str) -> Iterator[Counted]:
    import psycopg

    name = _unique("authstore-count-")
    with psycopg.connect(url.split("?")[0], autocommit=True) as admin:

        def count() -> int:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
            assert row is not None
            return int(row[0])

        yield Counted(_with(url, application_name=name), count)


@contextlib.contextmanager
def _mariadb(url: str) -> Iterator[Counted]:
    """A database of the test's own: the processlist shows each connection's database."""
    import pymysql

    parsed = StoreURL.parse(url)
    (host, port), *_ = parsed.hosts
    database = _unique("authstore_count_")
    admin = pymysql.connect(
        host=host, port=port or 3306, user=parsed.username, password=parsed.password or ""
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {database}")

        def count() -> int:
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM information_schema.processlist WHERE db = %s",
                    (database,),
                )
                row = cursor.fetchone()
            assert row is not None
            return int(row[0])

        base = StoreURL(parsed.scheme, parsed.hosts, parsed.username, parsed.password, "/")
        password = f":{parsed.password}" if parsed.password else ""
        user = f"{parsed.username}{password}@" if parsed.username else ""
        hosts = ",".join(f"{h}:{p}" if p else h for h, p in base.hosts)
        yield Counted(f"{parsed.scheme}://{user}{hosts}/{database}", count)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@contextlib.contextmanager
def _process(command: list[str], port: int, what: str, folder: str) -> Iterator[None]:
    log = open(os.path.join(folder, "log"), "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        _wait_for_port(port, process, what)
        yield
    finally:
        end_process(process)
        log.close()


def _secantusd() -> str | None:
    home = os.environ.get("AUTHSTORE_SERVICES_HOME") or os.path.expanduser(
        "~/.cache/authstore-services"
    )
    found = os.path.join(home, "venv", "bin", "secantusd-py")
    return found if os.path.exists(found) else shutil.which("secantusd-py")


@contextlib.contextmanager
def _mongodb(_shared: str) -> Iterator[Counted]:
    """A private secantusdb: its serverStatus counts every connection, unfiltered."""
    import pymongo

    binary = _secantusd()
    if binary is None:
        pytest.fail("no secantusd-py: run scripts/services up mongodb", pytrace=False)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authstore-mongo-") as folder:
        config = os.path.join(folder, "secantusd.toml")
        Path(config).write_text("")
        command = [binary, "--config", config, "--host", "127.0.0.1", "--port", str(port)]
        command += ["--storage-path", ":memory:"]
        with _process(command, port, "secantusd", folder):
            # polled monitoring: no RTT connection of the counter's own that appears
            # later, after the baseline
            admin: Any = pymongo.MongoClient(
                f"mongodb://127.0.0.1:{port}",
                serverSelectionTimeoutMS=10_000,
                serverMonitoringMode="poll",
            )
            try:

                def count() -> int:
                    status = admin.admin.command("serverStatus")
                    return int(status["connections"]["current"])

                _steady(count)  # the port probe, once the server has seen it go
                yield Counted(f"mongodb://127.0.0.1:{port}/authstore_count", count)
            finally:
                admin.close()


@contextlib.contextmanager
def _memcached(_shared: str) -> Iterator[Counted]:
    """A private memcached: ``stats`` counts every connection, unfiltered."""
    binary = shutil.which("memcached")
    if binary is None:
        pytest.fail("no memcached binary: run scripts/services up memcached", pytrace=False)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authstore-memcached-") as folder:
        command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
        if os.geteuid() == 0:
            command += ["-u", "root"]
        with _process(command, port, "memcached", folder):

            def count() -> int:
                with socket.create_connection(("127.0.0.1", port), 5) as admin:
                    admin.sendall(b"stats\r\n")
                    reply = b""
                    while not reply.endswith(b"END\r\n"):
                        reply += admin.recv(65536)
                for line in reply.decode().splitlines():
                    if line.startswith("STAT curr_connections "):
                        return int(line.split()[-1]) - 1  # less this stats connection
                raise AssertionError(f"no curr_connections in {reply!r}")

            # the port probe that saw the server start may still be counted: a baseline
            # that drops while the store runs would hide the store's own connection
            _settled(count, 0)
            yield Counted(f"memcached://127.0.0.1:{port}", count)


@contextlib.contextmanager
def _sqlite(folder: str) -> Iterator[Counted]:
    """The descriptors this process holds open on the database file (and its WAL)."""
    database = os.path.join(folder, "count.db")

    def count() -> int:
        held = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith(database):
                    held += 1
        return held

    yield Counted(f"sqlite:///{database}", count)


COUNTED: dict[str, Callable[[str], contextlib.AbstractContextManager[Counted]]] = {
    "postgres": _postgres,
    "mariadb": _mariadb,
    "redis": _redis,
    "redis_cluster": _redis,
    "redis_sentinel": _redis,
    "redis_tls": _redis,
    "redis_unix": _redis,
    "mongodb": _mongodb,
    "memcached": _memcached,
}


@pytest.fixture(params=["sqlite", *COUNTED])
def counted(
    request: pytest.FixtureRequest, server_url: Callable[[str], str], tmp_path: Path
) -> Iterator[Counted]:
    name: str = request.param
    if name == "sqlite":
        with _sqlite(str(tmp_path)) as found:
            yield found
        return
    with COUNTED[name](server_url(name)) as found:
        yield found


def _settled(count: Counter, expected: int) -> int:
    """The count once it equals ``expected``, or the last one after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        now = count()
        if now == expected or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def _steady(count: Counter) -> int:
    """The count once two readings a moment apart agree (or after SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    last = count()
    while True:
        time.sleep(0.2)
        now = count()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def _exercise_sync(store: Any) -> None:
    """Enough traffic that a pooled backend holds several connections (threads)."""

    def work() -> None:
        for index in range(20):
            store.set(f"k{index}", index)
            assert store.get(f"k{index}") == index

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.set("main", 1)  # and from this thread (memcached's clients are per thread)


async def _exercise_async(store: Any) -> None:
    async def work() -> None:
        for index in range(20):
            await store.set(f"k{index}", index)
            assert await store.get(f"k{index}") == index

    await asyncio.gather(*(work() for _ in range(8)))


# --- close means closed -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_close_gives_every_connection_back(counted: Counted, mode: str) -> None:
    """Before, during and after: the server's count of the store's connections is back
    at its baseline once the store is closed, sync (``close``) and async (``aclose``)."""
    baseline = counted.count()
    url = _with(counted.url, namespace=_unique("c"))
    if mode == "sync":
        with open_cache(url) as store:
            _exercise_sync(store)
            during = counted.count()
    else:

        async def main() -> int:
            async with open_async_cache(url) as store:
                await _exercise_async(store)
                return counted.count()

        during = asyncio.run(main())
    after = _settled(counted.count, baseline)
    assert during > baseline, "the counter does not see the store's connections"
    # <=: a connection of an earlier test may finish closing meanwhile; a leak adds one
    assert after <= baseline, f"{after - baseline} connection(s) left open after close"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_closing_a_group_gives_every_connection_back(counted: Counted, mode: str) -> None:
    baseline = counted.count()
    url = _with(counted.url, namespace=_unique("g"))
    if mode == "sync":
        with open_stores(url) as stores:
            _exercise_sync(stores.cache)
            for kind in stores.kinds - {StoreKind.CACHE}:
                getattr(stores, kind.value).ping()
    else:

        async def main() -> None:
            async with open_async_stores(url) as stores:
                await _exercise_async(stores.cache)
                for kind in stores.kinds - {StoreKind.CACHE}:
                    await getattr(stores, kind.value).ping()

        asyncio.run(main())
    after = _settled(counted.count, baseline)
    # <=: a connection of an earlier test may finish closing meanwhile; a leak adds one
    assert after <= baseline, f"{after - baseline} connection(s) left open after close"


# --- one URL, one pool ------------------------------------------------------------------

POOLED = {
    "postgres": _postgres,
    "mariadb": _mariadb,
    "redis": _redis,
    "mongodb": _mongodb,
}
POOL_SIZE = 3
MONGO_MONITORS = 2
"""Connections a MongoClient keeps to a server besides its pool (its monitors)."""


def _busy_with_every_store(stores: Any) -> None:
    """Three threads per store kind, at once: four pools would hold a connection each at
    least (and grow to their size); one shared pool stays within ``pool_size``."""
    calls: list[Callable[[], Any]] = [
        lambda: stores.cache.get("k"),
        lambda: stores.sessions.count("u"),
        lambda: stores.totp.load("u"),
        lambda: stores.magic_links.peek("t" * 43),
    ]
    start = threading.Barrier(len(calls) * 3)

    def work(call: Callable[[], Any]) -> None:
        start.wait()
        for _ in range(15):
            call()

    threads = [threading.Thread(target=work, args=(call,)) for call in calls * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("name", list(POOLED))
def test_four_stores_of_a_group_share_one_pool(name: str, server_url: Callable[[str], str]) -> None:
    with POOLED[name](server_url(name)) as found:
        baseline = found.count()
        url = _with(found.url, namespace=_unique("p"), pool_size=str(POOL_SIZE))
        with open_stores(url) as stores:
            assert stores.kinds == frozenset(StoreKind)
            _busy_with_every_store(stores)
            held = found.count() - baseline
        allowed = POOL_SIZE + (MONGO_MONITORS if name == "mongodb" else 0)
        assert 0 < held <= allowed, f"{held} connections for 4 stores over one pool of {POOL_SIZE}"
        assert _settled(found.count, baseline) == baseline


def test_async_group_stores_share_one_runner(server_url: Callable[[str], str]) -> None:
    """The async group's stores run on one runner: PostgreSQL counts one pool's worth."""
    with _postgres(server_url("postgres")) as found:
        baseline = found.count()
        url = _with(found.url, namespace=_unique("p"), pool_size=str(POOL_SIZE))

        async def main() -> int:
            async with open_async_stores(url) as stores:
                calls: list[Callable[[], Awaitable[Any]]] = [
                    lambda: stores.cache.get("k"),
                    lambda: stores.sessions.count("u"),
                    lambda: stores.totp.load("u"),
                    lambda: stores.magic_links.peek("t" * 43),
                ]
                await asyncio.gather(*(call() for call in calls * 5))
                return found.count() - baseline

        held = asyncio.run(main())
        assert 0 < held <= POOL_SIZE
        assert _settled(found.count, baseline) == baseline


def test_closing_one_store_of_a_group_keeps_the_pool_for_the_others(
    server_url: Callable[[str], str],
) -> None:
    from authstore import StoreClosedError

    with _postgres(server_url("postgres")) as found:
        baseline = found.count()
        with open_stores(_with(found.url, namespace=_unique("p"))) as stores:
            stores.cache.set("k", 1)
            stores.cache.close()
            with pytest.raises(StoreClosedError):
                stores.cache.get("k")
            assert stores.sessions.count("u") == 0  # the pool is still open under it
            assert found.count() > baseline
        with pytest.raises(StoreClosedError):
            stores.sessions.count("u")
        assert _settled(found.count, baseline) == baseline
