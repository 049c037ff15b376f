"""Redis: authstore against redis-py doing the same round trip, and against the peers.

    python benchmarks/bench_redis.py        # or: python benchmarks/run.py redis

On one server (AUTHSTORE_TEST_REDIS_URL, default redis://127.0.0.1:6379/15), in one
run, interleaved rounds:
- the raw driver doing the same round trip: redis-py's GET/SET/EXISTS, or EVALSHA of
  the very script authstore sends (same keys, same arguments), decoding what it reads
  the way an application would (JSON). Goal: at most 1.15x;
- the peers, same operation on the same server: ``limits`` RedisStorage (fixed window
  and sliding-window counter, sync and async with redis-py), ``cachelib`` RedisCache and
  ``aiocache`` RedisCache (get/set). Goal: at most 1.0x. Peers run with their defaults
  (cachelib and aiocache pickle values; authstore checks and JSON-encodes them).
Then throughput: check_rate_limit and is_blacklisted, sequential sync against 100
concurrent async callers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.redis.commands import lua
from authstore.contracts.records import JSONValue

DEFAULT_URL = "redis://127.0.0.1:6379/15"
RAW_GOAL = 1.15
PEER_GOAL = 1.0
COUNT = 2000
CALLERS = 100
HITS = 4000
PAYLOAD: dict[str, JSONValue] = {"user": "alice", "roles": ["admin"], "n": 3}
BIG = 10**9


def _url() -> str:
    return os.environ.get("AUTHSTORE_TEST_REDIS_URL") or DEFAULT_URL


def _host_port_db(url: str) -> tuple[str, int, int]:
    from authstore.adapters.redis.settings import parse_settings
    from authstore.registry import StoreURL

    settings = parse_settings(StoreURL.parse(url))
    (host, port), *_ = settings.hosts
    return host, port, settings.db


def _sync_part(url: str, namespace: str) -> list[Comparison]:
    import redis
    from cachelib import RedisCache
    from limits import RateLimitItemPerMinute, storage, strategies

    host, port, db = _host_port_db(url)
    cache = authstore.open_cache(url, namespace=namespace)
    sessions = authstore.open_sessions(url, namespace=namespace)
    raw = redis.Redis(host=host, port=port, db=db)
    cache.set("hot", PAYLOAD, ttl=3600)
    cache.add_to_blacklist("jti", 3600)
    token = sessions.create("alice", ttl=3600).token

    def raw_session(secret: str) -> object:
        """What an application does by hand: hash the token, run the script, decode."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        row = raw.evalsha(get_session.sha, 1, session_tag + "seq", session_tag, digest)
        return row[0], json.loads(row[9])  # type: ignore[index]

    hot, jti = f"{namespace}:k:hot", f"{namespace}:b:jti"
    fixed, sliding = lua("fixed_window"), lua("sliding_window")
    get_session = lua("session_get")
    session_tag = f"{{{namespace}:sessions}}:"
    results = [
        compare(
            "redis sync get (dict value)",
            lambda: cache.get("hot"),
            lambda: json.loads(raw.get(hot)),  # type: ignore[arg-type]
            "redis-py GET + json.loads",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync set (ttl)",
            lambda: cache.set("warm", PAYLOAD, ttl=300),
            lambda: raw.set(f"{namespace}:k:warm", json.dumps(PAYLOAD), px=300_000),
            "redis-py SET PX + json.dumps",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync is_blacklisted",
            lambda: cache.is_blacklisted("jti"),
            lambda: raw.exists(jti) > 0,
            "redis-py EXISTS",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync rate limit fixed window",
            lambda: cache.check_rate_limit("login", BIG, 60),
            lambda: raw.evalsha(fixed.sha, 1, f"{namespace}:f:raw", BIG, "60000", 1),
            "redis-py EVALSHA (same script)",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync session get",
            lambda: sessions.get(token),
            lambda: raw_session(token),
            "redis-py EVALSHA (same script) + sha256 + json.loads",
            goal=RAW_GOAL,
            count=COUNT,
        ),
    ]
    raw.script_load(fixed.source)
    raw.script_load(sliding.source)
    raw.script_load(get_session.source)

    peer = RedisCache(host=host, port=port, db=db, key_prefix=f"{namespace}:cachelib:")
    peer.set("hot", PAYLOAD, timeout=3600)
    results += [
        compare(
            "redis sync get (dict value)",
            lambda: cache.get("hot"),
            lambda: peer.get("hot"),
            "cachelib RedisCache",
            goal=PEER_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync set (ttl)",
            lambda: cache.set("warm", PAYLOAD, ttl=300),
            lambda: peer.set("warm", PAYLOAD, timeout=300),
            "cachelib RedisCache",
            goal=PEER_GOAL,
            count=COUNT,
        ),
    ]
    limits_storage = storage.RedisStorage(f"redis://{host}:{port}/{db}", key_prefix=namespace)
    item = RateLimitItemPerMinute(BIG)
    fixed_peer = strategies.FixedWindowRateLimiter(limits_storage)
    sliding_peer = strategies.SlidingWindowCounterRateLimiter(limits_storage)
    moving_peer = strategies.MovingWindowRateLimiter(limits_storage)
    small = RateLimitItemPerMinute(1000)
    results += [
        compare(
            "redis sync rate limit fixed window",
            lambda: cache.check_rate_limit("login", BIG, 60),
            lambda: fixed_peer.hit(item, "login"),
            "limits RedisStorage fixed-window",
            goal=PEER_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync rate limit sliding window",
            lambda: cache.check_rate_limit("s", BIG, 60, algorithm="sliding_window"),
            lambda: sliding_peer.hit(item, "s"),
            "limits RedisStorage sliding-window-counter",
            goal=PEER_GOAL,
            count=COUNT,
        ),
        compare(
            "redis sync rate limit sliding window",
            lambda: cache.check_rate_limit("m", 1000, 60, algorithm="sliding_window"),
            lambda: moving_peer.hit(small, "m"),
            "limits RedisStorage moving-window",
            goal=PEER_GOAL,
            count=COUNT,
        ),
    ]
    cache.close()
    sessions.close()
    raw.close()
    return results


async def _async_part(url: str, namespace: str) -> list[Comparison]:
    import redis.asyncio
    from aiocache import RedisCache
    from limits import RateLimitItemPerMinute
    from limits.aio import storage, strategies

    host, port, db = _host_port_db(url)
    cache = authstore.open_async_cache(url, namespace=namespace)
    raw = redis.asyncio.Redis(host=host, port=port, db=db)
    await cache.set("hot", PAYLOAD, ttl=3600)
    await cache.add_to_blacklist("jti", 3600)
    hot, jti = f"{namespace}:k:hot", f"{namespace}:b:jti"
    fixed = lua("fixed_window")
    await raw.script_load(fixed.source)

    async def raw_get() -> object:
        return json.loads(await raw.get(hot))  # type: ignore[arg-type]

    async def raw_exists() -> bool:
        return bool(await raw.exists(jti))

    async def raw_set() -> object:
        return await raw.set(f"{namespace}:k:warm", json.dumps(PAYLOAD), px=300_000)

    results = [
        await compare_async(
            "redis async get (dict value)",
            lambda: cache.get("hot"),
            raw_get,
            "redis.asyncio GET + json.loads",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        await compare_async(
            "redis async set (ttl)",
            lambda: cache.set("warm", PAYLOAD, ttl=300),
            raw_set,
            "redis.asyncio SET PX + json.dumps",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        await compare_async(
            "redis async is_blacklisted",
            lambda: cache.is_blacklisted("jti"),
            raw_exists,
            "redis.asyncio EXISTS",
            goal=RAW_GOAL,
            count=COUNT,
        ),
        await compare_async(
            "redis async rate limit fixed window",
            lambda: cache.check_rate_limit("login", BIG, 60),
            lambda: raw.evalsha(fixed.sha, 1, f"{namespace}:f:raw", BIG, "60000", 1),
            "redis.asyncio EVALSHA (same script)",
            goal=RAW_GOAL,
            count=COUNT,
        ),
    ]
    peer = RedisCache(endpoint=host, port=port, db=db, namespace=f"{namespace}:aiocache")
    await peer.set("hot", PAYLOAD, ttl=3600)
    results += [
        await compare_async(
            "redis async get (dict value)",
            lambda: cache.get("hot"),
            lambda: peer.get("hot"),
            "aiocache RedisCache",
            goal=PEER_GOAL,
            count=COUNT,
        ),
        await compare_async(
            "redis async set (ttl)",
            lambda: cache.set("warm", PAYLOAD, ttl=300),
            lambda: peer.set("warm", PAYLOAD, ttl=300),
            "aiocache RedisCache",
            goal=PEER_GOAL,
            count=COUNT,
        ),
    ]
    limits_storage = storage.RedisStorage(
        f"async+redis://{host}:{port}/{db}", implementation="redispy", key_prefix=namespace
    )
    item = RateLimitItemPerMinute(BIG)
    fixed_peer = strategies.FixedWindowRateLimiter(limits_storage)
    sliding_peer = strategies.SlidingWindowCounterRateLimiter(limits_storage)
    results += [
        await compare_async(
            "redis async rate limit fixed window",
            lambda: cache.check_rate_limit("login", BIG, 60),
            lambda: fixed_peer.hit(item, "login"),
            "limits async RedisStorage fixed-window",
            goal=PEER_GOAL,
            count=COUNT,
        ),
        await compare_async(
            "redis async rate limit sliding window",
            lambda: cache.check_rate_limit("s", BIG, 60, algorithm="sliding_window"),
            lambda: sliding_peer.hit(item, "s"),
            "limits async RedisStorage sliding-window-counter",
            goal=PEER_GOAL,
            count=COUNT,
        ),
    ]
    await cache.aclose()
    await raw.aclose()
    await peer.close()
    return results


def _throughput(url: str, namespace: str) -> list[str]:
    """ops/s sequential sync against 100 concurrent async callers, same operations."""
    lines = []
    calls: dict[str, tuple[Callable[[Any, int], Any], Callable[[Any, int], Awaitable[Any]]]] = {
        "check_rate_limit": (
            lambda c, i: c.check_rate_limit(f"user{i % 100}", BIG, 60),
            lambda c, i: c.check_rate_limit(f"user{i % 100}", BIG, 60),
        ),
        "is_blacklisted": (
            lambda c, i: c.is_blacklisted(f"jti{i % 100}"),
            lambda c, i: c.is_blacklisted(f"jti{i % 100}"),
        ),
    }
    with authstore.open_cache(url, namespace=namespace) as cache:
        for name, (sync_call, _) in calls.items():
            started = time.perf_counter()
            for i in range(HITS):
                sync_call(cache, i)
            sync_rate = HITS / (time.perf_counter() - started)

            async def concurrent(call: Callable[[Any, int], Awaitable[Any]]) -> float:
                store = authstore.open_async_cache(url, namespace=namespace)
                await call(store, 0)
                queue = iter(range(HITS))

                async def worker() -> None:
                    for i in queue:
                        await call(store, i)

                began = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(CALLERS)))
                rate = HITS / (time.perf_counter() - began)
                await store.aclose()
                return rate

            async_rate = asyncio.run(concurrent(calls[name][1]))
            lines.append(
                f"redis {name}: {sync_rate:,.0f} ops/s sequential sync, "
                f"{async_rate:,.0f} ops/s with {CALLERS} async callers "
                f"({async_rate / sync_rate:.1f}x)"
            )
    return lines


def _cleanup(url: str, namespace: str) -> None:
    import redis

    host, port, db = _host_port_db(url)
    client = redis.Redis(host=host, port=port, db=db)
    for pattern in (f"{namespace}*", f"{{{namespace}*", f"LIMITS*{namespace}*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()


def section() -> list[Comparison]:
    url, namespace = _url(), "bench" + uuid.uuid4().hex[:8]
    try:
        results = _sync_part(url, namespace)
        results += asyncio.run(_async_part(url, namespace))
        for line in _throughput(url, namespace):
            print(line)
        return results
    finally:
        _cleanup(url, namespace)


if __name__ == "__main__":
    sys.exit(report(section()))
