"""A bounded mixed load on every backend (tests/backends.py), sync (threads) and async
(tasks), over loopback for a fixed number of seconds.

Workers pick operations at random (seeded): counter increments, hits on one limiter
per algorithm, consumes of a pool of magic links, uses of a pool of backup codes,
claims of TOTP steps, and session creations under ``max_sessions``. At the end:
no acknowledged increment was lost, each limiter let exactly ``LIMIT`` hits through,
every link and backup code worked exactly once (a final sweep uses the ones the load
did not reach), no TOTP step was claimed twice, and the session cap held. Any
exception fails the test: under this load nothing may time out or leak.

``AUTHSTORE_LOAD_SECONDS`` (default 1.5) sets the duration per backend and mode.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from authstore.contracts.records import RateLimitAlgorithm
from authstore.contracts.testing.harness import Stores, url_factory
from authstore.contracts.values import MAX_WINDOW

SECONDS = float(os.environ.get("AUTHSTORE_LOAD_SECONDS", "1.5"))
THREADS = 8
TASKS = 16
LIMIT = 40
CAP = 5
LINKS = 40
CODES = 20


class Load:
    """The shared targets of one run and the tally of what the workers were told."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.cache = stores.cache()
        # A backend may offer only some stores (memcached: the cache alone).
        self.sessions = _offered(stores.sessions)
        self.totp = _offered(stores.totp)
        self.links = _offered(stores.magic_links)
        capabilities = self.cache.capabilities
        self.algorithms = [a for a in RateLimitAlgorithm if a.value in capabilities]
        self.kinds = [
            kind
            for kind, offered in enumerate(
                ["incr" in capabilities, bool(self.algorithms), self.links, self.totp, self.totp]
            )
            if offered
        ] + ([5] if self.sessions else [])
        self.user = "load-user"
        self.codes = [f"code-{i}" for i in range(CODES)]
        if self.totp:
            self.totp.save_pending(self.user, b"ciphertext")
            self.totp.enable(self.user)
            self.totp.replace_backup_codes(self.user, self.codes)
        self.tokens = [
            self.links.issue(f"u{i}", f"u{i}@example.com", ttl=3600).token
            for i in range(LINKS if self.links else 0)
        ]
        self.steps = itertools.count()
        self.lock = threading.Lock()
        self.incremented = 0
        self.tried: Counter[str] = Counter()
        self.allowed: Counter[str] = Counter()
        self.consumed: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.claimed: Counter[int] = Counter()
        self.created = 0
        self.errors: list[BaseException] = []

    def pick(self, rng: random.Random) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        """One operation on the raw stores (sync or async) and how to tally its answer."""
        cache = self.cache.raw
        links, totp = getattr(self.links, "raw", None), getattr(self.totp, "raw", None)
        kind = rng.choice(self.kinds)
        if kind == 0:
            return lambda: cache.incr("counter"), self._incremented
        if kind == 1:
            algorithm = rng.choice(self.algorithms)
            return (
                lambda: cache.check_rate_limit("rl", LIMIT, MAX_WINDOW, algorithm=algorithm),
                lambda result: self._hit(algorithm.value, result.allowed),
            )
        if kind == 2:
            token = rng.choice(self.tokens)
            return lambda: links.consume(token), lambda r: self._count(self.consumed, token, r)
        if kind == 3:
            code = rng.choice(self.codes)
            return (
                lambda: totp.use_backup_code(self.user, code),
                lambda used: self._count(self.used, code, used),
            )
        if kind == 4:
            step = next(self.steps) // 3  # three workers contend for each step
            return (
                lambda: totp.claim_step(self.user, step),
                lambda won: self._count(self.claimed, step, won),
            )
        sessions = getattr(self.sessions, "raw", None)
        return (
            lambda: sessions.create(self.user, ttl=3600, max_sessions=CAP),
            lambda _: self._created(),
        )

    def _incremented(self, _: object) -> None:
        with self.lock:
            self.incremented += 1

    def _hit(self, name: str, allowed: bool) -> None:
        with self.lock:
            self.tried[name] += 1
            self.allowed[name] += bool(allowed)

    def _count(self, counter: Counter[Any], key: Any, answer: object) -> None:
        with self.lock:
            counter[key] += answer is not None and answer is not False

    def _created(self) -> None:
        with self.lock:
            self.created += 1

    def check(self) -> None:
        assert not self.errors, f"{len(self.errors)} operations failed, first: {self.errors[0]!r}"
        if "incr" in self.cache.capabilities:
            assert self.cache.get("counter") == (self.incremented or None), "lost an increment"
        for name, tried in self.tried.items():
            assert self.allowed[name] == min(tried, LIMIT), (name, tried, self.allowed[name])
        assert max(self.consumed.values(), default=0) <= 1, self.consumed.most_common(3)
        for token in self.tokens:
            swept = self.links.consume(token) is not None
            assert self.consumed[token] + swept == 1, "a magic link did not work exactly once"
        assert max(self.used.values(), default=0) <= 1, self.used.most_common(3)
        assert max(self.claimed.values(), default=0) <= 1, "a TOTP step was claimed twice"
        if self.totp:
            for code in self.codes:
                swept = self.totp.use_backup_code(self.user, code)
                assert self.used[code] + swept == 1, "a backup code did not work exactly once"
        if self.sessions:
            assert self.sessions.count(self.user) == min(self.created, CAP)
        calls = self.incremented + sum(self.tried.values()) + self.created
        calls += sum(self.consumed.values()) + sum(self.used.values())
        assert calls > 0


def _offered(open_store: Callable[[], Any]) -> Any:
    """The store, or None when the backend does not offer that kind."""
    try:
        return open_store()
    except pytest.skip.Exception:
        return None


def _sync_worker(load: Load, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    try:
        while time.monotonic() < deadline:
            call, tally = load.pick(rng)
            tally(call())
    except BaseException as error:
        load.errors.append(error)


async def _async_worker(load: Load, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    try:
        while time.monotonic() < deadline:
            call, tally = load.pick(rng)
            answer = call()
            tally(await answer if inspect.isawaitable(answer) else answer)
    except BaseException as error:
        load.errors.append(error)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_mixed_load_loses_nothing(backend: str, mode: str) -> None:
    stores = Stores(url_factory(backend, f"load{uuid.uuid4().hex[:10]}"), mode)  # type: ignore[arg-type]
    try:
        load = Load(stores)
        deadline = time.monotonic() + SECONDS
        if mode == "sync":
            threads = [
                threading.Thread(target=_sync_worker, args=(load, seed, deadline))
                for seed in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(SECONDS + 60)
        else:

            async def run_all() -> None:
                await asyncio.gather(
                    *(_async_worker(load, seed, deadline) for seed in range(TASKS))
                )

            stores.loop.run(run_all)
        load.check()
        print(
            f"\n{mode}: {load.incremented} incr, {dict(load.tried)} hits, {load.created} sessions"
        )
    finally:
        stores.close()
