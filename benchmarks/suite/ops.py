"""The measured operations, each written once for sync and async stores.

A store's sync and async classes have the same method names, so ``lambda i:
cache.get("hot")`` is a sync call on a sync store and an awaitable on an async one.
Setup steps are generators that yield each store call's result (a value, or an
awaitable the async driver awaits) and receive it back: one body for both modes.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from benchmarks.suite.measure import Contender

__all__ = ["HOT_KEY", "OPS", "Op", "Stores", "contenders", "run_async", "run_sync", "seed"]

PAYLOAD = {"user": "alice", "roles": ["admin"], "n": 3}
BIG = 10**9
WINDOW = 60
ALGORITHMS = ("fixed_window", "sliding_window", "gcra")
HOT_KEY = "fixed_window allowed, one key"
"""Every concurrent caller hits the same limiter: a row lock everyone waits for (SQL),
compare-and-set retries (memcached), one document (MongoDB)."""

Steps = Generator[Any, Any, Any]


def run_sync(steps: Steps) -> Any:
    try:
        value = next(steps)
        while True:
            value = steps.send(value)
    except StopIteration as done:
        return done.value


async def run_async(steps: Steps) -> Any:
    try:
        value = next(steps)
        while True:
            if inspect.isawaitable(value):
                value = await value
            value = steps.send(value)
    except StopIteration as done:
        return done.value


@dataclass
class Stores:
    cache: Any
    sessions: Any = None
    totp: Any = None
    magic: Any = None
    asynchronous: bool = False
    tokens: list[str] = field(default_factory=list)
    group: Any = None
    """The store group the stores share (its one pool): what ``close_stores`` closes."""


@dataclass(frozen=True)
class Op:
    name: str
    store: str
    """Which store the call uses: cache, sessions, totp or magic."""
    single: bool = True
    """A single-record operation: one round trip on a network backend.
    Issuing a magic link also revokes the user's previous ones: a transaction."""
    raw: bool = True
    """The raw driver can replay its round trip (not for writes a replay cannot repeat:
    a second insert of the same token hash, a second consume, a second claim of the same
    step, which is refused without writing while authstore's calls claim new steps)."""
    concurrent_only: bool = False
    """Measured with concurrent callers only: alone, it is the same call as another op."""


OPS: list[Op] = [
    Op("cache get", "cache"),
    Op("cache set", "cache"),
    Op("cache incr", "cache"),
    *(Op(f"{a} {w}", "cache") for a in ALGORITHMS for w in ("allowed", "refused")),
    Op(HOT_KEY, "cache", concurrent_only=True),
    Op("is_blacklisted", "cache"),
    Op("session create", "sessions", raw=False),
    Op("session get", "sessions"),
    Op("session touch", "sessions"),
    Op("claim_step", "totp", raw=False),
    Op("magic-link issue", "magic", single=False, raw=False),
    Op("magic-link consume", "magic", raw=False),
]


def seed(stores: Stores, spread: int) -> Steps:
    """What the calls read: a value, blacklisted ids, a session, refused limiters."""
    yield stores.cache.set("hot", PAYLOAD, ttl=3600)
    for i in range(spread):
        yield stores.cache.add_to_blacklist(f"jti{i}", 3600)
    for algorithm in ALGORITHMS:
        for i in range(spread):
            yield stores.cache.check_rate_limit(f"r{algorithm}{i}", 1, WINDOW, algorithm=algorithm)
    if stores.sessions is not None:
        stores.tokens = []
        for i in range(spread):
            created = yield stores.sessions.create(
                f"alice{i}", ttl=3600, metadata={"device": "phone"}
            )
            stores.tokens.append(created.token)


def contenders(stores: Stores, spread: int) -> dict[str, Contender]:
    """authstore's call for every operation the stores serve; ``spread`` keys (1 when
    one caller measures, 100 with 100 callers: no row lock shared by all)."""
    cache, sessions, totp, magic = stores.cache, stores.sessions, stores.totp, stores.magic
    run = run_async if stores.asynchronous else run_sync
    calls: dict[str, tuple[Callable[[int], Any], Callable[[int], Any] | None]] = {
        "cache get": (lambda i: cache.get("hot"), None),
        "cache set": (lambda i: cache.set(f"k{i % spread}", PAYLOAD, ttl=300), None),
        "cache incr": (lambda i: cache.incr(f"n{i % spread}"), None),
        "is_blacklisted": (lambda i: cache.is_blacklisted(f"jti{i % spread}"), None),
    }
    for algorithm in ALGORITHMS:
        calls[f"{algorithm} allowed"] = (
            _limit(cache, f"a{algorithm}", BIG, algorithm, spread),
            None,
        )
        calls[f"{algorithm} refused"] = (_limit(cache, f"r{algorithm}", 1, algorithm, spread), None)
    if spread > 1:
        calls[HOT_KEY] = (_limit(cache, "hot", BIG, "fixed_window", 1), None)
    if sessions is not None:
        calls["session create"] = (
            lambda i: sessions.create(f"user{i % 100}", ttl=3600, metadata={"device": "phone"}),
            None,
        )
        tokens = stores.tokens
        calls["session get"] = (lambda i: sessions.get(tokens[i % len(tokens)]), None)
        calls["session touch"] = (lambda i: sessions.touch(tokens[i % len(tokens)]), None)
    if totp is not None:
        calls["claim_step"] = (lambda i: totp.claim_step(f"user{i % spread}", i + 1), None)
    if magic is not None:
        # Issuing revokes the user's previous links, a statement that reads every link of
        # the user still stored (revoked and used ones too, until they expire): its cost
        # grows with the links issued before (300 a user: about 3x the time of 50). Each
        # mode issues to users of its own, so one mode's calls never slow another's: the
        # async100 row ran on users that held the sync and async rows' links already.
        users = f"{'async' if stores.asynchronous else 'sync'}{spread}-user"
        calls["magic-link issue"] = (
            lambda i: magic.issue(f"{users}{i % 100}", "alice@example.com", ttl=600),
            None,
        )
        links: collections.deque[str] = collections.deque()

        def issue_links(n: int) -> Steps:
            for i in range(n):
                issued = yield magic.issue(
                    f"link{i % 100}", "alice@example.com", ttl=600, revoke_previous=False
                )
                links.append(issued.token)

        calls["magic-link consume"] = (
            lambda i: magic.consume(links.popleft()),
            lambda n: run(issue_links(n)),
        )
    return {
        name: Contender("authstore", "authstore", call, prepare)
        for name, (call, prepare) in calls.items()
    }


def _limit(
    cache: Any, prefix: str, limit: int, algorithm: str, spread: int
) -> Callable[[int], Any]:
    return lambda i: cache.check_rate_limit(
        f"{prefix}{i % spread}", limit, WINDOW, algorithm=algorithm
    )
