"""What the Redis backend adds to the contract: URLs, round trips, clients, scripts, keys."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from authstore import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    open_async_cache,
    open_async_sessions,
    open_cache,
    open_magic_links,
    open_sessions,
    open_totp,
)
from authstore.adapters.redis.backend import backend, eviction_warning
from authstore.adapters.redis.commands import Call, Lua, Script, lua
from authstore.adapters.redis.settings import parse_settings
from authstore.registry import StoreURL
from tests.contention import at_once_in_threads, errors_of


def _namespace() -> str:
    return "t" + uuid.uuid4().hex


@pytest.fixture
def raw(single_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(single_url)
    yield client
    client.close()


# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6380/3", {"topology": "single", "hosts": (("h", 6380),), "db": 3}),
        ("redis://", {"hosts": (("127.0.0.1", 6379),), "db": 0}),
        ("redis://h?db=2", {"db": 2}),
        ("rediss://h/0?ssl_ca_certs=/ca.pem", {"tls": True}),
        ("redis+unix:///run/r.sock?db=4", {"unix_socket": "/run/r.sock", "db": 4}),
        (
            "redis+cluster://a:7001,b:7002",
            {"topology": "cluster", "hosts": (("a", 7001), ("b", 7002))},
        ),
        (
            "redis+sentinel://s1,s2:26380/mymaster/2",
            {
                "topology": "sentinel",
                "service": "mymaster",
                "db": 2,
                "hosts": (("s1", 26379), ("s2", 26380)),
            },
        ),
        ("redis://h?namespace=app1&timeout=0.5&pool_size=3", {"namespace": "app1", "timeout": 0.5}),
    ],
)
def test_urls(url: str, expected: dict[str, Any]) -> None:
    settings = parse_settings(StoreURL.parse(url))
    for name, value in expected.items():
        assert getattr(settings, name) == value, name


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/x",
        "redis://h/1?db=2",
        "redis+cluster://a:1/1",
        "redis+cluster://",
        "redis+sentinel://s1",
        "redis+unix://host/path",
        "redis://h?bogus=1",
        "redis://h?timeout=-1",
        "redis://h?namespace=a:b",
        "rediss://h?ssl_cert_reqs=maybe",
        "redis://h?ssl_ca_certs=/ca.pem",  # TLS options without TLS are a typo
        "redis://a:1,b:2",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_cache(url).get("k")


def test_password_never_shown(single_url: str) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    store = open_cache(f"redis://user:{secret}@127.0.0.1:6379/0?timeout=1")
    assert secret not in repr(store)
    with pytest.raises(BackendError) as caught:
        store.get("k")
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
    store.close()


def test_importing_the_backend_imports_no_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, authstore.adapters.redis, authstore;"
        "authstore.registry.backend_for('redis://h');"
        "assert 'redis.client' not in sys.modules, 'driver imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- scripts, keys, clocks ----------------------------------------------------------------


def test_scripts_are_package_data_and_reload_after_flush(single_url: str, raw: redis.Redis) -> None:
    assert lua("gcra").source.startswith(b"-- Shared by every authstore script")
    with open_cache(single_url, namespace=_namespace()) as cache:
        assert cache.check_rate_limit("k", 5, 60).allowed
        raw.script_flush()  # a restart or a failover forgets the scripts: NOSCRIPT
        result = cache.check_rate_limit("k", 5, 60)
        assert result.allowed and result.remaining == 3


@pytest.mark.parametrize("asynchronous", [False, True])
def test_driver_errors_reach_the_op_translated_once(
    single_url: str, raw: redis.Redis, asynchronous: bool
) -> None:
    """The op protocol: a driver error is thrown into the op translated, the driver's
    error as its cause (an op may handle it); one the op lets go leaves the runner as
    it is; a script the server has not seen (NOSCRIPT) never reaches the op: the program
    sends it as EVAL."""
    runner = backend.runner(backend.settings(StoreURL.parse(single_url)), asynchronous=asynchronous)
    text = f"{_namespace()}:text"
    raw.set(text, "not a number")
    source = f"return ARGV[1] .. '{uuid.uuid4().hex}'".encode()  # a script new to the server
    unseen = Lua("unseen", source, hashlib.sha1(source, usedforsecurity=False).hexdigest())

    def handled() -> Any:
        try:
            yield Call(("INCR", text))
        except BackendError as error:
            return type(error).__name__, type(error.__cause__).__module__
        return "no error"

    def unhandled() -> Any:
        yield Call(("INCR", text))

    def scripted() -> Any:
        reply = yield Script(unseen, (text,), ("ran",))
        return reply

    async def run_async(ops: list[Any]) -> list[Any]:
        try:
            return [await _outcome(runner.run(op)) for op in ops]
        finally:
            await runner.close()

    ops = [handled(), unhandled(), scripted()]
    if asynchronous:
        outcomes = asyncio.run(run_async(ops))
    else:
        outcomes = [_outcome_sync(lambda op=op: runner.run(op)) for op in ops]
        runner.close()
    assert outcomes[0] == ("BackendError", "redis.exceptions")
    assert type(outcomes[1]) is BackendError, outcomes[1]
    assert type(outcomes[1].__cause__).__module__ == "redis.exceptions"
    assert "redis (" in str(outcomes[1]) and "not an integer" in str(outcomes[1])
    assert outcomes[2].startswith(b"ran"), outcomes[2]
    raw.delete(text)


async def _outcome(running: Any) -> Any:
    try:
        return await running
    except Exception as error:
        return error


def _outcome_sync(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except Exception as error:
        return error


def test_ttl_from_pttl_and_server_clock(single_url: str, raw: redis.Redis) -> None:
    namespace = _namespace()
    with open_cache(single_url, namespace=namespace) as cache:
        cache.set("k", 1, ttl=12.5)
        assert 12.0 < (cache.ttl("k") or 0) <= 12.5
        assert raw.pttl(f"{namespace}:k:k") > 12_000
        cache.set("forever", 1)
        assert cache.ttl("forever") == math.inf
        before = time.time()
        revoked = cache.revoke_user_tokens("u")
        server_now = sum(int(x) / 10**6 if i else int(x) for i, x in enumerate(raw.time()))
        assert abs(revoked.timestamp() - server_now) < 1
        assert revoked.timestamp() % 1 != 0 or before % 1 == 0  # sub-second, not whole seconds


def test_no_keys_command_and_every_key_namespaced(single_url: str, raw: redis.Redis) -> None:
    namespace = _namespace()
    with (
        open_cache(single_url, namespace=namespace) as cache,
        open_sessions(single_url, namespace=namespace) as sessions,
        open_totp(single_url, namespace=namespace) as totp,
        open_magic_links(single_url, namespace=namespace) as links,
    ):
        cache.set("k", "v")
        cache.check_rate_limit("k", 3, 60, algorithm="gcra")
        cache.add_to_blacklist("jti", 60)
        sessions.create("alice", ttl=60)
        totp.save_pending("alice", b"x")
        links.issue("alice", "a@example.com", ttl=60)
        keys = sorted(k.decode() for k in raw.scan_iter(match=f"*{namespace}*", count=1000))
        assert all(k.startswith((f"{namespace}:", f"{{{namespace}:")) for k in keys), keys
        assert len(keys) >= 8
    for name in ("session_create", "link_issue", "gcra", "raise_to"):
        assert b"'KEYS'" not in lua(name).source


def test_session_index_never_keeps_stale_members(single_url: str, raw: redis.Redis) -> None:
    namespace = _namespace()
    index = f"{{{namespace}:sessions}}:u:alice"
    with open_sessions(single_url, namespace=namespace) as sessions:
        for _ in range(3):
            sessions.create("alice", ttl=0.2)
        _, token = sessions.create("alice", ttl=60)
        assert raw.zcard(index) == 4
        time.sleep(0.35)
        assert sessions.count("alice") == 1  # reading the index prunes the expired members
        assert raw.zcard(index) == 1
        assert sessions.revoke(token)
        assert raw.zcard(index) == 0
        assert raw.pttl(index) == -2  # the index goes with its last session
        sessions.create("bob", ttl=0.2)
        assert (
            0 < raw.pttl(f"{{{namespace}:sessions}}:u:bob") <= 201
        )  # and expires with it (ms, rounded up)


def test_eviction_policy_is_reported() -> None:
    assert eviction_warning("noeviction") is None
    warning = eviction_warning("allkeys-lru")
    assert warning is not None and "noeviction" in warning


def test_migrate_reports_policy_and_persistence(single_url: str, raw: redis.Redis) -> None:
    policy = raw.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        raw.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.warns(RuntimeWarning, match="noeviction"):
            report = backend.migrate(StoreURL.parse(single_url))
        assert any("WARNING" in line for line in report)
    finally:
        raw.config_set("maxmemory-policy", policy)
    assert not any("WARNING" in line for line in backend.migrate(StoreURL.parse(single_url)))


def _use_once(url: str, asynchronous: bool) -> None:
    if not asynchronous:
        with open_cache(url, namespace=_namespace()) as cache:
            cache.is_blacklisted("jti")
        return
    store = open_async_cache(url, namespace=_namespace())

    async def use() -> None:
        await store.is_blacklisted("jti")
        await store.aclose()

    asyncio.run(use())


@pytest.mark.parametrize("asynchronous", [False, True])
def test_first_use_warns_when_the_server_may_evict(
    single_url: str, raw: redis.Redis, asynchronous: bool
) -> None:
    policy = raw.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        raw.config_set("maxmemory-policy", "volatile-ttl")
        with pytest.warns(RuntimeWarning, match="volatile-ttl"):
            _use_once(single_url, asynchronous)
    finally:
        raw.config_set("maxmemory-policy", policy)


def test_incr_refuses_non_integers_and_overflow(single_url: str) -> None:
    with open_cache(single_url, namespace=_namespace()) as cache:
        cache.set("f", 1.5)
        with pytest.raises(ValueError, match="not an integer"):
            cache.incr("f")
        cache.set("big", 2**63 - 2)
        assert cache.incr("big") == 2**63 - 1
        with pytest.raises(ValueError):
            cache.incr("big")
        assert cache.get("big") == 2**63 - 1  # nothing changed


# --- clients ------------------------------------------------------------------------------


def test_existing_sync_client_is_used_and_not_closed(single_url: str) -> None:
    client = redis.Redis.from_url(single_url)
    with open_cache("redis://", client=client, namespace=_namespace()) as cache:
        cache.set("k", 1)
        assert cache.get("k") == 1
    assert client.ping()  # still usable: authstore never closes a caller's client
    client.close()
    with pytest.raises(ConfigurationError):
        open_cache(single_url, client=client)


def test_existing_async_client(single_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(single_url)
        store = open_async_sessions("redis://", client=client, namespace=_namespace())
        record, token = await store.create("alice", ttl=60)
        assert (await store.get(token)) == record
        await store.aclose()
        assert await client.ping()
        await client.aclose()

    asyncio.run(main())


def test_async_store_survives_a_new_event_loop(single_url: str) -> None:
    store = open_async_cache(single_url, namespace=_namespace())

    async def hit() -> bool:
        return (await store.check_rate_limit("k", 10, 60)).allowed

    assert asyncio.run(hit())
    assert asyncio.run(hit())  # another loop: the store starts a client there
    asyncio.run(store.aclose())


# --- round trips on the wire ----------------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.sent = 0


def _counting_client(url: str, asynchronous: bool) -> tuple[Any, _Counter]:
    """A client whose connections count what they send: one send is one round trip."""
    counter = _Counter()
    module: Any = redis.asyncio if asynchronous else redis
    base = module.Connection

    if asynchronous:

        class AsyncCounting(base):  # type: ignore[misc, valid-type]
            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.sent += 1
                await super().send_packed_command(command, check_health)

        connection_class: Any = AsyncCounting
    else:

        class Counting(base):  # type: ignore[misc, valid-type]
            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.sent += 1
                super().send_packed_command(command, check_health)

        connection_class = Counting
    settings = parse_settings(StoreURL.parse(url))
    (host, port), *_ = settings.hosts
    pool = module.ConnectionPool(
        connection_class=connection_class, host=host, port=port, db=settings.db
    )
    return module.Redis.from_pool(pool), counter  # closing the client closes the pool


OPERATIONS: dict[str, list[tuple[str, Callable[[Any, dict[str, Any]], Any]]]] = {
    "cache": [
        ("get", lambda s, c: s.get("k")),
        ("set", lambda s, c: s.set("k", 1, ttl=60)),
        ("add", lambda s, c: s.add("a", 1, ttl=60)),
        ("exists", lambda s, c: s.exists("k")),
        ("incr", lambda s, c: s.incr("n", 1, ttl=60)),
        ("expire", lambda s, c: s.expire("k", 30)),
        ("ttl", lambda s, c: s.ttl("k")),
        ("delete", lambda s, c: s.delete("a")),
        ("get_many", lambda s, c: s.get_many(["k", "n", "x"])),
        ("set_many", lambda s, c: s.set_many({"x": 1, "y": 2}, ttl=60)),
        ("delete_many", lambda s, c: s.delete_many(["x", "y"])),
        ("fixed_window", lambda s, c: s.check_rate_limit("r", 100, 60)),
        (
            "sliding_window",
            lambda s, c: s.check_rate_limit("r", 100, 60, algorithm="sliding_window"),
        ),
        ("gcra", lambda s, c: s.check_rate_limit("r", 100, 60, algorithm="gcra")),
        ("peek_rate_limit", lambda s, c: s.peek_rate_limit("r", 100, 60)),
        ("peek_sliding_window", lambda s, c: s.peek_rate_limit("r", 100, 60, "sliding_window")),
        ("peek_gcra", lambda s, c: s.peek_rate_limit("r", 100, 60, "gcra")),
        ("peek_rate_limits", lambda s, c: s.peek_rate_limits("r", "100/minute;1000/day")),
        ("reset_rate_limit", lambda s, c: s.reset_rate_limit("r")),
        ("add_to_blacklist", lambda s, c: s.add_to_blacklist("j", 60)),
        ("is_blacklisted", lambda s, c: s.is_blacklisted("j")),
        ("remove_from_blacklist", lambda s, c: s.remove_from_blacklist("j")),
        ("revoke_user_tokens", lambda s, c: s.revoke_user_tokens("u")),
        ("user_tokens_revoked_at", lambda s, c: s.user_tokens_revoked_at("u")),
    ],
    "sessions": [
        ("create", lambda s, c: s.create("u", ttl=60, max_sessions=3)),
        ("get", lambda s, c: s.get(c["token"])),
        ("touch", lambda s, c: s.touch(c["token"], ttl=90)),
        ("list", lambda s, c: s.list("u")),
        ("count", lambda s, c: s.count("u")),
        ("revoke", lambda s, c: s.revoke(c["token"])),
        ("revoke_by_id", lambda s, c: s.revoke_by_id("some-id")),
        ("revoke_all", lambda s, c: s.revoke_all("u")),
    ],
    "totp": [
        ("save_pending", lambda s, c: s.save_pending("u", b"secret")),
        ("enable", lambda s, c: s.enable("u")),
        ("load", lambda s, c: s.load("u")),
        ("replace_backup_codes", lambda s, c: s.replace_backup_codes("u", ["a", "b"])),
        ("use_backup_code", lambda s, c: s.use_backup_code("u", "a")),
        ("claim_step", lambda s, c: s.claim_step("u", 7)),
        ("disable", lambda s, c: s.disable("u")),
    ],
    "magic_links": [
        ("issue", lambda s, c: s.issue("u", "u@example.com", ttl=60)),
        ("peek", lambda s, c: s.peek(c["token"])),
        ("consume", lambda s, c: s.consume(c["token"])),
        ("revoke_user", lambda s, c: s.revoke_user("u")),
    ],
}


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_one_round_trip_per_operation_sync(single_url: str, kind: str) -> None:
    from authstore.contracts.testing.harness import open_store

    client, counter = _counting_client(single_url, asynchronous=False)
    store = open_store("redis://", kind, False, client=client, namespace=_namespace())  # type: ignore[arg-type]
    context: dict[str, Any] = {}
    for _ in range(2):  # the first pass loads the scripts (NOSCRIPT, then EVAL) and connects
        counts = {}
        for name, call in OPERATIONS[kind]:
            before = counter.sent
            result = call(store, context)
            if name in ("create", "issue"):
                context["token"] = result.token
            counts[name] = counter.sent - before
    assert counts == dict.fromkeys(counts, 1)
    store.close()
    client.close()


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_one_round_trip_per_operation_async(single_url: str, kind: str) -> None:
    from authstore.contracts.testing.harness import open_store

    async def main() -> dict[str, int]:
        client, counter = _counting_client(single_url, asynchronous=True)
        store = open_store("redis://", kind, True, client=client, namespace=_namespace())  # type: ignore[arg-type]
        context: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for _ in range(2):
            for name, call in OPERATIONS[kind]:
                before = counter.sent
                result = call(store, context)
                if asyncio.iscoroutine(result):
                    result = await result
                if name in ("create", "issue"):
                    context["token"] = result.token
                counts[name] = counter.sent - before
        await store.aclose()
        await client.aclose()
        return counts

    counts = asyncio.run(main())
    assert counts == dict.fromkeys(counts, 1)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_group_hit_is_two_round_trips(single_url: str, asynchronous: bool) -> None:
    """A group hit reads the record with the clock, then compare-and-sets it: two
    scripts, whatever the number of limits; a refused hit is the read alone."""
    from authstore.contracts.testing.harness import open_store

    group = "2/minute;10/hour;100/day"

    async def main() -> list[int]:
        client, counter = _counting_client(single_url, asynchronous)
        store = open_store("redis://", "cache", asynchronous, client=client, namespace=_namespace())  # type: ignore[arg-type]
        counts = []
        for key in ("warm-up", "k", "k", "k"):  # the first pass loads the scripts
            before = counter.sent
            result = store.check_rate_limits(key, group)
            if asyncio.iscoroutine(result):
                await result
            counts.append(counter.sent - before)
        if asynchronous:
            await store.aclose()
            await client.aclose()
        else:
            store.close()
            client.close()
        return counts[1:]

    assert asyncio.run(main()) == [2, 2, 1]


# --- outages ------------------------------------------------------------------------------


def test_refused_connection_fails_closed_in_time() -> None:
    with open_cache("redis://127.0.0.1:1/0?timeout=0.5") as cache:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            cache.is_blacklisted("jti")
        assert time.monotonic() - started < 1.5


def test_existing_cluster_clients(server_url: Callable[[str], str]) -> None:
    """A caller's RedisCluster (sync and async) is used as it is, and never closed."""
    import redis.asyncio.cluster
    import redis.cluster

    url = server_url("redis_cluster")
    nodes = parse_settings(StoreURL.parse(url)).hosts
    client = redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in nodes]
    )
    with open_sessions("redis+cluster://", client=client, namespace=_namespace()) as sessions:
        record, token = sessions.create("alice", ttl=60, max_sessions=1)
        assert sessions.get(token) == record
    assert client.ping()
    client.close()

    async def main() -> None:
        aclient = redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in nodes]
        )
        store = open_async_cache("redis+cluster://", client=aclient, namespace=_namespace())
        results = await asyncio.gather(*(store.incr("n") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        await store.aclose()
        assert await aclient.ping()
        await aclient.aclose()

    asyncio.run(main())


# --- errors -----------------------------------------------------------------------------


def _driver_exceptions() -> list[type[BaseException]]:
    """Every exception class redis-py defines (``redis.exceptions`` and below), found by
    walking the subclasses of what that module holds: a new one appears here by itself."""
    import redis.exceptions

    found: set[type[BaseException]] = set()
    todo = [
        value
        for value in vars(redis.exceptions).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__.startswith("redis")
    ]
    while todo:
        kind = todo.pop()
        if kind not in found and kind.__module__.startswith("redis"):
            found.add(kind)
            todo.extend(kind.__subclasses__())
    return sorted(found, key=lambda kind: f"{kind.__module__}.{kind.__qualname__}")


def _instance(kind: type[BaseException], text: str) -> BaseException:
    for args in ((text,), ("3999 127.0.0.1:7000",), ()):
        try:
            return kind(*args)
        except Exception:  # another signature
            continue
    raise AssertionError(f"cannot make a {kind.__name__}")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("topology", ["redis://:s3cret@h:1/0", "redis+cluster://:s3cret@h:1,h:2"])
def test_every_driver_exception_becomes_an_authstore_error(
    topology: str, asynchronous: bool
) -> None:
    """Each redis-py exception class is one the runner catches and turns into an
    AuthStoreError naming the redacted URL, never the password (a class redis-py adds
    that escapes the mapping fails here)."""
    from authstore.contracts.errors import AuthStoreError

    runner = backend.runner(backend.settings(StoreURL.parse(topology)), asynchronous=asynchronous)
    kinds = _driver_exceptions()
    assert len(kinds) > 20, kinds  # the walk found redis-py's hierarchy
    unmapped = []
    for kind in kinds:
        if not issubclass(kind, Exception):
            continue
        error = _instance(kind, "failed for s3cret")
        if not isinstance(error, runner.driver_errors):
            unmapped.append(f"{kind.__module__}.{kind.__qualname__} (not caught)")
            continue
        translated = runner.translate(error)
        if not isinstance(translated, AuthStoreError):
            unmapped.append(f"{kind.__qualname__} -> {type(translated).__name__}")
        elif kind.__name__ != "NoScriptError":  # NOSCRIPT: sent again as EVAL, never raised
            message = str(translated)
            if "s3cret" in message or runner.settings.display not in message:
                unmapped.append(f"{kind.__qualname__}: {message!r}")
    if asynchronous:
        asyncio.run(runner.close())
    else:
        runner.close()
    assert not unmapped, unmapped


# --- pools ------------------------------------------------------------------------------


def _named_connections(url: str, name: str) -> int:
    """Connections named ``name`` on the server(s) of a Sentinel or Cluster URL."""
    if url.startswith("redis+cluster://"):
        hosts = url.split("://", 1)[1].split("?", 1)[0].split(",")
        counts = []
        for host in hosts:
            address, port = host.rsplit(":", 1)
            with redis.Redis(address, int(port)) as admin:
                counts.append(sum(c.get("name") == name for c in admin.client_list()))
        return max(counts)
    sentinel_host = url.split("://", 1)[1].split("/", 1)[0]
    address, port = sentinel_host.rsplit(":", 1)
    service = url.split("://", 1)[1].split("/")[1].split("?")[0]
    with redis.Redis(address, int(port)) as sentinel:
        master = sentinel.sentinel_get_master_addr_by_name(service)
    with redis.Redis(master[0], int(master[1])) as admin:
        return sum(c.get("name") == name for c in admin.client_list())


@pytest.mark.parametrize("topology", ["redis_sentinel", "redis_cluster"])
def test_pool_size_bounds_and_waits_on_sentinel_and_cluster(
    topology: str, server_url: Callable[[str], str]
) -> None:
    """pool_size means the same on every topology: 200 threads on one store with
    pool_size=250 all get a connection (redis-py's own cap of 100 made the rest fail at
    once, "Too many connections"), and with pool_size=2 twenty threads wait for the two
    connections (per node) rather than fail or open more."""
    base = server_url(topology)
    joiner = "&" if "?" in base else "?"
    for pool_size, threads, hits in ((250, 200, 30), (2, 20, 10)):
        name = f"pool{uuid.uuid4().hex[:12]}"
        url = f"{base}{joiner}pool_size={pool_size}&client_name={name}&timeout=10"
        with open_cache(url, namespace=_namespace()) as cache:

            def work(cache: Any = cache, hits: int = hits) -> None:
                for _ in range(hits):
                    cache.incr("n")

            errors = errors_of(at_once_in_threads(threads, work))
            assert not errors, f"pool_size={pool_size}: {len(errors)} failed: {errors[:3]}"
            assert cache.get("n") == threads * hits
            opened = _named_connections(base, name)
            assert opened <= pool_size, f"pool_size={pool_size}: {opened} connections"
