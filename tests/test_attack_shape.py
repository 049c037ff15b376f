"""The independent attack's shape, CI-sized: 200-way races by 4 processes on every backend
whose data is shared across processes.

Each race: 4 ``spawn``-ed processes (one pool for the module, started once), each
opening the store from the backend's URL as a separate application process would,
wait at one start line and fire 50 hits each (sync: one after the other; async:
``ROUND`` at once on the process's loop), in a namespace of the test's own. The
answers are checked in the test's own (sync) store:

* ``fixed_window``: every hit on one limiter sees a count no other hit saw (a limit of
  N lets exactly N through only if no two hits count from the same state);
* ``incr``: the increments answer 1..n once each;
* ``consume``: one magic link, exactly one consumer wins;
* ``claim_step``: one TOTP step, exactly one claim wins;
* ``use_backup_code``: one backup code, exactly one use wins (and one code is left).

memcached has the cache alone: its races are the cache races. The races, their hits
and their checks are those of the contract suite (authstore.contracts.testing.races);
nothing here is random.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest

from authstore.contracts.testing.base import ContractBase, require
from authstore.contracts.testing.harness import Mode, Stores, url_factory
from authstore.contracts.testing.races import (
    CACHE_RACES,
    MAGIC_LINK_RACES,
    TOTP_RACES,
    ProcessPool,
    Race,
    shared_across_processes,
)
from tests.backends import BACKENDS, backend_url

PROCESSES = 4
HITS = 50
"""Hits per process at least: 4 x 50 = 200 concurrent hits per race."""

_ALL = {race.name: race for race in CACHE_RACES + TOTP_RACES + MAGIC_LINK_RACES}
SECURITY = [_ALL[name] for name in ("fixed_window", "consume", "claim_step", "use_backup_code")]
CACHE_ONLY = [_ALL[name] for name in ("incr", "fixed_window")]

SHARED = [name for name in BACKENDS if name != "memory"]
"""Every backend of the cross-backend suites but ``memory://`` (its data lives in one
process, and it declares so: ``shared_across_processes`` is False for it)."""
CASES = [
    pytest.param(name, race, id=f"{name}-{race.name}")
    for name in SHARED
    for race in (CACHE_ONLY if name == "memcached" else SECURITY)
]


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPool]:
    """One pool of processes for the whole module: starting them is the slow part."""
    pool = ProcessPool(PROCESSES)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def urls(
    server_url: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """``urls(name)``: the backend's URL, opened once per module (SQL: a table prefix of
    its own, dropped at the end; SQLite: a file in a temporary folder)."""
    opened: dict[str, str] = {}
    with contextlib.ExitStack() as stack:

        def url(name: str) -> str:
            if name not in opened:
                folder = tmp_path_factory.mktemp(name)
                opened[name] = stack.enter_context(backend_url(name, server_url, folder))
            return opened[name]

        yield url


class _Contract(ContractBase):
    """What the races' setups and checks are handed; none of these races reads it."""


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "race"), CASES)
def test_race_across_processes(
    name: str, race: Race, mode: Mode, urls: Callable[[str], str], pool: ProcessPool
) -> None:
    url = urls(name)
    assert shared_across_processes(url)
    namespace = "attack" + uuid.uuid4().hex
    stores = Stores(url_factory(url, namespace), "sync")
    try:
        store = stores.open(race.kind)
        if race.capability is not None:
            require(store, race.capability)
        contract = _Contract()
        params = race.setup(contract, store)
        answers = pool.race(url, namespace, race, mode, HITS, params)
        assert len(answers) >= PROCESSES * HITS
        race.check(contract, store, answers, params)
    finally:
        stores.close()


def test_only_memory_is_left_out() -> None:
    """The one backend not raced here declares its data private to a process."""
    assert set(BACKENDS) - set(SHARED) == {"memory"}
    assert shared_across_processes("memory://") is False
