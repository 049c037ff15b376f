"""What the contract suite does not see: URL options, indexes, round trips per
operation, rate limits computed exactly as ratelimit.step_*, the test server's racing
first upserts, expired documents left for the TTL monitor, and given clients."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

import authstore
from authstore import registry
from authstore.adapters.common import ratelimit
from authstore.adapters.mongodb.settings import parse_settings
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

from .conftest import database_of, with_option

LONG = 3600.0


class Commands(monitoring.CommandListener):
    """The commands a client sends (names, and the documents for inspection), pings
    left out."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "ping":
            # a write after 0.25 s without an answer pings first (stale connections
            # after a server restart): not the operation's own round trip
            return
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


@pytest.fixture
def url(mongo_server: str, fresh_prefix: str) -> str:
    return with_option(mongo_server, "collection_prefix", fresh_prefix)


@pytest.fixture
def listened(mongo_server: str, fresh_prefix: str) -> Iterator[tuple[str, Commands, Any]]:
    """A URL for client=, the listener, and the client (never closed by authstore)."""
    commands = Commands()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_server.split("?", 1)[0], event_listeners=[commands]
    )
    given = f"mongodb:///{database_of(mongo_server)}?collection_prefix={fresh_prefix}"
    yield given, commands, client
    client.close()


# --- settings ------------------------------------------------------------------------


def test_settings_from_the_url() -> None:
    settings = parse_settings(
        StoreURL.parse(
            "mongodb://app:s%40cret@db1:27017,db2/auth?namespace=tenant&collection_prefix=as_"
            "&pool_size=7&timeout=2.5&connect_timeout=1&replicaSet=rs0&authSource=admin"
        )
    )
    assert settings.database == "auth" and settings.namespace == "tenant"
    assert settings.collections.cache == "as_cache"
    assert settings.collections.sessions == "as_sessions"
    assert settings.pool_size == 7 and settings.timeout == 2.5
    options = settings.client_options()
    assert options["maxPoolSize"] == 7
    assert options["serverSelectionTimeoutMS"] == 2500 == options["socketTimeoutMS"]
    assert options["connectTimeoutMS"] == 1000
    assert options["replicaSet"] == "rs0" and options["authSource"] == "admin"
    assert settings.uri == "mongodb://app:s%40cret@db1:27017,db2/auth"
    assert "s@cret" not in repr(settings) and "s%40cret" not in repr(settings)
    assert "***" in settings.display and "cret" not in settings.display


def test_settings_defaults_and_srv() -> None:
    settings = parse_settings(StoreURL.parse("mongodb+srv://cluster.example.net"))
    assert settings.database == "authstore" and settings.namespace == "authstore"
    assert settings.collections.prefix == "authstore_"
    # no database in the URL: authSource stays the driver's default (admin)
    assert settings.uri == "mongodb+srv://cluster.example.net/"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://h/db?readPreference=secondary", "unknown option"),
        ("mongodb://h/db?collection_prefix=a-b", "collection_prefix"),
        ("mongodb://h/db?namespace=a:b", "namespace"),
        ("mongodb://h/db?timeout=0", "timeout"),
        ("mongodb://h/db?pool_size=0", "pool_size"),
        ("mongodb://h/bad.name", "database name"),
        ("mongodb+srv://a,b/db", "exactly one host"),
        ("mongodb:///db", "names a host"),
    ],
)
def test_settings_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_settings(StoreURL.parse(url))


def test_settings_with_a_client() -> None:
    client = object()
    given = StoreURL.parse("mongodb:///db").with_options({"client": client})
    assert parse_settings(given).client is client
    for url in ("mongodb://h/db", "mongodb:///db?pool_size=3"):
        with pytest.raises(ConfigurationError):
            parse_settings(StoreURL.parse(url).with_options({"client": client}))


def test_schemes_are_registered() -> None:
    assert {"mongodb", "mongodb+srv"} <= set(registry.known_schemes())


def test_password_never_in_errors(mongo_server: str) -> None:
    store = authstore.open_cache("mongodb://user:hunter2@127.0.0.1:1/db?timeout=0.3")
    with pytest.raises(authstore.BackendUnavailableError) as caught:
        store.get("k")
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(store)
    store.close()


# --- indexes -------------------------------------------------------------------------


def _indexes(admin: Any, collection: str) -> dict[str, dict[str, Any]]:
    return {index["name"]: index for index in admin[collection].list_indexes()}


def test_migrate_creates_indexes_idempotently(url: str, fresh_prefix: str, admin: Any) -> None:
    first = authstore.migrate(url)
    assert authstore.migrate(url) == first
    assert "expiry_ttl" in first[0]
    for name in ("cache", "sessions", "magic_links", "locks"):
        ttl = _indexes(admin, fresh_prefix + name)["expiry_ttl"]
        assert dict(ttl["key"]) == {"e": 1} and ttl["expireAfterSeconds"] == 0
    sessions = _indexes(admin, fresh_prefix + "sessions")
    assert sessions["public_id"]["unique"] is True
    assert dict(sessions["public_id"]["key"]) == {"ns": 1, "i": 1}
    assert dict(sessions["user_newest"]["key"]) == {"ns": 1, "u": 1, "c": -1, "o": -1}
    assert dict(_indexes(admin, fresh_prefix + "magic_links")["user"]["key"]) == {"ns": 1, "u": 1}


def test_first_use_creates_the_indexes(url: str, fresh_prefix: str, admin: Any) -> None:
    with authstore.open_sessions(url) as sessions:
        assert "public_id" not in _indexes(admin, fresh_prefix + "sessions")
        sessions.count("nobody")
        assert "public_id" in _indexes(admin, fresh_prefix + "sessions")


# --- round trips ---------------------------------------------------------------------


def _one_command_each(commands: Commands, calls: dict[str, Callable[[], object]]) -> None:
    counted = {}
    for name, call in calls.items():
        commands.sent.clear()
        call()
        counted[name] = commands.names()
    assert {name: len(sent) for name, sent in counted.items()} == dict.fromkeys(calls, 1), counted


def test_one_round_trip_per_single_record_operation(
    listened: tuple[str, Commands, Any],
) -> None:
    given, commands, client = listened
    cache = authstore.open_cache(given, client=client)
    sessions = authstore.open_sessions(given, client=client)
    totp = authstore.open_totp(given, client=client)
    links = authstore.open_magic_links(given, client=client)
    # first uses: indexes, and each limiter's placeholder
    cache.get("warm")
    sessions.count("warm")
    totp.load("warm")
    links.peek("warm")
    for algorithm in ("fixed_window", "sliding_window", "gcra"):
        cache.check_rate_limit("hits", 100, 60, algorithm=algorithm)
    cache.incr("n")
    new = sessions.create("alice", ttl=LONG)
    other = sessions.create("alice", ttl=LONG)
    link = links.issue("alice", "a@example.com", ttl=LONG, revoke_previous=False)
    _one_command_each(
        commands,
        {
            "set": lambda: cache.set("k", {"a": 1}, ttl=60),
            "get": lambda: cache.get("k"),
            "add": lambda: cache.add("k2", 1),
            "exists": lambda: cache.exists("k"),
            "incr": lambda: cache.incr("n", 2),
            "expire": lambda: cache.expire("k", 30),
            "ttl": lambda: cache.ttl("k"),
            "delete": lambda: cache.delete("k2"),
            "get_many": lambda: cache.get_many(["k", "n", "none"]),
            "set_many": lambda: cache.set_many({"a": 1, "b": 2}),
            "add_to_blacklist": lambda: cache.add_to_blacklist("jti", 60),
            "is_blacklisted": lambda: cache.is_blacklisted("jti"),
            "revoke_user_tokens": lambda: cache.revoke_user_tokens("alice"),
            "user_tokens_revoked_at": lambda: cache.user_tokens_revoked_at("alice"),
            "fixed_window": lambda: cache.check_rate_limit("hits", 100, 60),
            "sliding_window": lambda: cache.check_rate_limit(
                "hits", 100, 60, algorithm="sliding_window"
            ),
            "gcra": lambda: cache.check_rate_limit("hits", 100, 60, algorithm="gcra"),
            "peek_rate_limit": lambda: cache.peek_rate_limit("hits", 100, 60),
            "peek_rate_limit gcra": lambda: cache.peek_rate_limit("hits", 100, 60, "gcra"),
            "peek_rate_limits": lambda: cache.peek_rate_limits("hits", "2/hour;5/day"),
            "session create": lambda: sessions.create("bob", ttl=LONG),
            "session get": lambda: sessions.get(new.token),
            "session touch": lambda: sessions.touch(new.token, ttl=LONG),
            "session list": lambda: sessions.list("alice"),
            "session count": lambda: sessions.count("alice"),
            "session revoke": lambda: sessions.revoke(new.token),
            "session revoke_by_id": lambda: sessions.revoke_by_id(other.record.id),
            "session revoke_all": lambda: sessions.revoke_all("alice"),
            "totp save_pending": lambda: totp.save_pending("alice", b"secret"),
            "totp enable": lambda: totp.enable("alice"),
            "totp replace_backup_codes": lambda: totp.replace_backup_codes("alice", ["h1"]),
            "totp use_backup_code": lambda: totp.use_backup_code("alice", "h1"),
            "totp claim_step": lambda: totp.claim_step("alice", 5),
            "totp load": lambda: totp.load("alice"),
            "totp disable": lambda: totp.disable("alice"),
            "link issue": lambda: links.issue(
                "bob", "b@example.com", ttl=LONG, revoke_previous=False
            ),
            "link peek": lambda: links.peek(link.token),
            "link consume": lambda: links.consume(link.token),
            "link revoke_user": lambda: links.revoke_user("bob"),
        },
    )
    for store in (cache, sessions, totp, links):
        store.close()
    assert client.admin.command("ping")["ok"] == 1, "a given client is never closed"


def test_a_group_hit_is_two_round_trips(listened: tuple[str, Commands, Any]) -> None:
    """A group hit reads its document with the clock (an aggregate), then updates it
    only if unchanged; the first hit creates an expired placeholder in between (an
    aggregate over no document has no clock to return). A refused hit is the read."""
    given, commands, client = listened
    cache = authstore.open_cache(given, client=client)
    cache.get("warm")  # indexes
    sent = []
    for _ in range(4):
        commands.sent.clear()
        cache.check_rate_limits("k", "3/hour;5/day")
        sent.append(commands.names())
    assert sent == [
        ["aggregate", "update", "aggregate", "update"],
        ["aggregate", "update"],
        ["aggregate", "update"],
        ["aggregate"],
    ], sent
    cache.close()


def test_hot_paths_address_one_document_by_id(listened: tuple[str, Commands, Any]) -> None:
    """Shard-friendly: each hot-path command names its document by _id, so a cluster
    sharded on _id routes it to one shard (no scatter-gather)."""
    given, commands, client = listened
    cache = authstore.open_cache(given, client=client)
    sessions = authstore.open_sessions(given, client=client)
    cache.get("warm")
    session = sessions.create("alice", ttl=LONG)
    commands.sent.clear()
    cache.check_rate_limit("k", 5, 60)
    cache.check_rate_limit("k", 5, 60)
    cache.check_rate_limits("k", "5/minute;9/hour")
    cache.peek_rate_limits("k", "5/minute;9/hour")
    cache.peek_rate_limit("k", 5, 60)
    cache.is_blacklisted("jti")
    cache.revoke_user_tokens("alice")
    sessions.get(session.token)
    sessions.touch(session.token)
    for name, document in commands.sent:
        if name == "findAndModify":
            target = document["query"]
        elif name == "aggregate":
            target = document["pipeline"][0]["$match"]
        elif name == "update":
            target = document["updates"][0]["q"]
        else:
            raise AssertionError(f"unexpected {name}")
        assert isinstance(target.get("_id"), str), (name, target)
    cache.close()
    sessions.close()


def test_async_one_round_trip(mongo_server: str, fresh_prefix: str) -> None:
    async def scenario() -> None:
        commands = Commands()
        client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
            mongo_server.split("?", 1)[0], event_listeners=[commands]
        )
        given = f"mongodb:///{database_of(mongo_server)}?collection_prefix={fresh_prefix}"
        cache = authstore.open_async_cache(given, client=client)
        sessions = authstore.open_async_sessions(given, client=client)
        await cache.check_rate_limit("k", 5, 60, algorithm="gcra")
        created = await sessions.create("alice", ttl=LONG)
        for call in (
            lambda: cache.check_rate_limit("k", 5, 60, algorithm="gcra"),
            lambda: cache.is_blacklisted("jti"),
            lambda: sessions.get(created.token),
        ):
            commands.sent.clear()
            await call()
            assert len(commands.sent) == 1, commands.names()
        await cache.aclose()
        await sessions.aclose()
        assert (await client.admin.command("ping"))["ok"] == 1, "never closed by authstore"
        await client.close()

    asyncio.run(scenario())


# --- exact rate-limit arithmetic -----------------------------------------------------


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limits_compute_exactly_what_step_computes(url: str, algorithm: str) -> None:
    """Every hit's state equals step_* fed the previous state and the server's clock
    for that hit: same doubles, same decisions (limits and windows changing too)."""
    from authstore.adapters.common.logic import LIMITER_KINDS, RateLimitAlgorithm

    store = authstore.open_cache(url)
    ops, runner = store._logic.ops, store._runner  # type: ignore[attr-defined]
    kind = LIMITER_KINDS[RateLimitAlgorithm(algorithm)]
    key = f"{store.namespace}:{kind}:exact"
    state: Any = None
    plan = [(3, 0.2, 1)] * 6 + [(5, 0.3, 2)] * 4 + [(2, 0.1, 1)] * 4 + [(7, 0.25, 3)] * 4
    for limit, window, cost in plan:
        if algorithm == "fixed_window":
            got = runner.run(ops.fixed_window(key, limit, window, cost))
            allowed, count, end = ratelimit.step_fixed_window(state, got[-1], limit, window, cost)
            assert got[:3] == (allowed, count, end)
            state = (count, end)
        elif algorithm == "sliding_window":
            got = runner.run(ops.sliding_window(key, limit, window, cost))
            expected = ratelimit.step_sliding_window(state, got[-1], limit, window, cost)
            assert got[:4] == expected
            state = expected[1:]
        else:
            got = runner.run(ops.gcra(key, limit, window, cost))
            expected_gcra = ratelimit.step_gcra(state, got[-1], limit, window, cost)
            assert got[:3] == expected_gcra
            state = expected_gcra[1:]
    store.close()


def test_clock_is_the_servers_in_milliseconds(url: str) -> None:
    with authstore.open_cache(url) as cache:
        before = datetime.now(UTC)
        revoked = cache.revoke_user_tokens("alice")
        assert revoked.microsecond % 1000 == 0, "$$NOW has millisecond precision"
        assert abs((revoked - before).total_seconds()) < 5
        assert cache.user_tokens_revoked_at("alice") == revoked
        later = cache.revoke_user_tokens("alice", at=datetime(2000, 1, 1, tzinfo=UTC))
        assert later == revoked, "a revocation instant never moves back"


# --- racing first writes -------------------------------------------------------------


def _together(n: int, action: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * n
    barrier = threading.Barrier(n)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_first_writes_count_once(mongo_server: str, fresh_prefix: str) -> None:
    """50 clients hit fresh keys at once, five times over: every counter and limiter
    counts every hit exactly once. (The test server answers about one racing first
    upsert in fifty with no document after applying it: retrying that upsert, as one
    would for MongoDB's duplicate-key error, counts it twice.)"""
    url = with_option(mongo_server, "collection_prefix", fresh_prefix)
    stores = [authstore.open_cache(url, namespace="race") for _ in range(5)]
    for store in stores:
        store.get("warm")  # the indexes, so the race is on the documents
    for round_ in range(5):

        def hit(index: int, round_: int = round_) -> tuple[int, bool, bool]:
            store = stores[index % 5]
            return (
                store.incr(f"counter{round_}"),
                store.check_rate_limit(f"limited{round_}", 10, LONG).allowed,
                store.check_rate_limit(f"bucket{round_}", 10, LONG, algorithm="gcra").allowed,
            )

        results = _together(50, hit)
        assert not [r for r in results if isinstance(r, Exception)], results
        counts = [r[0] for r in results]  # type: ignore[index]
        assert sorted(counts) == list(range(1, 51)), round_
        assert sum(1 for r in results if r[1]) == 10  # type: ignore[index]
        assert sum(1 for r in results if r[2]) == 10  # type: ignore[index]
    revoked = _together(20, lambda i: stores[i % 5].revoke_user_tokens(f"u{i % 2}"))
    assert all(isinstance(r, datetime) for r in revoked), revoked
    for store in stores:
        store.close()


# --- expiry without the TTL monitor ---------------------------------------------------


def test_expired_documents_are_absent_before_the_ttl_monitor(
    url: str, fresh_prefix: str, admin: Any
) -> None:
    import time

    with authstore.open_cache(url) as cache, authstore.open_sessions(url) as sessions:
        cache.set("k", 1, ttl=0.2)
        cache.add_to_blacklist("jti", 0.2)
        session = sessions.create("alice", ttl=0.2)
        time.sleep(0.4)
        assert admin[fresh_prefix + "cache"].count_documents({}) == 2, "still stored"
        assert admin[fresh_prefix + "sessions"].count_documents({}) == 1
        assert cache.get("k") is None and not cache.is_blacklisted("jti")
        assert sessions.get(session.token) is None and sessions.count("alice") == 0
        assert cache.add("k", 2) is True and cache.get("k") == 2
        assert cache.purge_expired() == 1  # the blacklist entry
        assert sessions.purge_expired() == 1
        assert admin[fresh_prefix + "sessions"].count_documents({}) == 0


def test_unique_per_namespace(url: str) -> None:
    ns = uuid.uuid4().hex
    with (
        authstore.open_cache(url, namespace=ns) as one,
        authstore.open_cache(url, namespace=ns + "x") as two,
    ):
        one.set("k", 1)
        assert two.get("k") is None
