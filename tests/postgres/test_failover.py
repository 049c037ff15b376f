"""PostgreSQL failover: acknowledged revocations lost when the primary dies.

On a private primary and its streaming standby (tests/private_servers.py, never the
shared server), writers revoke at full speed: blacklist entries, user revocations,
session revokes and magic-link consumes, from sync stores in threads and async stores
in tasks, every store opened once with the multi-host URL
``postgresql://primary,standby/db`` (``target_session_attrs=read-write`` by default).
The primary is killed (SIGKILL) in the middle, the standby promoted (``pg_promote``);
then

- every store call returned or raised ``BackendUnavailableError`` within its timeout
  (plus the watchdog's margin and scheduling slack), the failover included;
- the same stores write again, on the promoted standby, within ``RECONNECT_BOUND``;
- each acknowledged revocation (a call that returned) is checked on the new primary:
  a blacklist entry is there, a user's revocation instant, a revoked session is gone,
  a consumed link cannot be consumed again. With synchronous replication
  (``synchronous_standby_names`` naming the standby, ``synchronous_commit = on``) none
  may be missing; with asynchronous replication the number missing is printed (run
  with -s), a measurement, not asserted.

Calls that raised are not acknowledged: their writes may or may not be there. A
revocation whose session or link creation itself was lost is not counted as lost: its
token does not work either.

Then the dead primary is rebuilt as the standby of the new one (``pg_basebackup``) and
the next run fails over the other way. Each run also crash-restarts the new primary
(no failover) with its standby up: after an odd number of runs the standby is the
first host listed, so a store that reconnected to any host (libpq's default) would stay
on the read-only standby; the stores must write again within ``RECONNECT_BOUND``.

A third test stops the synchronous standby: every write then waits for it, and the
store must still raise BackendUnavailableError within its timeout.

CI runs ``RUNS`` failovers with synchronous replication (2) and one with asynchronous
replication; ``AUTHSTORE_FAILOVER_RUNS=10`` runs more of each by hand.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from authstore import registry
from authstore.adapters.common.watchdog import watchdog_margin
from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.testing import unavailable
from authstore.contracts.testing.harness import LoopThread
from tests.private_servers import PostgresPair, PrivatePostgres

RUNS = int(os.environ.get("AUTHSTORE_FAILOVER_RUNS", "2"))
"""Failovers with synchronous replication; half as many (at least one) without."""
TIMEOUT = 1.0
SLACK = 1.0  # scheduling noise on a loaded 2-core machine
BOUND = TIMEOUT + watchdog_margin(TIMEOUT) + SLACK
"""The longest one store call may take, during the failover too."""
RECONNECT_BOUND = 15.0
"""Seconds after the promotion (or the restart) by which the same stores write again."""
THREADS = 4
TASKS = 4
WRITING_BEFORE = 1.0
"""Seconds the writers run before the kill."""
WRITING_AFTER = 0.3
"""Seconds they go on once both modes have written on the new primary."""
KINDS = ("blacklist", "user", "session", "link")


@pytest.fixture(scope="module")
def pair() -> Iterator[PostgresPair]:
    reason = PrivatePostgres.replication_available()
    if reason is not None:
        unavailable(f"private PostgreSQL primary and standby: {reason}")
    servers = PostgresPair()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


# --- writers ------------------------------------------------------------------------

Call = Callable[[], Any]
Acknowledged = tuple[str, str, Any]
"""(kind, key or token, what the revocation answered)"""


@dataclass
class Handles:
    """One mode's stores, each opened once."""

    mode: str
    cache: Any
    sessions: Any
    links: Any


def revocation(stores: Handles, number: int, tag: str) -> Generator[Call, Any, Acknowledged]:
    """One revocation as the store calls it makes (run by ``_run`` or ``_run_async``):
    the last call is the revocation, the earlier ones make what it revokes."""
    kind = KINDS[number % len(KINDS)]
    key = f"{tag}-{number}"
    if kind == "blacklist":
        yield functools.partial(stores.cache.add_to_blacklist, key, 600)
        return kind, key, None
    if kind == "user":
        instant = yield functools.partial(stores.cache.revoke_user_tokens, key)
        return kind, key, instant
    if kind == "session":
        session = yield functools.partial(stores.sessions.create, key, ttl=600)
        revoked = yield functools.partial(stores.sessions.revoke, session.token)
        return kind, session.token, revoked
    link = yield functools.partial(stores.links.issue, key, f"{key}@example.com", ttl=600)
    consumed = yield functools.partial(stores.links.consume, link.token)
    return kind, link.token, consumed is not None


def still_revoked(stores: Handles, kind: str, key: str, answer: Any) -> bool:
    """Whether an acknowledged revocation holds on the server ``stores`` reach now."""
    if kind == "blacklist":
        return bool(stores.cache.is_blacklisted(key))
    if kind == "user":
        instant: datetime | None = stores.cache.user_tokens_revoked_at(key)
        return instant is not None and instant >= answer
    if kind == "session":
        return stores.sessions.get(key) is None
    return stores.links.consume(key) is None


@dataclass
class Ledger:
    """What the writers of one failover saw."""

    acknowledged: list[Acknowledged] = field(default_factory=list)
    answered_at: dict[str, list[float]] = field(default_factory=lambda: {"sync": [], "async": []})
    refused: Counter[str] = field(default_factory=Counter)
    """Calls that raised BackendUnavailableError, by mode and method."""
    unexpected: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)
    longest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def took(self, mode: str, call: Call, seconds: float, error: BaseException | None) -> bool:
        """Record one call; True when it answered."""
        name = getattr(call, "func", call).__name__
        with self.lock:
            self.longest = max(self.longest, seconds)
            if seconds > BOUND:
                self.slow.append(f"{mode} {name}: {error!r} after {seconds:.2f} s")
            if error is None:
                return True
            if isinstance(error, BackendUnavailableError):
                self.refused[f"{mode} {name}"] += 1
            else:
                self.unexpected.append(f"{mode} {name}: {error!r}")
            return False

    def acknowledge(self, mode: str, done: Acknowledged) -> None:
        with self.lock:
            if done[0] in ("session", "link") and not done[2]:
                self.unexpected.append(
                    f"{mode} {done[0]}: nothing to revoke right after creating it"
                )
            self.acknowledged.append(done)
            self.answered_at[mode].append(time.monotonic())

    def first_answer(self, mode: str, since: float) -> float | None:
        with self.lock:
            later = [at for at in self.answered_at[mode] if at > since]
        return min(later) - since if later else None


def _run(steps: Generator[Call, Any, Acknowledged], ledger: Ledger) -> Acknowledged | None:
    answer: Any = None
    while True:
        try:
            call = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        started = time.monotonic()
        try:
            answer = call()
        except Exception as error:
            ledger.took("sync", call, time.monotonic() - started, error)
            return None
        ledger.took("sync", call, time.monotonic() - started, None)


async def _run_async(
    steps: Generator[Call, Any, Acknowledged], ledger: Ledger
) -> Acknowledged | None:
    answer: Any = None
    while True:
        try:
            call = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        started = time.monotonic()
        try:
            answer = await call()
        except Exception as error:
            ledger.took("async", call, time.monotonic() - started, error)
            return None
        ledger.took("async", call, time.monotonic() - started, None)


def _write(stores: Handles, ledger: Ledger, stop: threading.Event, tag: str) -> None:
    number = 0
    while not stop.is_set():
        done = _run(revocation(stores, number, tag), ledger)
        if done is None:
            time.sleep(0.01)  # a refused call can come back at once: let the servers run
        else:
            ledger.acknowledge("sync", done)
        number += 1


async def _write_async(stores: Handles, ledger: Ledger, stop: threading.Event, tag: str) -> None:
    number = 0
    while not stop.is_set():
        done = await _run_async(revocation(stores, number, tag), ledger)
        if done is None:
            await asyncio.sleep(0.01)
        else:
            ledger.acknowledge("async", done)
        number += 1


# --- one failover -------------------------------------------------------------------


@dataclass
class Outcome:
    ledger: Ledger
    recovery: dict[str, float | None]
    """Seconds from the promotion to each mode's first acknowledged revocation."""
    lost: list[Acknowledged] = field(default_factory=list)
    restart: dict[str, float | None] = field(default_factory=dict)
    """Seconds from the primary's crash restart until each mode writes again."""

    def line(self, synchronous: bool, run: int) -> str:
        ledger = self.ledger
        kinds = Counter(kind for kind, _, _ in ledger.acknowledged)
        return (
            f"{'sync' if synchronous else 'async'} replication, failover {run}: "
            f"{len(ledger.acknowledged)} acknowledged ({dict(kinds)}), "
            f"{len(self.lost)} lost; {sum(ledger.refused.values())} refused calls; "
            f"first write after promotion {_seconds(self.recovery)}; longest call "
            f"{ledger.longest:.2f} s; after a crash restart {_seconds(self.restart)}"
        )


def _seconds(found: dict[str, float | None]) -> str:
    return ", ".join(
        f"{mode} {'never' if took is None else f'{took:.3f} s'}" for mode, took in found.items()
    )


class Scene:
    """Sync and async stores on the pair's multi-host URL, opened once for every run."""

    def __init__(self, pair: PostgresPair, url: str) -> None:
        self.pair = pair
        namespace = f"fo{uuid.uuid4().hex[:8]}"
        self.loop = LoopThread()
        self.sync = Handles(
            "sync",
            registry.open_cache(url, namespace=namespace),
            registry.open_sessions(url, namespace=namespace),
            registry.open_magic_links(url, namespace=namespace),
        )
        self.async_ = Handles(
            "async",
            self.loop.run(lambda: registry.open_async_cache(url, namespace=namespace)),
            self.loop.run(lambda: registry.open_async_sessions(url, namespace=namespace)),
            self.loop.run(lambda: registry.open_async_magic_links(url, namespace=namespace)),
        )

    def writes(self) -> dict[str, Call]:
        """One blacklist write per mode, called from this thread."""
        return {
            "sync": lambda: self.sync.cache.add_to_blacklist(uuid.uuid4().hex, 600),
            "async": lambda: self.loop.run(
                lambda: self.async_.cache.add_to_blacklist(uuid.uuid4().hex, 600)
            ),
        }

    def fail_over(self, run: int) -> Outcome:
        ledger, stop, failed = Ledger(), threading.Event(), []
        tag = f"r{run}"

        def write_async() -> None:
            tasks = (_write_async(self.async_, ledger, stop, f"{tag}-t{n}") for n in range(TASKS))
            try:

                async def together() -> None:
                    await asyncio.gather(*tasks)

                self.loop.run(together)
            except BaseException as error:
                failed.append(error)

        writers = [
            threading.Thread(target=_write, args=(self.sync, ledger, stop, f"{tag}-s{n}"))
            for n in range(THREADS)
        ]
        writers.append(threading.Thread(target=write_async))
        for writer in writers:
            writer.daemon = True
            writer.start()
        try:
            time.sleep(WRITING_BEFORE)
            promoted = self.pair.fail_over()
            deadline = promoted + RECONNECT_BOUND
            while time.monotonic() < deadline and None in (
                ledger.first_answer("sync", promoted),
                ledger.first_answer("async", promoted),
            ):
                time.sleep(0.02)
            time.sleep(WRITING_AFTER)
        finally:
            stop.set()
            for writer in writers:
                writer.join(2 * BOUND + 5)
        assert not failed, f"the async writers failed: {failed!r}"
        assert not any(writer.is_alive() for writer in writers), "a writer hangs"
        recovery = {mode: ledger.first_answer(mode, promoted) for mode in ("sync", "async")}
        return Outcome(ledger, recovery)

    def lost(self, ledger: Ledger) -> list[Acknowledged]:
        """The acknowledged revocations that do not hold on the new primary."""
        return [done for done in ledger.acknowledged if not self._holds(done)]

    def rejoin_and_restart(self) -> dict[str, float | None]:
        """The killed primary back as the standby; then a crash restart of the primary."""
        self.pair.rejoin()
        restarted = self.pair.crash_restart_primary()
        return {
            mode: _written_within(call, restarted, RECONNECT_BOUND)
            for mode, call in self.writes().items()
        }

    def _holds(self, done: Acknowledged) -> bool:
        since = time.monotonic()
        while True:
            try:
                return still_revoked(self.sync, *done)
            except BackendUnavailableError:
                assert time.monotonic() - since < RECONNECT_BOUND, (
                    "the new primary stopped answering"
                )
                time.sleep(0.05)

    def close(self) -> None:
        for store in (self.sync.cache, self.sync.sessions, self.sync.links):
            store.close()
        for raw in (self.async_.cache, self.async_.sessions, self.async_.links):
            self.loop.run(raw.aclose)
        self.loop.close()


def _written_within(write: Call, since: float, within: float) -> float | None:
    """Seconds from ``since`` until ``write`` goes through, or None if not ``within``."""
    while True:
        try:
            write()
            return time.monotonic() - since
        except BackendUnavailableError:
            if time.monotonic() - since > within:
                return None
            time.sleep(0.05)


def _fail_over(pair: PostgresPair, *, synchronous: bool, runs: int) -> list[Outcome]:
    pair.repair()
    pair.replicate(synchronous=synchronous)
    scene = Scene(pair, pair.url(timeout=TIMEOUT, connect_timeout=1, pool_size=THREADS + 2))
    outcomes = []
    try:
        for write in scene.writes().values():  # the schema, and both stores connected
            assert _written_within(write, time.monotonic(), RECONNECT_BOUND) is not None
        for run in range(1, runs + 1):
            outcome = scene.fail_over(run)
            outcomes.append(outcome)
            ledger = outcome.ledger
            assert not ledger.unexpected, "\n".join(ledger.unexpected[:20])
            assert not ledger.slow, f"calls over {BOUND:.2f} s:\n" + "\n".join(ledger.slow[:20])
            for mode, took in outcome.recovery.items():
                assert took is not None, (
                    f"the {mode} stores wrote nothing within {RECONNECT_BOUND:g} s "
                    "of the standby's promotion"
                )
            outcome.lost = scene.lost(ledger)
            if synchronous:
                assert not outcome.lost, (
                    f"{len(outcome.lost)} acknowledged revocations lost with synchronous "
                    f"replication, e.g. {outcome.lost[:5]}"
                )
            outcome.restart = scene.rejoin_and_restart()
            print(f"\n{outcome.line(synchronous, run)}")
            for mode, took in outcome.restart.items():
                assert took is not None, (
                    f"the {mode} stores wrote nothing within {RECONNECT_BOUND:g} s "
                    "of the primary's crash restart (connected to the standby?)"
                )
    finally:
        scene.close()
    return outcomes


def test_no_acknowledged_revocation_is_lost_with_synchronous_replication(
    pair: PostgresPair, record_property: Callable[[str, object], None]
) -> None:
    outcomes = _fail_over(pair, synchronous=True, runs=RUNS)
    record_property("acknowledged", [len(o.ledger.acknowledged) for o in outcomes])
    record_property("recovery", [o.recovery for o in outcomes])


def test_losses_with_asynchronous_replication_are_measured(
    pair: PostgresPair, record_property: Callable[[str, object], None]
) -> None:
    outcomes = _fail_over(pair, synchronous=False, runs=max(1, RUNS // 2))
    record_property("acknowledged", [len(o.ledger.acknowledged) for o in outcomes])
    record_property("lost", [len(o.lost) for o in outcomes])


STANDBY_DOWN_AT_MOST = 12.0
"""A safety net: the standby comes back by itself after this, so a store that waits for
it shows as a slow call, not a run that never ends."""


def test_with_the_synchronous_standby_down_writes_fail_in_time(pair: PostgresPair) -> None:
    """A commit waits for the synchronous standby for as long as it is down (the
    server's statement_timeout does not end that wait): the store call raises
    BackendUnavailableError within its timeout anyway, and once the standby is back the
    same stores write again. What a failed write did is unknown: its commit completes
    when the standby returns."""
    pair.repair()
    pair.replicate(synchronous=True)
    scene = Scene(pair, pair.url(timeout=TIMEOUT, connect_timeout=1, pool_size=THREADS + 2))
    try:
        for write in scene.writes().values():
            assert _written_within(write, time.monotonic(), RECONNECT_BOUND) is not None
        pair.standby.kill()
        safety = threading.Timer(STANDBY_DOWN_AT_MOST, pair.standby.start)
        safety.daemon = True
        safety.start()
        try:
            problems = []
            for _ in range(2):
                for mode, write in scene.writes().items():
                    started = time.monotonic()
                    try:
                        write()
                        error: BaseException | None = None
                    except Exception as raised:
                        error = raised
                    took = time.monotonic() - started
                    if not isinstance(error, BackendUnavailableError) or took > BOUND:
                        problems.append(f"{mode}: {error!r} after {took:.2f} s")
        finally:
            if safety.cancel() is None and not pair.standby.running:
                pair.standby.start()
        assert not problems, "with the standby down:\n" + "\n".join(problems)
        back = time.monotonic()
        for mode, write in scene.writes().items():
            took = _written_within(write, back, RECONNECT_BOUND)
            assert took is not None, f"the {mode} stores wrote nothing once the standby was back"
    finally:
        scene.close()
