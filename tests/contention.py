"""The races the SQL databases' concurrency tests share: spawned processes (a fresh
interpreter each, its own connections) that start at one instant and hammer one key,
and several stores of one process, each with its own connections. Only the database's
locks keep them honest.

The workers are module-level functions with plain arguments: a spawned process
imports them by name. A test passes its store options in the URL.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import authstore
from authstore.contracts.values import hash_token

PROCESSES = 4
START_DELAY = 2.5
"""Seconds for spawned interpreters to import authstore and connect before the start."""
DAY = 86_400
"""The limits' period in the race tests: a race that ran long on a loaded machine must
not earn a hit back (GCRA gives one back every period/limit) or cross a window."""
RATE_LIMITED_KEY = "login:alice"


def at_once_in_threads(count: int, work: Callable[[], Any], seconds: float = 60) -> list[Any]:
    """``count`` threads released together by a barrier, each running ``work``: what
    each returned or raised, in the order they finished. A thread still running after
    ``seconds`` fails the test."""
    barrier = threading.Barrier(count)
    outcomes: list[Any] = []

    def one() -> None:
        try:
            barrier.wait(30)
            outcomes.append(work())
        except BaseException as error:
            outcomes.append(error)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    running = sum(thread.is_alive() for thread in threads)
    assert not running, f"{running} of {count} threads still running after {seconds} s"
    return outcomes


def errors_of(outcomes: list[Any]) -> list[BaseException]:
    return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]


def race(count: int, work: Callable[[], Any]) -> list[Any]:
    """``at_once_in_threads`` where every call must return: what they returned (the
    first error, raised again)."""
    outcomes = at_once_in_threads(count, work)
    for error in errors_of(outcomes):
        raise error
    return outcomes


def wait_until(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def in_processes(target: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> list[Any]:
    """``target`` once per argument tuple, each in its own spawned process, at once."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(arguments)) as pool:
        return pool.starmap(target, arguments, chunksize=1)


def everyone_at_once(target: Callable[..., Any], *arguments: Any) -> list[Any]:
    """``target(*arguments, start)`` in PROCESSES processes, from one start line."""
    start = time.time() + START_DELAY
    return in_processes(target, [(*arguments, start) for _ in range(PROCESSES)])


def hit_rate_limit(
    url: str, algorithm: str, limit: int, hits: int, threads: int, start: float
) -> int:
    with authstore.open_cache(url) as cache:
        cache.exists("warm-up")  # connect and migrate before the start line
        wait_until(start)

        def hit(_: int) -> bool:
            return bool(cache.check_rate_limit(RATE_LIMITED_KEY, limit, DAY, algorithm=algorithm))

        if threads == 1:
            return sum(map(hit, range(hits)))
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(hit, range(hits)))


def check_processes_share_one_rate_limit(url: str, algorithm: str, threads: int = 1) -> None:
    """Four processes of 20 hits each (in ``threads`` threads) pass a limit of 25
    exactly."""
    authstore.migrate(url)
    with authstore.open_cache(url) as cache:
        cache.reset_rate_limit(RATE_LIMITED_KEY)
    limit, hits = 25, 20
    passed = everyone_at_once(hit_rate_limit, url, algorithm, limit, hits, threads)
    assert sum(passed) == limit, passed


def consume_link(url: str, token: str, attempts: int, start: float) -> int:
    with authstore.open_magic_links(url) as links:
        links.peek("warm-up-token")
        wait_until(start)
        return sum(links.consume(token) is not None for _ in range(attempts))


def check_processes_consume_one_link_once(url: str) -> None:
    with authstore.open_magic_links(url) as links:
        token = links.issue("alice", "alice@example.com", ttl=60).token
    wins = everyone_at_once(consume_link, url, token, 5)
    assert sum(wins) == 1, wins


def use_backup_code(url: str, code: str, start: float) -> tuple[int, int]:
    with authstore.open_totp(url) as totp:
        totp.load("warm-up")
        wait_until(start)
        used = sum(totp.use_backup_code("alice", hash_token(code)) for _ in range(5))
        claimed = sum(totp.claim_step("alice", step) for step in range(100, 110))
        return used, claimed


def check_processes_use_totp_secrets_once(url: str) -> None:
    """A backup code is used once, and each of ten steps claimed once, over all
    processes."""
    with authstore.open_totp(url) as totp:
        totp.save_pending("alice", b"ciphertext")
        totp.enable("alice")
        totp.replace_backup_codes("alice", [hash_token("code-1")])
    results = everyone_at_once(use_backup_code, url, "code-1")
    assert sum(used for used, _ in results) == 1, results
    assert sum(claimed for _, claimed in results) == 10, results


def create_capped(url: str, rounds: int, threads: int, start: float) -> tuple[int, int]:
    """``rounds`` times, ``threads`` capped creates for one user at once; how many went
    through, and how many sessions the user had after them."""
    with authstore.open_sessions(url) as sessions:
        sessions.count("warm-up")
        wait_until(start)

        def create() -> Any:
            return sessions.create("alice", ttl=60, max_sessions=3)

        created = sum(len(race(threads, create)) for _ in range(rounds))
        return created, sessions.count("alice")


def check_processes_creating_capped_sessions_keep_the_cap(
    url: str, rounds: int, threads: int
) -> None:
    authstore.migrate(url)
    results = everyone_at_once(create_capped, url, rounds, threads)
    assert sum(created for created, _ in results) == rounds * threads * PROCESSES, results
    assert all(count <= 3 for _, count in results), results
    with authstore.open_sessions(url) as sessions:
        assert sessions.count("alice") == 3


def migrate_then_use(url: str, worker: int, start: float) -> tuple[str, bool]:
    wait_until(start)
    report = authstore.migrate(url)[0]
    with authstore.open_cache(url) as cache:
        cache.set(f"worker-{worker}", worker)
        return report, cache.get(f"worker-{worker}") == worker


def check_processes_migrate_a_fresh_database_once(url: str, family: str) -> None:
    """One process applies every migration; the others find them applied."""
    start = time.time() + START_DELAY
    results = in_processes(migrate_then_use, [(url, n, start) for n in range(PROCESSES)])
    reports = sorted(report for report, _ in results)
    assert all(used for _, used in results), results
    assert reports == [f"{family}: schema at version 3 (applied 0)"] * (PROCESSES - 1) + [
        f"{family}: schema at version 3 (applied 3)"
    ], reports


def check_several_stores_pass_exactly_the_limit(url: str, stores: int, hits: int) -> None:
    """``stores`` stores of one process, each with its own connections, hit one limit of
    30 ``hits`` times each, from behind one barrier."""
    caches = [authstore.open_cache(url) for _ in range(stores)]
    try:
        for cache in caches:
            cache.exists("warm-up")
        barrier = threading.Barrier(len(caches))

        def hammer(cache: Any) -> int:
            barrier.wait()
            return sum(bool(cache.check_rate_limit("k", 30, DAY)) for _ in range(hits))

        with ThreadPoolExecutor(len(caches)) as pool:
            passed = sum(pool.map(hammer, caches))
    finally:
        for cache in caches:
            cache.close()
    assert passed == 30
