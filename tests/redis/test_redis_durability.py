"""``durability=replicated`` on Redis: every security write goes with ``WAIT`` on its
connection, and is acknowledged only once enough replicas have it.

On private servers only (never the shared ones): a master with a replica (the Sentinel
topology's two servers, asked directly and through the sentinel), a lone server and a
three-master cluster without replicas. ``INFO commandstats`` counts the WAITs each
server ran: one per security write, none per other operation, none without the option.
The failover that this guards against is tests/redis/test_redis_failover_durability.py.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from authstore import (
    BackendUnavailableError,
    ConfigurationError,
    open_async_cache,
    open_async_magic_links,
    open_async_sessions,
    open_async_totp,
    open_cache,
    open_magic_links,
    open_sessions,
    open_totp,
)
from authstore.adapters.redis import ops as redis_ops
from authstore.adapters.redis.settings import parse_settings
from authstore.registry import StoreURL
from tests.servers.redis_topology import (
    PrivateSentinel,
    RedisProcess,
    private_cluster,
    private_redis,
    private_sentinel,
)

pytestmark = pytest.mark.timeout(120)

SECURITY_WRITES = {
    "RedisCacheOps": {"raise_to"},
    "RedisSessionOps": {"create", "revoke", "revoke_by_id", "revoke_all"},
    "RedisTotpOps": {"enable", "disable", "replace_backup_codes", "use_backup_code", "claim_step"},
    "RedisMagicLinkOps": {"issue", "consume", "revoke_user"},
}
"""What a failover must not undo: a revocation (token, user, session, link), a consumed
link or backup code, a claimed TOTP step, a TOTP enabled or disabled, backup codes
replaced (the old ones revoked), a session created (its ``max_sessions`` eviction
revokes others), a link issued (``revoke_previous`` revokes the user's others)."""

MAYBE = "may still have happened on the primary"


def _namespace() -> str:
    return "d" + uuid.uuid4().hex[:12]


def _with(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


def waits(node: RedisProcess) -> int:
    """How many WAIT commands ``node`` ran so far."""
    stats = node.execute("INFO", "commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


@pytest.fixture(scope="module")
def pair() -> Iterator[PrivateSentinel]:
    """A master, its replica and a sentinel, private to this module."""
    with private_sentinel() as topology:
        yield topology


# --------------------------------------------------------------------------- settings


def _settings(url: str) -> Any:
    return parse_settings(StoreURL.parse(url))


def test_durability_options() -> None:
    plain = _settings("redis://127.0.0.1:6379/0")
    assert plain.replicas == 0
    one = _settings("redis://127.0.0.1:6379/0?durability=replicated")
    assert (one.replicas, one.replica_timeout) == (1, 2.5)
    two = _settings(
        "redis+sentinel://127.0.0.1:26379/m?durability=replicated&replicas=2"
        "&replica_timeout=0.5&timeout=1"
    )
    assert (two.replicas, two.replica_timeout) == (2, 0.5)
    assert _settings("redis://h/0?durability=primary").replicas == 0
    for bad in (
        "durability=sync",
        "replicas=1",  # without durability=replicated
        "replica_timeout=1",
        "durability=replicated&replicas=0",
        "durability=replicated&replicas=x",
        "durability=replicated&timeout=1&replica_timeout=1",  # WAIT must answer in time
        "durability=replicated&replica_timeout=0.0001",  # WAIT n 0 would wait forever
    ):
        with pytest.raises(ConfigurationError):
            _settings(f"redis://127.0.0.1:6379/0?{bad}")


def test_security_writes_are_the_marked_ops() -> None:
    """The ops marked ``security_write`` are the expected ones (none dropped, none
    added unnoticed)."""
    marked = {
        name: {
            method
            for method, value in inspect.getmembers(kind, inspect.isfunction)
            if getattr(value, "security_write", False)
        }
        for name, kind in vars(redis_ops).items()
        if inspect.isclass(kind) and name.startswith("Redis")
    }
    assert {name: found for name, found in marked.items() if found} == SECURITY_WRITES


# --------------------------------------------------------------------------- WAIT counted


def _steps(cache: Any, sessions: Any, totp: Any, links: Any) -> list[tuple[str, int, Any]]:
    """(name, WAITs it must send, call) in order, one store of each kind; the calls
    return None or an awaitable."""
    user, other = "u-" + uuid.uuid4().hex[:8], "v-" + uuid.uuid4().hex[:8]
    state: dict[str, Any] = {}

    def keep(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
        async def later(awaitable: Any) -> None:
            state[name] = await awaitable

        def run() -> Any:
            value = call()
            if inspect.isawaitable(value):
                return later(value)
            state[name] = value
            return None

        return run

    return [
        ("add_to_blacklist", 1, lambda: cache.add_to_blacklist("jti", 600)),
        ("is_blacklisted", 0, lambda: cache.is_blacklisted("jti")),
        ("revoke_user_tokens", 1, lambda: cache.revoke_user_tokens(user, expires_in=600)),
        ("user_tokens_revoked_at", 0, lambda: cache.user_tokens_revoked_at(user)),
        ("remove_from_blacklist", 0, lambda: cache.remove_from_blacklist("jti")),
        ("set", 0, lambda: cache.set("k", b"v", 60)),
        ("check_rate_limit", 0, lambda: cache.check_rate_limit("login", 5, 60)),
        ("session create", 1, keep("s1", lambda: sessions.create(user, ttl=600))),
        ("session create 2", 1, keep("s2", lambda: sessions.create(user, ttl=600))),
        ("session create 3", 1, keep("s3", lambda: sessions.create(user, ttl=600))),
        ("session get", 0, lambda: sessions.get(state["s1"].token)),
        ("session touch", 0, lambda: sessions.touch(state["s1"].token, ttl=900)),
        ("session list", 0, lambda: sessions.list(user)),
        ("session revoke", 1, lambda: sessions.revoke(state["s1"].token)),
        ("session revoke_by_id", 1, lambda: sessions.revoke_by_id(state["s2"].record.id)),
        ("session revoke_all", 1, lambda: sessions.revoke_all(user)),
        ("totp save_pending", 0, lambda: totp.save_pending(user, b"x" * 20)),
        ("totp enable", 1, lambda: totp.enable(user)),
        ("totp replace_backup_codes", 1, lambda: totp.replace_backup_codes(user, ["c1", "c2"])),
        ("totp use_backup_code", 1, lambda: totp.use_backup_code(user, "c1")),
        ("totp claim_step", 1, lambda: totp.claim_step(user, 1000)),
        ("totp load", 0, lambda: totp.load(user)),
        ("totp disable", 1, lambda: totp.disable(user)),
        ("link issue", 1, keep("l1", lambda: links.issue(other, "a@example.com", ttl=600))),
        ("link peek", 0, lambda: links.peek(state["l1"].token)),
        ("link consume", 1, lambda: links.consume(state["l1"].token)),
        ("link issue 2", 1, lambda: links.issue(other, "a@example.com", ttl=600)),
        ("link revoke_user", 1, lambda: links.revoke_user(other)),
    ]


def _stores(url: str, asynchronous: bool) -> list[Any]:
    namespace = _namespace()
    openers = (
        (open_async_cache, open_async_sessions, open_async_totp, open_async_magic_links)
        if asynchronous
        else (open_cache, open_sessions, open_totp, open_magic_links)
    )
    return [opener(url, namespace=namespace) for opener in openers]


def _count_waits(url: str, master: RedisProcess, expect_waits: bool) -> None:
    """Sync and async: each step sends as many WAITs as it must (none without the
    option), on ``master``, once the server knows every script (after a NOSCRIPT, the
    script goes again with a WAIT of its own)."""

    def check(name: str, expected: int, before: int) -> None:
        sent = waits(master) - before
        assert sent == (expected if expect_waits else 0), f"{name}: {sent} WAIT(s)"

    stores = _stores(url, asynchronous=False)
    try:
        for _, _, call in _steps(*stores):  # the server learns every script (no NOSCRIPT)
            call()
        for name, expected, call in _steps(*stores):
            before = waits(master)
            call()
            check(name, expected, before)
    finally:
        for store in stores:
            store.close()

    async def main() -> None:
        stores = _stores(url, asynchronous=True)
        try:
            for name, expected, call in _steps(*stores):
                before = waits(master)
                await call()
                check(name, expected, before)
        finally:
            for store in stores:
                await store.aclose()

    asyncio.run(main())


def test_every_security_write_waits_for_its_replica(pair: PrivateSentinel) -> None:
    _count_waits(_with(pair.master.url, "durability=replicated"), pair.master, True)


def test_through_the_sentinel(pair: PrivateSentinel) -> None:
    _count_waits(_with(pair.url, "durability=replicated"), pair.master, True)


def test_without_the_option_nothing_waits(pair: PrivateSentinel) -> None:
    _count_waits(pair.url, pair.master, False)


def test_an_acknowledged_revocation_is_on_the_replica(pair: PrivateSentinel) -> None:
    namespace = _namespace()
    url = _with(pair.url, "durability=replicated")
    with open_cache(url, namespace=namespace) as cache:
        for index in range(50):
            cache.add_to_blacklist(f"j{index}", 600)
            assert pair.replica.execute("EXISTS", f"{namespace}:b:j{index}") == 1


def test_a_missing_script_goes_again_and_still_waits(pair: PrivateSentinel) -> None:
    url = _with(pair.master.url, "durability=replicated")
    with open_cache(url, namespace=_namespace()) as cache:
        cache.add_to_blacklist("first", 600)
        pair.master.execute("SCRIPT", "FLUSH")
        before = waits(pair.master)
        cache.add_to_blacklist("second", 600)  # EVALSHA: NOSCRIPT, then EVAL
        assert waits(pair.master) - before == 2
        assert cache.is_blacklisted("second")


# --------------------------------------------------------------------------- too few


def _shortfall(url: str) -> None:
    """Sync and async: a security write fewer replicas acknowledged than asked raises
    BackendUnavailableError saying it may have happened, and it did, on the primary."""
    namespace = _namespace()
    with open_cache(url, namespace=namespace) as cache:
        with pytest.raises(BackendUnavailableError, match=MAYBE):
            cache.add_to_blacklist("jti", 600)
        assert cache.is_blacklisted("jti")
        cache.set("plain", b"1")  # not a security write: no WAIT, no error

    async def main() -> None:
        cache = open_async_cache(url, namespace=namespace)
        try:
            with pytest.raises(BackendUnavailableError, match=MAYBE):
                await cache.revoke_user_tokens("alice")
            assert await cache.user_tokens_revoked_at("alice") is not None
        finally:
            await cache.aclose()

    asyncio.run(main())


def test_fewer_replicas_than_asked_raise(pair: PrivateSentinel) -> None:
    _shortfall(_with(pair.url, "durability=replicated&replicas=2&replica_timeout=0.1"))


def test_a_server_without_replicas_raises() -> None:
    with private_redis() as node:
        _shortfall(_with(node.url, "durability=replicated&replica_timeout=0.1"))


def test_cluster_waits_on_the_node_that_took_the_write() -> None:
    """A cluster's WAIT goes with the write, to the node holding the key (a keyless
    WAIT would go to every master): one WAIT there, none elsewhere. These masters have
    no replica, so the write raises."""
    with private_cluster() as cluster:
        namespace = _namespace()
        url = _with(cluster.url, "durability=replicated&replica_timeout=0.1")
        with open_cache(url, namespace=namespace) as cache:
            learnt: set[int] = set()  # a node's first EVALSHA is NOSCRIPT: EVAL, WAIT again
            for index in range(8):
                jti = f"j{index}"
                owner = cluster.owner_of(cluster.slot_of(f"{namespace}:b:{jti}"))
                before = {node.port: waits(node) for node in cluster.nodes}
                with pytest.raises(BackendUnavailableError, match=MAYBE):
                    cache.add_to_blacklist(jti, 600)
                after = {node.port: waits(node) for node in cluster.nodes}
                sent = {port: after[port] - before[port] for port in after}
                once = 1 if owner.port in learnt else 2
                learnt.add(owner.port)
                assert sent == {node.port: once if node is owner else 0 for node in cluster.nodes}
                assert cache.is_blacklisted(jti)


def test_cluster_a_write_redirected_from_its_wait_is_not_acknowledged() -> None:
    """After resharding, a client with the old slot map sends the write and its WAIT to
    the old owner: the write is redirected (MOVED) to the new owner, its WAIT is not, and
    would count another connection's writes. The store notices the slot moved and does
    not acknowledge; the next write goes, with its WAIT, to the new owner."""
    with private_cluster() as cluster:
        namespace = _namespace()
        url = _with(cluster.url, "durability=replicated&replica_timeout=0.1")
        with open_cache(url, namespace=namespace) as cache:
            slot = cluster.slot_of(f"{namespace}:b:jti")
            owner = cluster.owner_of(slot)
            with pytest.raises(BackendUnavailableError, match=MAYBE):
                cache.add_to_blacklist("jti", 600)  # the client learns the slot map
            new_owner = next(node for node in cluster.nodes if node is not owner)
            cluster.migrate_slot(slot, new_owner)
            before = waits(new_owner)
            with pytest.raises(BackendUnavailableError, match="slot moved"):
                cache.add_to_blacklist("jti", 900)
            with pytest.raises(BackendUnavailableError, match=MAYBE):
                cache.add_to_blacklist("jti", 900)
            assert waits(new_owner) > before
            assert cache.is_blacklisted("jti")
