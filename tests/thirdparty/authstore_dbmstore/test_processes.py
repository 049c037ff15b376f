"""Atomic across processes, not only threads: the flock is what the contract suite cannot see.

The contract suite's concurrency runs threads or tasks in one process; these tests run
several processes on one directory, each opening its stores through the entry point.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import time
from pathlib import Path

import authstore

PROCESSES = 4
HITS_PER_PROCESS = 60
LIMIT = 50
LINKS = 20
STEPS = 60


def _start_together(start_at: float) -> None:
    """Spawned processes start at different times; make their work overlap."""
    time.sleep(max(0.0, start_at - time.time()))


def _hit_limit(job: tuple[str, float]) -> int:
    url, start_at = job
    with authstore.open_cache(url) as cache:
        _start_together(start_at)
        return sum(
            bool(cache.check_rate_limit("login", LIMIT, 60.0)) for _ in range(HITS_PER_PROCESS)
        )


def _consume(job: tuple[str, float, list[str]]) -> int:
    url, start_at, tokens = job
    with authstore.open_magic_links(url) as links:
        _start_together(start_at)
        return sum(links.consume(token) is not None for token in tokens)


def _claim_steps(job: tuple[str, float]) -> int:
    url, start_at = job
    with authstore.open_totp(url) as totp:
        _start_together(start_at)
        return sum(totp.claim_step("alice", step) for step in range(1, STEPS + 1))


def _pool() -> multiprocessing.pool.Pool:
    return multiprocessing.get_context("spawn").Pool(PROCESSES)


def _soon() -> float:
    return time.time() + 3.0


def test_rate_limit_is_exact_across_processes(tmp_path: Path) -> None:
    url = f"dbmstore://{tmp_path}?namespace=procs"
    with _pool() as pool:
        allowed = pool.map(_hit_limit, [(url, _soon())] * PROCESSES)
    assert sum(allowed) == LIMIT


def test_magic_link_is_consumed_once_across_processes(tmp_path: Path) -> None:
    url = f"dbmstore://{tmp_path}?namespace=procs"
    with authstore.open_magic_links(url) as links:
        tokens = [links.issue(f"user{n}", "user@example.com", ttl=60).token for n in range(LINKS)]
    with _pool() as pool:
        consumed = pool.map(_consume, [(url, _soon(), tokens)] * PROCESSES)
    assert sum(consumed) == LINKS


def test_totp_steps_are_claimed_once_across_processes(tmp_path: Path) -> None:
    url = f"dbmstore://{tmp_path}?namespace=procs"
    with authstore.open_totp(url) as totp:
        totp.save_pending("alice", b"ciphertext")
    with _pool() as pool:
        claimed = pool.map(_claim_steps, [(url, _soon())] * PROCESSES)
    # every step is claimed by at most one process, and the last one by someone
    assert sum(claimed) <= STEPS
    with authstore.open_totp(url) as totp:
        state = totp.load("alice")
    assert state is not None and state.last_step == STEPS
