"""What is particular to memcached: key mapping, long and sub-second TTLs, the stores it
refuses, the servers behind the hashing, round trips per operation, CAS contention,
and the URL. Outages are in ``test_memcached_outages``."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymemcache.client.base import Client, check_key_helper
from pymemcache.client.hash import HashClient

import authstore
from authstore.adapters.memcached import ops as memcached_ops
from authstore.adapters.memcached.commands import (
    ABSOLUTE_MARGIN,
    EXPIRY_MARGIN,
    MAX_KEY_BYTES,
    REALTIME_MAXDELTA,
    exptime,
    memcached_key,
)
from authstore.adapters.memcached.runner import LOCAL
from authstore.contracts.errors import (
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedOperationError,
)
from tests.contention import at_once_in_threads, errors_of

DAY = 86400.0


def _namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


def _raw(url: str) -> Client:
    host, _, port = url.partition("://")[2].split(",")[0].partition(":")
    return Client((host, int(port or 11211)), timeout=3, connect_timeout=3, default_noreply=False)


def _in_both_modes(url: str, scenario: Callable[[Any], Any], **options: Any) -> None:
    """``scenario(store)`` on a sync store, then awaited on an async one; each in a fresh
    namespace unless ``namespace`` is given."""
    with authstore.open_cache(url, **{"namespace": _namespace(), **options}) as cache:
        outcome = scenario(cache)
        if asyncio.iscoroutine(outcome):  # a body written once: sync calls answer at once
            asyncio.run(outcome)

    async def run() -> None:
        async with authstore.open_async_cache(
            url, **{"namespace": _namespace(), **options}
        ) as cache:
            await _awaited(scenario(cache))

    asyncio.run(run())


async def _awaited(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def _fails_at_the_timeout_counting_nothing(
    cache: Any, hinder: Callable[[], Awaitable[None]], release: Callable[[], None]
) -> None:
    """A first hit on "login" (limit 2) passes; with ``hinder`` in effect the next one
    fails, unavailable, once the store's timeout (0.5 s) has passed and not much later;
    after ``release`` the limiter shows that the failed hit was not counted."""
    assert (await _awaited(cache.check_rate_limit("login", 2, 60))).allowed
    await hinder()
    began = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError):
            await _awaited(cache.check_rate_limit("login", 2, 60))
    finally:
        release()
    assert 0.5 <= time.monotonic() - began < 0.5 + 0.5
    hits = [(await _awaited(cache.check_rate_limit("login", 2, 60))).allowed for _ in "ab"]
    assert hits == [True, False], "the failed hit must not have counted"
    await _awaited(cache.reset_rate_limit("login"))


# -- keys ---------------------------------------------------------------------------------


def _accepted_by_drivers(key: str) -> None:
    check_key_helper(key, allow_unicode_keys=False)  # pymemcache's own key check
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert not any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in key), key


def test_safe_keys_are_kept_and_others_mapped() -> None:
    assert memcached_key("ns:k:login:alice") == "ns:k:login:alice"
    for tail in ["with space", "tab\t", "new\nline", "é", "ключ🔑", "x" * 300, "a#b", "\x7f"]:
        mapped = memcached_key(f"ns:k:{tail}")
        assert mapped.startswith("ns:k:#"), mapped
        _accepted_by_drivers(mapped)


def test_key_mapping_never_collides() -> None:
    """Distinct full keys give distinct memcached keys: long keys differing only at the end,
    keys around the 250-byte edge, and keys that look like another key's mapped form."""
    rng = random.Random(9)
    alphabet = "ab #:é \t~\x01"
    tails = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)}
    tails |= {"x" * n for n in range(240, 260)} | {"x" * 400 + c for c in "abc"}
    fulls = [f"ns:k:{tail}" for tail in tails]
    # inputs that spell out another input's mapped key, or its hash part alone
    fulls += [memcached_key(f) for f in fulls if "#" in memcached_key(f)][:500]
    fulls += [f"ns:k:{memcached_key(f).rpartition(':')[2]}" for f in fulls][:500]
    fulls = list(dict.fromkeys(fulls))
    mapped = [memcached_key(f) for f in fulls]
    assert len(set(mapped)) == len(fulls)
    for key in mapped:
        _accepted_by_drivers(key)


def test_look_alike_keys_stay_apart_in_the_store(memcached_url: str) -> None:
    """A key spelled like another key's mapped form ('#' and its digest) is a different
    entry: it is mapped itself (it holds a '#'), never kept as it is."""
    namespace = _namespace()
    unsafe = "ключ 🔑"
    literal = memcached_key(f"{namespace}:k:{unsafe}").partition(":k:")[2]
    assert literal.startswith("#")
    with authstore.open_cache(memcached_url, namespace=namespace) as cache:
        cache.set(unsafe, "unsafe")
        cache.set(literal, "literal")
        assert cache.get(unsafe) == "unsafe"
        assert cache.get(literal) == "literal"


# -- TTLs ---------------------------------------------------------------------------------


def test_exptime_is_relative_up_to_30_days_then_absolute() -> None:
    now = 1_800_000_000.25
    assert exptime(None, now) == 0
    assert exptime(now + 0.2, now) == 1 + EXPIRY_MARGIN  # sub-second rounds up
    assert exptime(now + 10.5, now) == 11 + EXPIRY_MARGIN
    edge = REALTIME_MAXDELTA - EXPIRY_MARGIN
    assert exptime(now + edge, now) == REALTIME_MAXDELTA
    beyond = exptime(now + 31 * DAY, now)
    assert beyond == math.ceil(now + 31 * DAY) + ABSOLUTE_MARGIN  # a Unix time


def test_ttls_over_30_days(memcached_url: str) -> None:
    """memcached reads an exptime over 30 days as a Unix time: sent as seconds it would be a
    moment in 1970 and the entry would vanish at once."""
    namespace = _namespace()
    raw = _raw(memcached_url)

    def scenario(cache: Any) -> Any:
        async def body() -> None:
            await _awaited(cache.set("k", "v", ttl=40 * DAY))
            await _awaited(cache.add_to_blacklist("jti", 60 * DAY))
            await _awaited(cache.revoke_user_tokens("u", expires_in=90 * DAY))
            assert await _awaited(cache.get("k")) == "v"
            assert await _awaited(cache.is_blacklisted("jti")) is True
            assert await _awaited(cache.user_tokens_revoked_at("u")) is not None
            left = await _awaited(cache.ttl("k"))
            assert 40 * DAY - 60 < left <= 40 * DAY
            # behind the store's back: memcached itself still holds the entries
            assert raw.get(memcached_key(f"{namespace}:k:k")) is not None
            assert raw.get(memcached_key(f"{namespace}:b:jti")) is not None
            await _awaited(cache.delete("k"))

        return body()

    _in_both_modes(memcached_url, scenario, namespace=namespace)
    raw.close()


def test_sub_second_ttls_expire_on_time_although_memcached_keeps_them(memcached_url: str) -> None:
    namespace = _namespace()
    raw = _raw(memcached_url)
    with authstore.open_cache(memcached_url, namespace=namespace) as cache:
        cache.set("k", 1, ttl=0.2)
        cache.add_to_blacklist("jti", 0.2)
        assert 0 < cache.ttl("k") <= 0.2
        time.sleep(0.3)
        assert raw.get(memcached_key(f"{namespace}:k:k")) is not None, "memcached rounds up"
        assert cache.get("k") is None and cache.exists("k") is False and cache.ttl("k") is None
        assert cache.is_blacklisted("jti") is False
        assert cache.delete("k") is False, "an expired entry is not deleted twice"
        assert cache.add("k", 2) is True, "an expired entry memcached still holds is replaced"
        assert cache.get("k") == 2 and cache.ttl("k") == math.inf
    raw.close()


# -- stores memcached does not hold -------------------------------------------------------


@pytest.mark.parametrize(
    "opener",
    [
        authstore.open_sessions,
        authstore.open_totp,
        authstore.open_magic_links,
        authstore.open_async_sessions,
        authstore.open_async_totp,
        authstore.open_async_magic_links,
    ],
)
def test_only_the_cache_opens(opener: Callable[[str], Any], memcached_url: str) -> None:
    with pytest.raises(UnsupportedOperationError) as caught:
        opener(memcached_url)
    message = str(caught.value)
    for backend in ("memory://", "sqlite://", "postgresql://", "mysql://"):
        assert backend in message
    assert "evicts" in message


# -- several servers ----------------------------------------------------------------------


def test_two_servers_share_keys_between_hashclient_and_async(
    memcached_multi_url: str, memcached_servers: list[tuple[str, int]]
) -> None:
    """A sync store over a caller's HashClient and an async store over the URL put every key
    on the same server, and the keys spread over both servers."""
    namespace = _namespace()
    given = HashClient(memcached_servers, use_pooling=True, timeout=3, connect_timeout=3)
    keys = [f"key-{n}" for n in range(40)]
    with authstore.open_cache("memcached://", client=given, namespace=namespace) as cache:
        cache.set_many({key: n for n, key in enumerate(keys)}, ttl=60)
        cache.add_to_blacklist("jti", 60)

    async def read() -> tuple[dict[str, Any], bool]:
        async with authstore.open_async_cache(memcached_multi_url, namespace=namespace) as cache:
            return await cache.get_many(keys), await cache.is_blacklisted("jti")

    found, revoked = asyncio.run(read())
    assert found == {key: n for n, key in enumerate(keys)} and revoked
    holders = []
    for host, port in memcached_servers:
        raw = Client((host, port), timeout=3)
        held = raw.get_many([memcached_key(f"{namespace}:k:{key}") for key in keys])
        holders.append(len(held))
        raw.close()
    assert sum(holders) == len(keys) and all(holders), holders
    given.close()


# -- round trips --------------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, Callable[[Any], Any], int]] = [
    ("set", lambda c: c.set("k", {"a": 1}, ttl=60), 1),
    ("get", lambda c: c.get("k"), 1),
    ("get missing", lambda c: c.get("missing"), 1),
    ("exists", lambda c: c.exists("k"), 1),
    ("ttl", lambda c: c.ttl("k"), 1),
    ("get_many", lambda c: c.get_many(["k", "missing", "n"]), 1),
    ("set_many", lambda c: c.set_many({"a": 1, "b": 2}), 1),
    ("add new", lambda c: c.add("new", 1), 1),
    ("add taken", lambda c: c.add("new", 2), 2),  # add, then gets: is it past its expiry?
    ("delete", lambda c: c.delete("new"), 2),  # get (is it live?), delete
    ("delete missing", lambda c: c.delete("new"), 1),
    ("incr new", lambda c: c.incr("n"), 1),  # swap (add mode)
    ("incr", lambda c: c.incr("n"), 1),  # swap (the CAS token this store wrote)
    ("expire", lambda c: c.expire("n", 60), 2),
    ("incr after expire", lambda c: c.incr("n"), 2),  # swap (a stale token), swap
    ("first hit", lambda c: c.check_rate_limit("rl", 2, 60), 1),  # swap (add mode)
    ("hit", lambda c: c.check_rate_limit("rl", 2, 60), 1),  # swap
    ("refused hit", lambda c: c.check_rate_limit("rl", 2, 60), 1),  # gets: nothing to write
    ("gcra hit", lambda c: c.check_rate_limit("g", 2, 60, algorithm="gcra"), 1),
    ("sliding hit", lambda c: c.check_rate_limit("s", 2, 60, algorithm="sliding_window"), 1),
    ("add_to_blacklist", lambda c: c.add_to_blacklist("jti", 60), 1),  # swap (add mode)
    ("is_blacklisted", lambda c: c.is_blacklisted("jti"), 1),
    ("revoke_user_tokens", lambda c: c.revoke_user_tokens("u"), 1),  # swap (add mode)
    ("revoke_user_tokens again", lambda c: c.revoke_user_tokens("u"), 1),  # swap
    ("user_tokens_revoked_at", lambda c: c.user_tokens_revoked_at("u"), 1),
    ("set 1.5 MB", lambda c: c.set("big", b"x" * 1_500_000), 2),  # its chunks, then itself
    ("get 1.5 MB", lambda c: c.get("big"), 2),
]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every driver call (one round trip to one server) any store makes, by method; not
    the runner's calls to no server (``LOCAL``: a turn, a pause)."""
    from authstore.adapters.memcached.aio import AsyncMemcachedRunner
    from authstore.adapters.memcached.sync import SyncMemcachedRunner

    seen: list[str] = []
    sync_call, async_call = SyncMemcachedRunner._call, AsyncMemcachedRunner._call

    def counting(self: Any, call: Any) -> Any:
        if call.server != LOCAL:
            seen.append(call.method)
        return sync_call(self, call)

    async def counting_async(self: Any, call: Any) -> Any:
        if call.server != LOCAL:
            seen.append(call.method)
        return await async_call(self, call)

    monkeypatch.setattr(SyncMemcachedRunner, "_call", counting)
    monkeypatch.setattr(AsyncMemcachedRunner, "_call", counting_async)
    return seen


def test_round_trips_per_operation(memcached_url: str, counted: list[str]) -> None:
    def scenario(cache: Any) -> Any:
        async def body() -> None:
            for name, action, expected in ROUND_TRIPS:
                counted.clear()
                await _awaited(action(cache))
                assert len(counted) == expected, (name, counted)

        return body()

    _in_both_modes(memcached_url, scenario)


# -- contention ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "kind"), [("fixed_window", "f"), ("sliding_window", "s"), ("gcra", "g")]
)
def test_cas_contention_gives_up_without_counting(
    memcached_url: str, monkeypatch: pytest.MonkeyPatch, algorithm: str, kind: str
) -> None:
    """Another client writes the limiter between every gets and cas: after CAS_ATTEMPTS the
    hit fails with BackendUnavailableError, and it was not counted."""
    monkeypatch.setattr(memcached_ops, "CAS_ATTEMPTS", 4)
    raw = _raw(memcached_url)
    namespace = _namespace()
    target = memcached_key(f"{namespace}:{kind}:login")
    writes = []

    def meddle() -> float:
        value = raw.get(target)
        if value is not None:
            raw.set(target, value, noreply=False)  # same bytes, new CAS token
            writes.append(1)
        return time.time()

    def scenario(cache: Any) -> Any:
        async def body() -> None:
            assert await _awaited(cache.check_rate_limit("login", 3, 60, 1, algorithm))
            ops = cache._logic.ops
            ops.clock = meddle
            try:
                with pytest.raises(BackendUnavailableError, match="contention"):
                    await _awaited(cache.check_rate_limit("login", 3, 60, 1, algorithm))
            finally:
                ops.clock = time.time
            hits = [
                (await _awaited(cache.check_rate_limit("login", 3, 60, 1, algorithm))).allowed
                for _ in range(3)
            ]
            assert hits == [True, True, False], "the failed hit must not have counted"
            await _awaited(cache.reset_rate_limit("login"))

        return body()

    _in_both_modes(memcached_url, scenario, namespace=namespace)
    assert len(writes) == 2 * 4, writes  # sync and async: every attempt was overtaken
    raw.close()


def test_a_write_losing_forever_gives_up_at_the_timeout(
    memcached_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client writes the limiter before every attempt, and attempts are not
    counted: the hit gives up once the store's timeout has passed since it started (its
    pauses included, none past it), and it was not counted."""
    monkeypatch.setattr(memcached_ops, "CAS_ATTEMPTS", 400)  # seconds of pauses
    raw = _raw(memcached_url)
    namespace = _namespace()
    target = memcached_key(f"{namespace}:f:login")

    def meddle() -> float:
        value = raw.get(target)
        if value is not None:
            raw.set(target, value, noreply=False)  # same bytes, new CAS token
        return time.time()

    def scenario(cache: Any) -> Any:
        ops = cache._logic.ops

        async def hinder() -> None:
            ops.clock = meddle

        def release() -> None:
            ops.clock = time.time

        return _fails_at_the_timeout_counting_nothing(cache, hinder, release)

    _in_both_modes(f"{memcached_url}?timeout=0.5", scenario, namespace=namespace)
    raw.close()


def test_a_write_waits_for_its_turn_no_longer_than_the_timeout(memcached_url: str) -> None:
    """Another operation of the store holds the key's turn and never hands it on: a hit
    waits for it no longer than the store's timeout, then fails, having counted nothing."""
    namespace = _namespace()
    target = memcached_key(f"{namespace}:f:login")

    def scenario(cache: Any) -> Any:
        turns = cache._logic.ops._turns

        async def hinder() -> None:
            assert await _awaited(turns.join(target).acquire())

        def release() -> None:
            turns.leave(target, held=True)

        return _fails_at_the_timeout_counting_nothing(cache, hinder, release)

    _in_both_modes(f"{memcached_url}?timeout=0.5", scenario, namespace=namespace)


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_many_async_callers_on_one_key_count_exactly(memcached_url: str, algorithm: str) -> None:
    """120 async callers of one store hit one limiter 20 times each (the benchmark's
    "one key" row): the writes contend for one CAS token, and every hit must still be
    answered (none fails with contention) and exactly ``limit`` allowed. Their writes
    took 8 attempts each on average and some gave up after 256 (or timed out) when every
    lost write retried at once; now they take turns in the store."""
    callers, hits, limit = 120, 20, 1_800
    namespace = _namespace()

    async def scenario() -> list[Any]:
        url = f"{memcached_url}?pool_size=10"
        async with authstore.open_async_cache(url, namespace=namespace) as cache:

            async def caller() -> list[bool]:
                return [
                    (await cache.check_rate_limit("hot", limit, 3600, 1, algorithm)).allowed
                    for _ in range(hits)
                ]

            outcomes = await asyncio.gather(
                *(caller() for _ in range(callers)), return_exceptions=True
            )
            await cache.reset_rate_limit("hot")
            return outcomes

    outcomes = asyncio.run(scenario())
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert not errors, f"{len(errors)} callers failed, the first with {errors[0]!r}"
    assert sum(sum(allowed) for allowed in outcomes) == limit


def test_many_threads_on_one_key_count_exactly(memcached_url: str) -> None:
    """The same race among threads sharing one sync store."""
    threads, hits, limit = 24, 25, 450
    with authstore.open_cache(memcached_url, namespace=_namespace()) as cache:
        outcomes = at_once_in_threads(
            threads,
            lambda: [cache.check_rate_limit("hot", limit, 3600).allowed for _ in range(hits)],
        )
        cache.reset_rate_limit("hot")
    assert not errors_of(outcomes), errors_of(outcomes)[0]
    assert sum(sum(allowed) for allowed in outcomes) == limit


# -- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "words"),
    [
        ("memcached://user:secret@127.0.0.1:11211", {}, "authentication"),
        ("memcached://127.0.0.1:11211/db", {}, "no path"),
        ("memcached://127.0.0.1:11211,127.0.0.1", {}, "twice"),
        ("memcached://127.0.0.1?timeout=0", {}, "timeout"),
        ("memcached://127.0.0.1?pool_size=0", {}, "pool_size"),
        ("memcached://127.0.0.1?prefix=x", {}, "unknown option"),
        ("memcached://127.0.0.1?namespace=a:b", {}, "namespace"),
        ("memcached://127.0.0.1", {"client": object()}, "not both"),
        ("memcached://?pool_size=3", {"client": object()}, "configure them on your client"),
        ("memcached://", {"client": object()}, "pymemcache Client"),
    ],
)
def test_bad_urls(url: str, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        authstore.open_cache(url, **options)
    assert "secret" not in str(caught.value)


def test_async_client_must_be_aiomcache() -> None:
    with pytest.raises(ConfigurationError, match="aiomcache"):
        authstore.open_async_cache("memcached://", client=object())


def test_given_clients_are_used_not_closed(memcached_url: str) -> None:
    import aiomcache

    namespace = _namespace()
    raw = _raw(memcached_url)
    with authstore.open_cache("memcached://", client=raw, namespace=namespace) as cache:
        cache.set("k", "v")
    assert raw.get(memcached_key(f"{namespace}:k:k")) is not None, "the client still works"

    async def scenario() -> Any:
        host, port = raw.server
        given = aiomcache.Client(host, port)
        async with authstore.open_async_cache(
            "memcached://", client=given, namespace=namespace
        ) as c:
            value = await c.get("k")
        assert await given.get(memcached_key(f"{namespace}:k:k").encode()) is not None
        await given.close()
        return value

    assert asyncio.run(scenario()) == "v"
    raw.close()


# -- drivers ------------------------------------------------------------------------------


def _python(code: str) -> str:
    import subprocess
    import sys
    import textwrap

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def test_the_entry_point_imports_no_driver() -> None:
    out = _python(
        """
        import sys
        import authstore.adapters.memcached
        from authstore import registry
        registry.backend_for("memcached://127.0.0.1")
        print("DRIVERS", sorted(m for m in ("pymemcache", "aiomcache") if m in sys.modules))
        """
    )
    assert "DRIVERS []" in out, out


@pytest.mark.parametrize(
    ("driver", "opener"), [("pymemcache", "open_cache"), ("aiomcache", "open_async_cache")]
)
def test_a_missing_driver_names_the_extra(driver: str, opener: str) -> None:
    out = _python(
        f"""
        import sys
        sys.modules[{driver!r}] = None  # as if it were not installed
        import authstore
        try:
            authstore.{opener}("memcached://127.0.0.1")
        except authstore.MissingDriverError as error:
            print("MISSING", error)
        """
    )
    assert "MISSING" in out and 'pip install "authstore[memcached]"' in out, out


# -- fork ---------------------------------------------------------------------------------


def test_a_forked_child_gets_its_own_connections(memcached_url: str) -> None:
    """A store used before a fork (an app server's preloading) and then in both processes:
    sharing the parent's socket, each would read replies meant for the other."""
    import os

    with authstore.open_cache(memcached_url, namespace=_namespace()) as cache:
        cache.set("mine", "parent")
        cache.set("theirs", "child")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report how many reads were right, then leave at once
            right = 0
            try:
                right = sum(cache.get("theirs") == "child" for _ in range(300))
            finally:
                os.write(write_end, str(right).encode())
                os._exit(0)
        os.close(write_end)
        parent_right = sum(cache.get("mine") == "parent" for _ in range(300))
        child_right = int(os.read(read_end, 100) or b"0")
        os.close(read_end)
        os.waitpid(pid, 0)
    assert (parent_right, child_right) == (300, 300)
