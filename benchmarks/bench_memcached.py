"""memcached: authstore against ``limits``, ``cachelib``/``aiocache`` and the raw drivers.

    python benchmarks/bench_memcached.py        # or: section() from benchmarks/run.py

On the same server, in one run:
- get / set (ttl): authstore against the raw driver doing the same round trip on the same
  entry (pymemcache ``get``/``set`` of authstore's envelope, its stored expiry checked
  and the JSON decoded; aiomcache alike; goal 1.15x), against ``cachelib.MemcachedCache`` over a pymemcache client with
  pickle serde and replies awaited (sync), and ``aiocache``'s MemcachedCache (async);
- rate limiting: authstore's fixed and sliding windows against ``limits``'
  FixedWindowRateLimiter and SlidingWindowCounterRateLimiter on its MemcachedStorage
  (sync: pymemcache; async: memcachio). ``limits`` has no moving window on memcached
  and no GCRA at all; authstore has all three, exact. A hit is gets + cas here (two
  round trips: the limiter is compared and set atomically, a refused hit changes
  nothing); ``limits``' fixed window is one ``incr`` that also counts refused hits. The
  raw-driver line replays authstore's two round trips (gets, then cas) by hand.

The pymemcache clients of the raw and cachelib lines have authstore's timeouts (3 s): a
socket with a timeout costs a poll() per read. The server comes from AUTHSTORE_TEST_MEMCACHED_URL (default 127.0.0.1:11211); keys live
in a throwaway namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.memcached.commands import memcached_key, pack

DEFAULT_URL = "memcached://127.0.0.1:11211"
GOAL = 1.15
COUNT = 1000
HITS = 2000
CALLERS = 100
PAYLOAD = {"user": "alice", "roles": ["admin"], "n": 3}
BIG = 10**9  # a limit never reached
AsyncCall = Callable[[], Awaitable[object]]


def _server() -> str:
    return os.environ.get("AUTHSTORE_TEST_MEMCACHED_URL") or DEFAULT_URL


def _host_port() -> tuple[str, int]:
    first = _server().partition("://")[2].split("?")[0].split(",")[0]
    host, _, port = first.partition(":")
    return host or "127.0.0.1", int(port or 11211)


def _envelope(ttl: float) -> bytes:
    return pack(time.time() + ttl, json.dumps(PAYLOAD, separators=(",", ":")).encode())


def _decode(raw: bytes) -> object:
    """What a reader of the envelope does: check the stored expiry, decode the JSON."""
    header, _, body = raw.partition(b"\n")
    if header != b"-" and float(header) <= time.time():
        return None
    return json.loads(body)


def _next_count(raw: bytes) -> bytes:
    header, _, body = raw.partition(b"\n")
    count, _, end = body.partition(b" ")
    return header + b"\n" + str(int(count) + 1).encode() + b" " + end


def _sync_part(namespace: str) -> tuple[list[Comparison], dict[str, float]]:
    from cachelib import MemcachedCache
    from limits import RateLimitItemPerMinute, storage, strategies
    from pymemcache import serde
    from pymemcache.client.base import Client

    host, port = _host_port()
    cache = authstore.open_cache(_server(), namespace=namespace)
    cache.set("hot", PAYLOAD, ttl=3600)
    cache.check_rate_limit("raw-limiter", BIG, 3600)
    options = {"no_delay": True, "default_noreply": False, "timeout": 3.0, "connect_timeout": 3.0}
    raw = Client((host, port), **options)
    hot, warm = memcached_key(f"{namespace}:k:hot"), memcached_key(f"{namespace}:k:warm")
    limiter_key = memcached_key(f"{namespace}:f:raw-limiter")
    reference = MemcachedCache(
        Client((host, port), serde=serde.pickle_serde, **options),
        key_prefix=f"{namespace}-cachelib:",
    )
    reference.set("hot", PAYLOAD, timeout=3600)
    limits_storage = storage.MemcachedStorage(f"memcached://{host}:{port}")
    fixed = strategies.FixedWindowRateLimiter(limits_storage)
    sliding = strategies.SlidingWindowCounterRateLimiter(limits_storage)
    item = RateLimitItemPerMinute(BIG)

    def raw_gets_cas() -> object:
        value, token = raw.gets(limiter_key)
        return raw.cas(limiter_key, _next_count(value), token, expire=3602, noreply=False)

    def get() -> object:
        return cache.get("hot")

    def put() -> object:
        return cache.set("warm", PAYLOAD, ttl=300)

    def hit() -> object:
        return cache.check_rate_limit("fixed", BIG, 60)

    plan: list[tuple[str, Callable[[], object], Callable[[], object], str, float]] = [
        ("get", get, lambda: _decode(raw.get(hot)), "raw pymemcache get + decode", GOAL),
        ("get", get, lambda: reference.get("hot"), "cachelib MemcachedCache", 1.0),
        (
            "set (ttl)",
            put,
            lambda: raw.set(warm, _envelope(300), expire=302),
            "raw pymemcache set",
            GOAL,
        ),
        (
            "set (ttl)",
            put,
            lambda: reference.set("warm", PAYLOAD, timeout=300),
            "cachelib MemcachedCache",
            1.0,
        ),
        (
            "rate limit fixed window",
            hit,
            lambda: fixed.hit(item, namespace, "fixed"),
            "limits MemcachedStorage fixed window",
            1.0,
        ),
        ("rate limit fixed window", hit, raw_gets_cas, "raw pymemcache gets + cas", GOAL),
        (
            "rate limit sliding window",
            lambda: cache.check_rate_limit("sliding", BIG, 60, algorithm="sliding_window"),
            lambda: sliding.hit(item, namespace, "sliding"),
            "limits MemcachedStorage sliding counter",
            1.0,
        ),
        (
            "rate limit gcra",
            lambda: cache.check_rate_limit("gcra", BIG, 60, algorithm="gcra"),
            raw_gets_cas,
            "raw pymemcache gets + cas (limits: none)",
            GOAL,
        ),
    ]
    results = [
        compare(f"memcached sync {name}", ours, theirs, reference_name, goal=goal, count=COUNT)
        for name, ours, theirs, reference_name, goal in plan
    ]
    started = time.perf_counter()
    for _ in range(HITS):
        cache.check_rate_limit("seq", BIG, 60)
    sequential = time.perf_counter() - started
    rates = {"sync rate limit, sequential": HITS / sequential}
    cache.close()
    raw.close()
    return results, rates


async def _async_part(namespace: str) -> tuple[list[Comparison], dict[str, float]]:
    import aiomcache
    from aiocache import MemcachedCache
    from limits import RateLimitItemPerMinute
    from limits.aio import storage, strategies

    host, port = _host_port()
    cache = authstore.open_async_cache(_server(), namespace=namespace)
    await cache.set("hot", PAYLOAD, ttl=3600)
    await cache.check_rate_limit("raw-limiter", BIG, 3600)
    raw = aiomcache.Client(host, port, pool_size=10)
    hot = memcached_key(f"{namespace}:k:hot").encode()
    warm = memcached_key(f"{namespace}:k:warm").encode()
    limiter_key = memcached_key(f"{namespace}:f:raw-limiter").encode()
    reference = MemcachedCache(endpoint=host, port=port, namespace=f"{namespace}-aiocache:")
    await reference.set("hot", PAYLOAD, ttl=3600)
    fixed = strategies.FixedWindowRateLimiter(
        storage.MemcachedStorage(f"async+memcached://{host}:{port}")
    )
    item = RateLimitItemPerMinute(BIG)

    async def raw_get() -> object:
        return _decode(await raw.get(hot))

    async def raw_gets_cas() -> object:
        value, token = await raw.gets(limiter_key)
        return await raw.cas(limiter_key, _next_count(value), token, 3602)

    def get() -> Awaitable[object]:
        return cache.get("hot")

    def put() -> Awaitable[object]:
        return cache.set("warm", PAYLOAD, ttl=300)

    def hit() -> Awaitable[object]:
        return cache.check_rate_limit("fixed", BIG, 60)

    plan: list[tuple[str, AsyncCall, AsyncCall, str, float]] = [
        ("get", get, raw_get, "raw aiomcache get + decode", GOAL),
        ("get", get, lambda: reference.get("hot"), "aiocache MemcachedCache", 1.0),
        ("set (ttl)", put, lambda: raw.set(warm, _envelope(300), 302), "raw aiomcache set", GOAL),
        (
            "set (ttl)",
            put,
            lambda: reference.set("warm", PAYLOAD, ttl=300),
            "aiocache MemcachedCache",
            1.0,
        ),
        (
            "rate limit fixed window",
            hit,
            lambda: fixed.hit(item, namespace, "fixed"),
            "limits async MemcachedStorage fixed window",
            1.0,
        ),
        ("rate limit fixed window", hit, raw_gets_cas, "raw aiomcache gets + cas", GOAL),
    ]
    results = [
        await compare_async(f"memcached async {name}", ours, theirs, label, goal=goal, count=COUNT)
        for name, ours, theirs, label, goal in plan
    ]

    async def caller(key: str, hits: int) -> int:
        return sum([bool(await cache.check_rate_limit(key, BIG, 60)) for _ in range(hits)])

    started = time.perf_counter()
    passed = await asyncio.gather(*(caller("conc", HITS // CALLERS) for _ in range(CALLERS)))
    one_key = time.perf_counter() - started
    started = time.perf_counter()
    spread = await asyncio.gather(*(caller(f"own{n}", HITS // CALLERS) for n in range(CALLERS)))
    own_keys = time.perf_counter() - started
    assert sum(passed) == sum(spread) == HITS
    rates = {
        f"async rate limit, {CALLERS} callers, one key (CAS retries)": HITS / one_key,
        f"async rate limit, {CALLERS} callers, a key each": HITS / own_keys,
    }
    await cache.aclose()
    await raw.close()
    await reference.close()
    return results, rates


def section() -> list[Comparison]:
    namespace = "bench" + uuid.uuid4().hex[:8]
    results, rates = _sync_part(namespace)
    async_results, async_rates = asyncio.run(_async_part(namespace))
    results += async_results
    rates.update(async_rates)
    for r in results:
        if r.reference.startswith(("raw", "limits", "cachelib", "aiocache")):
            rates.setdefault(r.name, 1 / r.ours)
    for name, per_second in rates.items():
        print(f"memcached {name}: about {per_second:,.0f} ops/s")
    return results


if __name__ == "__main__":
    sys.exit(report(section()))
