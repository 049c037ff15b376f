"""Every exactly-once and exactly-N guarantee, raced by independently opened stores.

The other concurrency tests fire many calls at one store. That misses a backend
whose store serializes its own calls (an async store that runs every operation of
one store on one worker thread; one client per test) but whose operations are not
atomic between clients: a counter read with one statement and written with
another, a rate-limit state read outside the transaction that writes it. Here
each guarantee is raced

* across clients: ``race_clients`` stores opened from the test's factory, one per
  thread (sync), or one per thread each on an event loop of its own (async);
* across processes: ``race_processes`` ``multiprocessing`` children (``spawn``),
  each opening the store from ``authstore_url`` through the registry, as separate
  application processes would. A backend whose data lives in one process declares
  ``shared_across_processes = False`` on its backend object (``memory://`` does):
  these tests then skip with that reason.

Each client waits for the others at a barrier, then fires ``race_hits`` hits (an
async client fires them all at once on its loop); the answers are checked in the
test's own store.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing.pool import Pool
from typing import Any, ClassVar

import pytest

from authstore.contracts.records import StoreKind
from authstore.contracts.testing.base import ContractBase, require
from authstore.contracts.testing.harness import (
    Mode,
    StoreFactory,
    Stores,
    run_threads,
    url_factory,
)
from authstore.contracts.testing.raceops import (
    IN_USE,
    IO_MIN_RACE,
    LONG,
    MIN_RACE,
    RACE_LIMIT,
    RACE_TIMEOUT,
    Params,
    child_init,
    child_run,
    fast_switching,
    run_hits,
    start_line,
)

__all__ = [
    "CacheRaceContract",
    "MagicLinkRaceContract",
    "ProcessPool",
    "Race",
    "SessionRaceContract",
    "TotpRaceContract",
    "shared_across_processes",
]

MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Race:
    """One guarantee: the store kind, what to set up, which hit to fire, what must hold."""

    name: str
    kind: StoreKind
    check: Callable[[ContractBase, Any, list[Any], Params], None]
    setup: Callable[[ContractBase, Any], Params] = lambda contract, store: {}
    capability: str | None = None
    hits: int | None = None
    """Hits per client instead of the class's ``race_hits``: for writes that cost a
    transaction of several statements each (a session create)."""

    def __str__(self) -> str:
        return self.name


# -- the checks ----------------------------------------------------------------------------


def _incr_check(contract: ContractBase, store: Any, answers: list[Any], params: Params) -> None:
    total = len(answers)
    assert sorted(answers) == list(range(1, total + 1)), (
        f"{total} increments by independent clients must answer 1..{total} once each: "
        f"{total - len(set(answers))} answers repeated, the counter ends at {store.get('n')}"
    )
    assert store.get("n") == total


def _limit_check(contract: ContractBase, store: Any, answers: list[Any], params: Params) -> None:
    remaining = [left for allowed, left in answers if allowed]
    assert len(remaining) == len(answers), f"{len(answers) - len(remaining)} hits refused"
    seen_twice = len(remaining) - len(set(remaining))
    assert seen_twice == 0, (
        f"{len(answers)} hits by independent clients on one limiter: {seen_twice} saw a count "
        "another hit saw too (a hit counted from a stale state; a limit would let that many "
        "extra through)"
    )
    assert min(remaining) == RACE_LIMIT - len(answers), (min(remaining), len(answers))


def _exactly_one(expected: object) -> Callable[[ContractBase, Any, list[Any], Params], None]:
    def check(contract: ContractBase, store: Any, answers: list[Any], params: Params) -> None:
        won = sum(1 for answer in answers if answer == expected)
        assert won == 1, f"{len(answers)} tries by independent clients, {won} succeeded"

    return check


def _token_check(winner: str) -> Callable[[ContractBase, Any, list[Any], Params], None]:
    def check(contract: ContractBase, store: Any, answers: list[Any], params: Params) -> None:
        won, lost = answers.count(winner), answers.count(IN_USE)
        assert (won, lost) == (1, len(answers) - 1), (
            f"{len(answers)} tries with one caller token by independent clients: {won} got "
            f"it, {lost} TokenInUseError, others {[a for a in answers if a not in (winner, IN_USE)]}"
        )

    return check


def _blacklist_setup(contract: ContractBase, store: Any) -> Params:
    return {"short": contract.short_ttl}


def _blacklist_check(
    contract: ContractBase, store: Any, answers: list[Any], params: Params
) -> None:
    contract.wait_expiry()
    assert store.is_blacklisted("jti") is True, (
        "a short add_to_blacklist racing a long one shortened the entry's life"
    )


def _revocation_setup(contract: ContractBase, store: Any) -> Params:
    base = datetime.now(UTC) + timedelta(minutes=5)
    return {"short": contract.short_ttl, "base": base}


def _revocation_check(
    contract: ContractBase, store: Any, answers: list[Any], params: Params
) -> None:
    latest = max(answers)
    read = store.user_tokens_revoked_at("u")
    assert read is not None and abs(read - latest) <= MICROSECOND, (
        f"revocations raced by independent clients must keep the latest instant {latest}, "
        f"read {read}"
    )
    contract.wait_expiry()
    assert store.user_tokens_revoked_at("u") is not None, (
        "a short expires_in racing a long one let the revocation lapse"
    )


def _consume_setup(contract: ContractBase, store: Any) -> Params:
    return {"token": store.issue("alice", "alice@example.com", ttl=LONG).token}


def _totp_setup(contract: ContractBase, store: Any) -> Params:
    store.save_pending("alice", b"ciphertext")
    assert store.enable("alice") is True
    store.replace_backup_codes("alice", ["once", "other"])
    return {}


def _backup_check(contract: ContractBase, store: Any, answers: list[Any], params: Params) -> None:
    _exactly_one(True)(contract, store, answers, params)
    assert store.load("alice").backup_codes_left == 1


def _max_sessions_check(
    contract: ContractBase, store: Any, answers: list[Any], params: Params
) -> None:
    assert all(answer == "NewSession" for answer in answers), answers
    count, listed = store.count("alice"), len(store.list("alice"))
    assert (count, listed) == (3, 3), (
        f"{len(answers)} creates with max_sessions=3 by independent clients left "
        f"count()={count}, list() of {listed}"
    )


def _caller_token(contract: ContractBase, store: Any) -> Params:
    import secrets

    return {"token": "race." + secrets.token_hex(24)}


def _session_token_check(
    contract: ContractBase, store: Any, answers: list[Any], params: Params
) -> None:
    _token_check("NewSession")(contract, store, answers, params)
    assert store.count("alice") == 1


def _link_token_check(
    contract: ContractBase, store: Any, answers: list[Any], params: Params
) -> None:
    _token_check("IssuedMagicLink")(contract, store, answers, params)
    assert store.revoke_user("alice") == 1


CACHE_RACES = [
    Race("incr", StoreKind.CACHE, _incr_check, capability="incr"),
    Race("fixed_window", StoreKind.CACHE, _limit_check, capability="fixed_window"),
    Race("sliding_window", StoreKind.CACHE, _limit_check, capability="sliding_window"),
    Race("gcra", StoreKind.CACHE, _limit_check, capability="gcra"),
    Race("blacklist", StoreKind.CACHE, _blacklist_check, _blacklist_setup, "blacklist"),
    Race(
        "user_revocation",
        StoreKind.CACHE,
        _revocation_check,
        _revocation_setup,
        "user_revocation",
    ),
]
SESSION_RACES = [
    Race("max_sessions", StoreKind.SESSIONS, _max_sessions_check, hits=5),
    Race("create_with_token", StoreKind.SESSIONS, _session_token_check, _caller_token, hits=5),
]
TOTP_RACES = [
    Race("claim_step", StoreKind.TOTP, _exactly_one(True), _totp_setup),
    Race("use_backup_code", StoreKind.TOTP, _backup_check, _totp_setup),
]
MAGIC_LINK_RACES = [
    Race("consume", StoreKind.MAGIC_LINKS, _exactly_one("MagicLinkRecord"), _consume_setup),
    Race("issue_with_token", StoreKind.MAGIC_LINKS, _link_token_check, _caller_token),
]


# -- running a race ----------------------------------------------------------------------------


def shared_across_processes(url: str) -> bool:
    """What the backend of ``url`` declares: may processes opening ``url`` share its data?

    A backend object may set ``shared_across_processes`` to False (its data lives in
    the process that opened it), or to a function of the parsed ``StoreURL``. Unset
    means True: a backend is proven across processes unless it says it cannot be.
    """
    from authstore.registry import backend_for

    backend, parsed = backend_for(url)
    declared = getattr(backend, "shared_across_processes", True)
    return bool(declared(parsed) if callable(declared) else declared)


def across_clients(
    factory: StoreFactory,
    race: Race,
    mode: Mode,
    clients: int,
    hits: int,
    params: Params,
    min_race: float = MIN_RACE,
) -> list[Any]:
    """``clients`` threads, each with a store of its own (and in async mode a loop of its
    own), fire ``hits`` hits each; the answers of all, in hit order."""
    asynchronous = mode == "async"
    barrier = start_line(clients)
    answers: list[list[Any]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    progress = [0] * clients

    def client(number: int) -> None:
        try:
            answers[number] = run_hits(
                partial(factory, race.kind, asynchronous),
                asynchronous,
                race.name,
                number,
                progress,
                hits,
                params,
                partial(barrier.wait, RACE_TIMEOUT),
                min_race,
            )
        except BaseException as error:  # pytest.skip/fail from the factory too
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=client, args=(n,), name=f"authstore-race-{n}", daemon=True)
        for n in range(clients)
    ]
    with fast_switching():
        run_threads(threads, f"{race.name}: {clients} clients")
    if errors:
        raise errors[0]
    return [answer for part in answers for answer in part]


class ProcessPool:
    """``size`` spawned child processes, started on first use and shared by a test class's
    cross-process races (starting a Python process is the slow part); each race waits
    for all of them at one barrier."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: Pool | None = None
        self._barrier: Any = None
        self._progress: Any = None

    def race(
        self, url: str, namespace: str, race: Race, mode: Mode, hits: int, params: Params
    ) -> list[Any]:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._barrier = context.Barrier(self.size)
            self._progress = context.Array("l", self.size, lock=False)
            self._pool = context.Pool(self.size, child_init, (self._barrier, self._progress))
        self._barrier.reset()
        self._progress[:] = [0] * self.size
        pending = [
            self._pool.apply_async(
                child_run,
                (
                    url,
                    namespace,
                    race.kind.value,
                    mode == "async",
                    race.name,
                    n,
                    hits,
                    params,
                ),
            )
            for n in range(self.size)
        ]
        deadline = time.monotonic() + 2 * RACE_TIMEOUT
        try:
            parts = [p.get(max(0.0, deadline - time.monotonic())) for p in pending]
        except multiprocessing.TimeoutError:
            self.close()
            raise TimeoutError(
                f"{race.name}: {self.size} processes took more than {2 * RACE_TIMEOUT} s"
            ) from None
        return [answer for part in parts for answer in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


class _RaceTests(ContractBase):
    """The race runners; each store's mixin parametrizes them with its races."""

    race_clients: ClassVar[int] = 4
    """Stores opened independently in one process (threads; async: one loop each)."""
    race_processes: ClassVar[int] = 3
    """Child processes opening the store by URL."""
    race_hits: ClassVar[int] = 15
    """Hits each client or process fires at least (and goes on firing while another
    client has not fired as many, so that all clients' hits overlap)."""

    @pytest.fixture(scope="class")
    @classmethod
    def authstore_process_pool(cls) -> Iterator[ProcessPool]:
        """One pool per test class, started at its first cross-process race."""
        pool = ProcessPool(cls.race_processes)
        yield pool
        pool.close()

    def _prepare(self, race: Race, stores: Stores, factory: StoreFactory | None = None) -> Any:
        store = stores.open(race.kind, factory)
        if race.capability is not None:
            require(store, race.capability)
        return store

    def race_across_clients(
        self, race: Race, stores: Stores, factory: StoreFactory, mode: Mode, url: str | None
    ) -> None:
        store = self._prepare(race, stores)
        params = race.setup(self, store)
        # Data in the process: its clients race in Python code, under the GIL, and need
        # time to interleave; a backend doing I/O races at every round trip.
        in_process = url is None or not shared_across_processes(url)
        answers = across_clients(
            factory,
            race,
            mode,
            self.race_clients,
            race.hits or self.race_hits,
            params,
            MIN_RACE if in_process else IO_MIN_RACE,
        )
        race.check(self, store, answers, params)

    def race_across_processes(
        self, race: Race, stores: Stores, url: str | None, mode: Mode, pool: ProcessPool
    ) -> None:
        if url is None:
            pytest.skip(
                "cross-process races need an authstore_url fixture: each child process "
                "opens the store from it"
            )
        if not shared_across_processes(url):
            pytest.skip(
                "the backend declares shared_across_processes = False: "
                "its data lives in one process"
            )
        namespace = self.fresh_namespace("p")
        store = self._prepare(race, stores, url_factory(url, namespace))
        params = race.setup(self, store)
        answers = pool.race(url, namespace, race, mode, race.hits or self.race_hits, params)
        race.check(self, store, answers, params)


TestMethod = Callable[..., None]


def _race_tests(races: list[Race]) -> tuple[TestMethod, TestMethod]:
    """The two tests of one store's races: across clients, across processes."""
    over_races = pytest.mark.parametrize("race", races, ids=[race.name for race in races])

    @over_races
    def across_clients(
        self: _RaceTests,
        race: Race,
        authstore_stores: Stores,
        authstore_factory: StoreFactory,
        authstore_mode: Mode,
        authstore_url: str | None,
    ) -> None:
        self.race_across_clients(
            race, authstore_stores, authstore_factory, authstore_mode, authstore_url
        )

    @over_races
    def across_processes(
        self: _RaceTests,
        race: Race,
        authstore_stores: Stores,
        authstore_url: str | None,
        authstore_mode: Mode,
        authstore_process_pool: ProcessPool,
    ) -> None:
        self.race_across_processes(
            race, authstore_stores, authstore_url, authstore_mode, authstore_process_pool
        )

    return across_clients, across_processes


class CacheRaceContract(_RaceTests):
    test_cache_race_across_clients, test_cache_race_across_processes = _race_tests(CACHE_RACES)


class SessionRaceContract(_RaceTests):
    test_session_race_across_clients, test_session_race_across_processes = _race_tests(
        SESSION_RACES
    )


class TotpRaceContract(_RaceTests):
    test_totp_race_across_clients, test_totp_race_across_processes = _race_tests(TOTP_RACES)


class MagicLinkRaceContract(_RaceTests):
    test_magic_race_across_clients, test_magic_race_across_processes = _race_tests(MAGIC_LINK_RACES)
