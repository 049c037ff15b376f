"""MongoDB: authstore against ``limits``' MongoDB storage and against raw pymongo doing
the same command, on the same server in one run.

    python benchmarks/bench_mongodb.py        # or: section() from benchmarks/run.py

- Rate limiting: authstore's fixed window against ``limits`` FixedWindowRateLimiter,
  authstore's sliding window (and GCRA) against ``limits`` MovingWindowRateLimiter,
  both over ``limits.storage.MongoDBStorage`` (and its async twin over motor). Goal:
  at least as fast (ratio <= 1).
- Raw driver: pymongo (sync) and AsyncMongoClient (async) sending the very command
  authstore sends (captured from the operation, not retyped) with a plain
  ``database.command``, decoding what it reads the way authstore's records need
  (session get: the metadata JSON). Goal: at most 1.15x.

The server comes from AUTHSTORE_TEST_MONGODB_URL (default: the local test server);
collections and the limits database get throwaway names, dropped at the end (the
wire-compatible test server slows down as its data grows).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Comparison, compare, compare_async, report

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.mongodb.commands import Command

DEFAULT_URL = "mongodb://127.0.0.1:27017/authstore_test"
GOAL = 1.15
COUNT = 200
ROUNDS = 5
LIMIT = 10**9
WINDOW = 60


def _server() -> str:
    return os.environ.get("AUTHSTORE_TEST_MONGODB_URL") or DEFAULT_URL


def _address(server: str) -> str:
    return server.split("?", 1)[0].rsplit("/", 1)[0]


def _database(server: str) -> str:
    return server.split("?", 1)[0].rsplit("/", 1)[1] or "authstore"


def _command(op: Op[Any]) -> dict[str, Any]:
    """The first command an operation sends (all measured ones send exactly one)."""
    command = next(op)
    op.close()
    assert isinstance(command, Command)
    return command.document


def _captured(cache: Any, sessions: Any, token: str) -> dict[str, dict[str, Any]]:
    logic, people = cache._logic, sessions._logic
    return {
        "fixed": _command(logic.check_rate_limit("login", LIMIT, WINDOW, 1, "fixed_window")),
        "sliding": _command(logic.check_rate_limit("slide", LIMIT, WINDOW, 1, "sliding_window")),
        "session": _command(people.get(token)),
    }


def _decode_session(reply: dict[str, Any]) -> object:
    document = reply["cursor"]["firstBatch"][0]
    return document, json.loads(document["m"])


def _sync_part(url: str, server: str, limits_db: str) -> tuple[list[Comparison], dict[str, float]]:
    import pymongo
    from limits import RateLimitItemPerMinute, storage, strategies

    cache = authstore.open_cache(url)
    sessions = authstore.open_sessions(url)
    created = sessions.create("alice", ttl=3600)
    for key, algorithm in (("login", "fixed_window"), ("slide", "sliding_window"), ("g", "gcra")):
        cache.check_rate_limit(key, LIMIT, WINDOW, algorithm=algorithm)  # the placeholder
    commands = _captured(cache, sessions, created.token)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(_address(server))
    database = client[_database(server)]
    mongo_limits = storage.MongoDBStorage(_address(server), database_name=limits_db)
    fixed = strategies.FixedWindowRateLimiter(mongo_limits)
    moving = strategies.MovingWindowRateLimiter(mongo_limits)
    # a moving window keeps one entry per hit: a limit the run never reaches
    item = RateLimitItemPerMinute(LIMIT)
    few = RateLimitItemPerMinute(5000)

    def run(name: str, ours: Any, theirs: Any, reference: str, goal: float | None) -> Comparison:
        return compare(name, ours, theirs, reference, goal=goal, count=COUNT, rounds=ROUNDS)

    results = [
        run(
            "mongodb rate limit fixed window",
            lambda: cache.check_rate_limit("login", LIMIT, WINDOW),
            lambda: fixed.hit(item, "login"),
            "limits MongoDBStorage fixed-window",
            1.0,
        ),
        run(
            "mongodb rate limit sliding window",
            lambda: cache.check_rate_limit("slide", 5000, WINDOW, algorithm="sliding_window"),
            lambda: moving.hit(few, "slide"),
            "limits MongoDBStorage moving-window",
            1.0,
        ),
        run(
            "mongodb rate limit gcra",
            lambda: cache.check_rate_limit("g", 5000, WINDOW, algorithm="gcra"),
            lambda: moving.hit(few, "gcra"),
            "limits MongoDBStorage moving-window",
            None,
        ),
        run(
            "mongodb rate limit fixed window (raw)",
            lambda: cache.check_rate_limit("login", LIMIT, WINDOW),
            lambda: database.command(commands["fixed"])["value"],
            "pymongo, same findAndModify",
            GOAL,
        ),
        run(
            "mongodb session get (raw)",
            lambda: sessions.get(created.token),
            lambda: _decode_session(database.command(commands["session"])),
            "pymongo, same aggregate + decode",
            GOAL,
        ),
    ]
    hits = 300
    started = time.perf_counter()
    for index in range(hits):
        cache.check_rate_limit(f"user{index % 30}", 10, WINDOW)
    sequential = time.perf_counter() - started
    cache.close()
    sessions.close()
    client.close()
    return results, {"sequential": sequential}


async def _async_part(url: str, server: str, limits_db: str) -> tuple[list[Comparison], float]:
    import pymongo

    cache = authstore.open_async_cache(url)
    sessions = authstore.open_async_sessions(url)
    created = await sessions.create("alice", ttl=3600)
    await cache.check_rate_limit("login", LIMIT, WINDOW)
    commands = _captured(cache, sessions, created.token)
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(_address(server))
    database = client[_database(server)]

    async def raw_fixed() -> object:
        return (await database.command(commands["fixed"]))["value"]

    async def raw_session() -> object:
        return _decode_session(await database.command(commands["session"]))

    async def run(
        name: str, ours: Any, theirs: Any, reference: str, goal: float | None
    ) -> Comparison:
        return await compare_async(
            name, ours, theirs, reference, goal=goal, count=COUNT, rounds=ROUNDS
        )

    results = [
        await run(
            "async mongodb rate limit fixed window (raw)",
            lambda: cache.check_rate_limit("login", LIMIT, WINDOW),
            raw_fixed,
            "AsyncMongoClient, same findAndModify",
            GOAL,
        ),
        await run(
            "async mongodb session get (raw)",
            lambda: sessions.get(created.token),
            raw_session,
            "AsyncMongoClient, same aggregate + decode",
            GOAL,
        ),
    ]
    try:
        from limits import RateLimitItemPerMinute
        from limits.aio import storage, strategies

        mongo_limits = storage.MongoDBStorage("async+" + _address(server), database_name=limits_db)
        fixed = strategies.FixedWindowRateLimiter(mongo_limits)
        item = RateLimitItemPerMinute(LIMIT)
        results.append(
            await run(
                "async mongodb rate limit fixed window",
                lambda: cache.check_rate_limit("login", LIMIT, WINDOW),
                lambda: fixed.hit(item, "alogin"),
                "limits aio MongoDBStorage (motor) fixed-window",
                1.0,
            )
        )
    except ImportError as missing:  # motor is in the test extra, not the bench one
        print(f"mongodb: async limits skipped ({missing})")
    hits = 300
    started = time.perf_counter()
    gate = asyncio.Semaphore(30)

    async def hit(index: int) -> None:
        async with gate:
            await cache.check_rate_limit(f"user{index % 30}", 10, WINDOW)

    await asyncio.gather(*(hit(index) for index in range(hits)))
    concurrent = time.perf_counter() - started
    await cache.aclose()
    await sessions.aclose()
    await client.close()
    return results, concurrent


def _drop(server: str, prefix: str, limits_db: str) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(_address(server))
    try:
        database = client[_database(server)]
        for name in database.list_collection_names():
            if name.startswith(prefix):
                database.drop_collection(name)
        client.drop_database(limits_db)
    finally:
        client.close()


def section() -> list[Comparison]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    limits_db = f"limits_{prefix[:-1]}"
    server = _server()
    url = f"{server}{'&' if '?' in server else '?'}collection_prefix={prefix}"
    try:
        results, timings = _sync_part(url, server, limits_db)
        async_results, concurrent = asyncio.run(_async_part(url, server, limits_db))
    finally:
        _drop(server, prefix, limits_db)
    results += async_results
    print(
        f"mongodb 300 rate-limit hits over 30 users: sequential sync "
        f"{timings['sequential']:.3f} s, async with 30 concurrent callers {concurrent:.3f} s: "
        f"{timings['sequential'] / concurrent:.1f}x"
    )
    for result in results:
        if "rate" in result.name or "session" in result.name:
            print(
                f"{result.name}: authstore about {1 / result.ours:,.0f} ops/s, "
                f"{result.reference} about {1 / result.theirs:,.0f} ops/s"
            )
    return results


if __name__ == "__main__":
    sys.exit(report(section()))
