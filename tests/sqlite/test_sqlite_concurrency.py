"""Exactly-once guarantees on one SQLite file under real contention: processes and threads.

Processes are spawned (a fresh interpreter each, its own connection), start at the
same instant and hammer one key; SQLite's file locks and busy timeout are all that
keep them honest.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import authstore
from authstore.contracts.values import hash_token

PROCESSES = 4
START_DELAY = 2.0  # seconds for spawned interpreters to import authstore
DAY = 86_400
"""The limits' period in the race tests: a race that ran long on a loaded machine must
not earn a hit back (GCRA gives one back every period/limit) or cross a window."""


def _wait_until(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def hit_rate_limit(url: str, algorithm: str, limit: int, hits: int, start: float) -> int:
    with authstore.open_cache(url, timeout=30) as cache:
        cache.exists("warm-up")  # connect and migrate before the start line
        _wait_until(start)
        return sum(
            bool(cache.check_rate_limit("login:alice", limit, DAY, algorithm=algorithm))
            for _ in range(hits)
        )


def consume_link(url: str, token: str, attempts: int, start: float) -> int:
    with authstore.open_magic_links(url, timeout=30) as links:
        links.peek("warm-up-token")
        _wait_until(start)
        return sum(links.consume(token) is not None for _ in range(attempts))


def migrate_then_use(url: str, worker: int, start: float) -> tuple[str, bool]:
    _wait_until(start)
    report = authstore.migrate(url)[0]
    with authstore.open_cache(url, timeout=30) as cache:
        cache.set(f"worker-{worker}", worker)
        return report, cache.get(f"worker-{worker}") == worker


def _in_processes(target: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(arguments)) as pool:
        return pool.starmap(target, arguments, chunksize=1)


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_processes_share_one_rate_limit_exactly(db_url: str, algorithm: str) -> None:
    authstore.migrate(db_url)
    limit, hits = 25, 20
    start = time.time() + START_DELAY
    passed = _in_processes(
        hit_rate_limit, [(db_url, algorithm, limit, hits, start) for _ in range(PROCESSES)]
    )
    assert sum(passed) == limit, passed


def test_processes_consume_one_link_once(db_url: str) -> None:
    with authstore.open_magic_links(db_url) as links:
        token = links.issue("alice", "alice@example.com", ttl=60).token
    start = time.time() + START_DELAY
    wins = _in_processes(consume_link, [(db_url, token, 5, start) for _ in range(PROCESSES)])
    assert sum(wins) == 1, wins


def test_processes_migrating_a_fresh_file_at_once(db_url: str, db_path: Path) -> None:
    assert not db_path.exists()
    start = time.time() + START_DELAY
    results = _in_processes(migrate_then_use, [(db_url, n, start) for n in range(PROCESSES)])
    reports = [report for report, _ in results]
    assert all(ok for _, ok in results), results
    assert sorted(reports) == ["sqlite: schema at version 2 (applied 0)"] * (PROCESSES - 1) + [
        "sqlite: schema at version 2 (applied 2)"
    ], reports


def _threads(count: int, action: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(count)

    def run() -> Any:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: run(), range(count)))


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_threads_on_one_store_pass_exactly_the_limit(db_url: str, algorithm: str) -> None:
    with authstore.open_cache(db_url) as cache:
        results = _threads(100, lambda: cache.check_rate_limit("k", 10, DAY, algorithm=algorithm))
    assert sum(bool(r) for r in results) == 10


def test_threads_with_their_own_connections_pass_exactly_the_limit(db_url: str) -> None:
    authstore.migrate(db_url)
    caches = [authstore.open_cache(db_url, timeout=30) for _ in range(8)]
    try:
        for cache in caches:
            cache.exists("warm-up")
        barrier = threading.Barrier(len(caches))

        def hammer(cache: Any) -> int:
            barrier.wait()
            return sum(bool(cache.check_rate_limit("k", 30, DAY)) for _ in range(10))

        with ThreadPoolExecutor(len(caches)) as pool:
            passed = sum(pool.map(hammer, caches))
    finally:
        for cache in caches:
            cache.close()
    assert passed == 30


def test_threads_use_single_use_secrets_once(db_url: str) -> None:
    with (
        authstore.open_magic_links(db_url) as links,
        authstore.open_totp(db_url) as totp,
    ):
        token = links.issue("alice", "alice@example.com", ttl=60).token
        assert sum(r is not None for r in _threads(50, lambda: links.consume(token))) == 1

        totp.save_pending("alice", b"ciphertext")
        totp.enable("alice")
        totp.replace_backup_codes("alice", [hash_token("code-1")])
        assert sum(_threads(50, lambda: totp.use_backup_code("alice", hash_token("code-1")))) == 1
        assert sum(_threads(50, lambda: totp.claim_step("alice", 1234))) == 1
        assert totp.load("alice").last_step == 1234  # type: ignore[union-attr]


def test_threads_creating_capped_sessions_keep_the_cap(db_url: str) -> None:
    with authstore.open_sessions(db_url) as sessions:
        _threads(40, lambda: sessions.create("alice", ttl=60, max_sessions=3))
        assert sessions.count("alice") == 3


def test_first_use_waits_out_a_lock_on_a_fresh_file(tmp_path: Path) -> None:
    """Another connection holds a fresh file for 0.3 s: the first use (WAL switch,
    migration) must wait within the busy timeout, not fail.

    The narrower race, two clients switching one new file to WAL at once (SQLite then
    answers 'database is locked' without waiting), cannot be forced deterministically;
    the contract suite's two-client concurrency tests caught it about once in six runs
    before SQLiteRunnerBase._switch_to_wal retried."""
    import sqlite3

    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    releaser.start()
    try:
        with authstore.open_cache(f"sqlite:///{path}") as cache:
            assert cache.check_rate_limit("k", 10, 60).allowed
            assert not holder.in_transaction, "the store cannot have written before COMMIT"
    finally:
        releaser.join()
        holder.close()
