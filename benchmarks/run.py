"""authstore's performance goals, measured as ratios in one run.

The full report (every backend, mode and operation, raw drivers, peers, round trips,
the 1 ms comparison, charts) is ``python -m benchmarks``; this script keeps the older
per-backend sections (bench_*.py), which print their comparisons.

    python benchmarks/run.py            # every section whose backend is reachable
    python benchmarks/run.py memory     # one section

Needs the ``bench`` extra (limits, cachelib, aiocache). Goals: at least as fast
as the established libraries on the same store (ratio <= 1), at most 1.15x the
raw driver doing the same round trip, bounded memory for the in-memory store.
Exit status: the number of goals missed (0 when all are met).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore


def memory_section() -> list[Comparison]:
    """The library's own CPU cost: the memory store has no I/O, so every microsecond is
    checks, encoding, the operation generator and the lock. Goal: within 1.5x of cachelib / limits on their memory stores."""
    from aiocache import SimpleMemoryCache
    from cachelib import SimpleCache
    from limits import RateLimitItemPerMinute, storage, strategies

    results = []
    cache = authstore.open_cache("memory://")
    reference = SimpleCache(threshold=1_000_000, default_timeout=0)
    keys = itertools.count()
    payload = {"user": "alice", "roles": ["admin"], "n": 3}
    cache.set("hot", payload, ttl=300)
    reference.set("hot", payload, timeout=300)
    cache.incr("counter", 1)
    reference.set("counter", 0)
    goal = 1.5
    results.append(
        compare(
            "memory get (dict value)",
            lambda: cache.get("hot"),
            lambda: reference.get("hot"),
            "cachelib SimpleCache",
            goal=goal,
        )
    )
    results.append(
        compare(
            "memory set (dict value, ttl)",
            lambda: cache.set(f"k{next(keys) % 5000}", payload, ttl=300),
            lambda: reference.set(f"k{next(keys) % 5000}", payload, timeout=300),
            "cachelib SimpleCache",
            goal=goal,
        )
    )
    results.append(
        compare(
            "memory incr",
            lambda: cache.incr("counter", 1),
            lambda: reference.inc("counter", 1),
            "cachelib SimpleCache",
            goal=goal,
        )
    )
    memory = storage.MemoryStorage()
    fixed = strategies.FixedWindowRateLimiter(memory)
    sliding = strategies.SlidingWindowCounterRateLimiter(memory)
    plenty, one = RateLimitItemPerMinute(10**9), RateLimitItemPerMinute(1)
    cache.check_rate_limit("fixed-full", 1, 60)
    cache.check_rate_limit("sliding-full", 1, 60, algorithm="sliding_window")
    cache.check_rate_limit("gcra-full", 1, 60, algorithm="gcra")
    for peer in (fixed, sliding):
        peer.hit(one, f"peer-{type(peer).__name__}-full")
    limiters = [
        ("fixed window", "fixed_window", fixed, "limits MemoryStorage fixed-window"),
        (
            "sliding window",
            "sliding_window",
            sliding,
            "limits MemoryStorage sliding-window-counter",
        ),
        # limits has no GCRA: its fixed window is the nearest peer
        ("GCRA", "gcra", fixed, "limits MemoryStorage fixed-window (no GCRA)"),
    ]
    outcomes = [("allowed", "ok", 100_000, plenty), ("refused", "full", 1, one)]
    for label, algorithm, peer, name in limiters:
        for outcome, suffix, limit, item in outcomes:
            ours_key = f"{algorithm.split('_')[0]}-{suffix}"
            peer_key = f"peer-{type(peer).__name__}-{suffix}"
            results.append(
                compare(
                    f"memory rate limit {label}, {outcome}",
                    lambda a=algorithm, k=ours_key, n=limit: cache.check_rate_limit(
                        k, n, 60, algorithm=a
                    ),
                    lambda p=peer, i=item, k=peer_key: p.hit(i, k),
                    name,
                    goal=goal,
                )
            )

    async def async_part() -> list[Comparison]:
        acache = authstore.open_async_cache("memory://")
        aref = SimpleMemoryCache()
        await acache.set("hot", payload, ttl=300)
        await aref.set("hot", payload, ttl=300)
        return [
            await compare_async(
                "async memory get",
                lambda: acache.get("hot"),
                lambda: aref.get("hot"),
                "aiocache SimpleMemoryCache",
                goal=1.0,
            ),
            await compare_async(
                "async memory set (ttl)",
                lambda: acache.set(f"k{next(keys) % 5000}", payload, ttl=300),
                lambda: aref.set(f"k{next(keys) % 5000}", payload, ttl=300),
                "aiocache SimpleMemoryCache",
                goal=1.0,
            ),
        ]

    results += asyncio.run(async_part())
    return results


def memory_bound() -> int:
    """Keys written once with a short TTL and never read must not accumulate."""
    cache = authstore.open_cache("memory://")
    gc.collect()
    tracemalloc.start()
    written = 0
    deadline = time.monotonic() + 3.0
    peak_entries = 0
    data = cache._runner.data  # type: ignore[attr-defined]
    while time.monotonic() < deadline:
        for _ in range(1000):
            cache.set(f"once:{written}", b"x" * 100, ttl=0.2)
            written += 1
        peak_entries = max(peak_entries, len(data.values))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bounded = peak_entries < written / 3
    print(
        f"memory bound: wrote {written} keys (ttl 0.2 s, never read) in 3 s; "
        f"at most {peak_entries} live at once, peak traced memory {peak / 1e6:.1f} MB: "
        f"{'ok' if bounded else 'MISSED'}"
    )
    return 0 if bounded else 1


def sqlite_section() -> list[Comparison]:
    """authstore against sqlite3 running the very statement authstore sends, on one file.

    SQLite has no network round trip, so this shows the library's own overhead per
    operation (argument checks, encoding, the operation generator, the lock).
    """
    import json
    import sqlite3

    from authstore.contracts.values import hash_token

    folder = tempfile.mkdtemp(prefix="authstore-bench-")
    url = f"sqlite:///{folder}/bench.db"
    cache = authstore.open_cache(url)
    payload = {"user": "alice", "roles": ["admin"], "n": 3}
    cache.set("hot", payload, ttl=3600)
    raw = sqlite3.connect(f"{folder}/bench.db", isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA synchronous = NORMAL")
    full_key = "authstore:k:hot"
    select = (
        "SELECT value FROM authstore_cache WHERE cache_key = ? "
        "AND (expires_at IS NULL OR expires_at > ?)"
    )
    upsert = (
        "INSERT INTO authstore_cache (cache_key, value, epoch, expires_at) VALUES (?, ?, NULL, ?) "
        "ON CONFLICT (cache_key) DO UPDATE SET value = excluded.value, epoch = excluded.epoch, "
        "expires_at = excluded.expires_at"
    )
    encoded = json.dumps(payload, separators=(",", ":")).encode()

    def raw_get() -> object:
        row = raw.execute(select, (full_key, time.time())).fetchone()
        return json.loads(row[0])

    def raw_set() -> None:
        raw.execute(upsert, (full_key, encoded, time.time() + 3600))

    def raw_session(token_hash: str) -> object:
        row = raw.execute(
            "SELECT id, user_id, created_at, last_seen_at, expires_at, device_id, "
            "application_id, ip_address, user_agent, metadata FROM authstore_sessions "
            "WHERE namespace = ? AND token_hash = ? AND expires_at > ?",
            ("authstore", token_hash, time.time()),
        ).fetchone()
        return (row[:9], json.loads(row[9]))

    sessions = authstore.open_sessions(url)
    _, token = sessions.create("alice", ttl=3600)
    return [
        compare("sqlite get (dict value)", lambda: cache.get("hot"), raw_get, "sqlite3, same SQL"),
        compare(
            "sqlite set (dict value, ttl)",
            lambda: cache.set("hot", payload, ttl=3600),
            raw_set,
            "sqlite3, same SQL",
        ),
        compare(
            "sqlite session get",
            lambda: sessions.get(token),
            lambda: raw_session(hash_token(token)),
            "sqlite3, same lookup + decode",
        ),
    ]


def postgres_section() -> list[Comparison]:
    from bench_postgres import section

    return section()


def mysql_section() -> list[Comparison]:
    from bench_mysql import section

    return section()


def redis_section() -> list[Comparison]:
    from bench_redis import section

    return section()


def memcached_section() -> list[Comparison]:
    from bench_memcached import section

    return section()


def mongodb_section() -> list[Comparison]:
    from bench_mongodb import section

    return section()


SECTIONS: dict[str, Callable[[], list[Comparison]]] = {
    "memory": memory_section,
    "sqlite": sqlite_section,
    "postgres": postgres_section,
    "mysql": mysql_section,
    "redis": redis_section,
    "memcached": memcached_section,
    "mongodb": mongodb_section,
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    results: list[Comparison] = []
    for name in chosen:
        results += SECTIONS[name]()
    missed = report(results)
    if "memory" in chosen:
        missed += memory_bound()
    return missed


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        sys.exit(main(sys.argv[1:]))
