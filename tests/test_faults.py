"""Faults on private servers (tests/private_servers.py), never the shared ones:
frozen (SIGSTOP) and thawed, killed (SIGKILL: connections reset, then refused) and
restarted. Sync and async, through the contract harness (one body for both).

During each fault every operation returns or raises ``BackendUnavailableError``
within its timeout (plus the watchdog's margin and scheduling slack), and security
reads fail closed; after recovery the same store works without being reopened and
every acknowledged write is there. Recovery times are printed (run with -s).

psycopg has no client-side limit on waiting for an answer and a frozen server cannot
run its statement_timeout: on sync PostgreSQL, the runner's watchdog ends the wait
(authstore/adapters/common/watchdog.py).
"""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from authstore.adapters.common.watchdog import watchdog_margin
from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.testing import unavailable
from authstore.contracts.testing.harness import Mode, Stores, url_factory
from tests.private_servers import PRIVATE_SERVERS, PrivateServer, private_server

T = TypeVar("T")
TIMEOUT = 1.0
SLACK = 1.0  # scheduling noise on a loaded 2-core machine
BOUND = TIMEOUT + watchdog_margin(TIMEOUT) + SLACK
FREEZE_AT_MOST = 12.0
"""A safety net: a frozen server thaws by itself after this, so a hang shows as a slow
failure, not a run that never ends."""
CONCURRENT = 8


@pytest.fixture(scope="module", params=sorted(PRIVATE_SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[PrivateServer]:
    kind = PRIVATE_SERVERS[request.param]
    reason = kind.available()
    if reason is not None:
        unavailable(f"private {kind.name} server: {reason}")
    with private_server(kind.name) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def stores(request: pytest.FixtureRequest, server: PrivateServer) -> Iterator[Stores]:
    mode: Mode = request.param
    prefix = f"f{uuid.uuid4().hex[:10]}_"
    url = f"{server.url}?timeout={TIMEOUT}&connect_timeout=1&table_prefix={prefix}"
    opened = Stores(url_factory(url, "faults"), mode)
    yield opened
    opened.close()


class Scene:
    """Acknowledged writes made before the fault, and the calls made during it."""

    def __init__(self, stores: Stores) -> None:
        self.cache, self.sessions = stores.cache(), stores.sessions()
        self.links, self.totp = stores.magic_links(), stores.totp()
        self.cache.add_to_blacklist("jti", 600)
        self.cache.set("k", "v")
        for _ in range(5):
            self.cache.incr("n")
        self.token = self.sessions.create("alice", ttl=600).token
        self.link = self.links.issue("alice", "alice@example.com", ttl=600).token
        self.totp.save_pending("alice", b"ciphertext")
        self.calls: dict[str, Callable[[], object]] = {
            "is_blacklisted": lambda: self.cache.is_blacklisted("jti"),
            "user_tokens_revoked_at": lambda: self.cache.user_tokens_revoked_at("alice"),
            "get": lambda: self.cache.get("k"),
            "incr": lambda: self.cache.incr("n"),
            "rate limit": lambda: self.cache.check_rate_limit("rl", 5, 60),
            "session get": lambda: self.sessions.get(self.token),
            "session create": lambda: self.sessions.create("bob", ttl=60, max_sessions=2),
            "consume": lambda: self.links.consume(self.link),
            "claim_step": lambda: self.totp.claim_step("alice", 7),
        }

    def all_fail_in_time(self, rounds: int = 1) -> list[str]:
        """Each call (``rounds`` times), then CONCURRENT is_blacklisted at once."""
        problems = []
        for _ in range(rounds):
            for name, call in self.calls.items():
                error, answer, took = _timed(call)
                if not isinstance(error, BackendUnavailableError) or took > BOUND:
                    problems.append(f"{name}: {error!r} / {answer!r} after {took:.2f} s")
        started = time.monotonic()
        outcomes = self.cache.concurrently(
            CONCURRENT, lambda raw: _timed_call(raw.is_blacklisted, "jti")
        )
        everyone = time.monotonic() - started
        problems += [
            f"concurrent is_blacklisted: {error!r} / {answer!r}"
            for error, answer in outcomes
            if not isinstance(error, BackendUnavailableError)
        ]
        if everyone > BOUND:
            problems.append(f"{CONCURRENT} concurrent calls took {everyone:.2f} s")
        return problems

    def recovered(self, *, unanswered_writes_may_apply: bool) -> tuple[float, float]:
        """Seconds until the first store answers again and until all four do; then
        every acknowledged write is there.

        A write that timed out against a frozen server may still be applied when it
        thaws (its statement sat in the server's socket buffer): its outcome is
        unknown, as with any timeout, but never duplicated. Against a dead server,
        nothing that failed may have been applied."""
        started = time.monotonic()
        # Each store (its own pool) recovers by itself; wait for each in turn.
        revoked = _eventually(lambda: self.cache.is_blacklisted("jti"), started)
        first = time.monotonic() - started
        assert revoked is True, "an acknowledged revocation was lost"
        assert _eventually(lambda: self.cache.get("k"), started) == "v"
        counted = self.cache.get("n")
        assert _eventually(lambda: self.sessions.get(self.token), started) is not None
        assert _eventually(lambda: self.totp.load("alice"), started) is not None
        consumed = _eventually(lambda: self.links.consume(self.link), started) is not None
        self.recovery = (first, time.monotonic() - started)
        if unanswered_writes_may_apply:
            assert counted in (5, 6), f"acknowledged increments lost or doubled: {counted}"
        else:
            assert counted == 5, f"acknowledged increments lost, or failed ones applied: {counted}"
            assert consumed, "the link was consumed by a failed call"
        assert self.links.consume(self.link) is None, "a link worked twice"
        return self.recovery


def _eventually(call: Callable[[], T], since: float, within: float = 30.0) -> T:
    """``call``'s answer once the backend is back (BackendUnavailableError until then)."""
    while True:
        try:
            return call()
        except BackendUnavailableError:
            assert time.monotonic() - since < within, f"no recovery within {within:g} s"
            time.sleep(0.05)


def _timed(action: Callable[[], object]) -> tuple[BaseException | None, object, float]:
    started = time.monotonic()
    try:
        result = action()
    except BaseException as error:
        return error, None, time.monotonic() - started
    return None, result, time.monotonic() - started


def _timed_call(method: Callable[..., Any], *args: Any) -> Any:
    """For ``concurrently``: an exception is an outcome (error, answer), not a failure
    of the whole batch; a coroutine of that outcome for an async store."""
    try:
        answer = method(*args)
    except BaseException as error:
        return error, None
    if not inspect.isawaitable(answer):
        return None, answer

    async def outcome() -> tuple[BaseException | None, Any]:
        try:
            return None, await answer
        except BaseException as error:
            return error, None

    return outcome()


def test_a_frozen_server_fails_closed_in_time_and_recovers(
    server: PrivateServer, stores: Stores
) -> None:
    scene = Scene(stores)
    server.freeze()
    safety = threading.Timer(FREEZE_AT_MOST, server.thaw)
    safety.daemon = True
    safety.start()
    try:
        problems = scene.all_fail_in_time()
    finally:
        safety.cancel()
        server.thaw()
    assert not problems, "while frozen:\n" + "\n".join(problems)
    first, every = scene.recovered(unanswered_writes_may_apply=True)
    print(
        f"\n{server.name} {stores.mode} after SIGCONT: first store {first:.3f} s, all {every:.3f} s"
    )


def test_a_killed_server_fails_closed_in_time_and_recovers(
    server: PrivateServer, stores: Stores
) -> None:
    scene = Scene(stores)
    server.kill()
    try:
        # twice: first the pooled connections the kill reset, then refused connects
        problems = scene.all_fail_in_time(rounds=2)
    finally:
        started = time.monotonic()
        server.start()
        ready = time.monotonic() - started
    assert not problems, "while down:\n" + "\n".join(problems)
    first, every = scene.recovered(unanswered_writes_may_apply=False)
    print(
        f"\n{server.name} {stores.mode} after SIGKILL: restarted in {ready:.2f} s, then "
        f"first store {first:.3f} s, all {every:.3f} s"
    )
