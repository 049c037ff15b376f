"""The async SQLite runner's own guarantees: operations run whole on its worker thread,
and a caller never waits past its timeout, whether queued or cancelled, or when the
store closes under it.

A gate (an SQL function that blocks the worker until the test opens it) holds the
worker busy, so what is queued behind it stays queued for as long as a test needs:
no test depends on how fast anything runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query
from authstore.adapters.sqlite import aio
from authstore.adapters.sqlite.aio import AsyncSQLiteRunner
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.contracts.cache import AsyncCacheStore
from authstore.contracts.errors import BackendError, BackendUnavailableError

ALGORITHMS = ["fixed_window", "sliding_window", "gcra"]
PATIENCE = 30.0
"""How long a test waits for something that must happen before it fails instead of hanging."""


class Gate:
    """An SQL function ``gate()`` that blocks whichever thread runs it until ``open()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.left = threading.Event()
        self._open = threading.Event()

    def __call__(self) -> int:
        self.entered.set()
        self._open.wait(PATIENCE)
        self.left.set()
        return 1

    def open(self) -> None:
        self._open.set()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, PATIENCE), "the gate was never reached"


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()  # never leave a worker blocked after a failure


def gated() -> Op[Any]:
    row = yield Query("SELECT gate()", fetch="one")
    return row


def _runner(cache: AsyncCacheStore) -> AsyncSQLiteRunner:
    runner = cache._runner  # type: ignore[attr-defined]
    assert isinstance(runner, AsyncSQLiteRunner)
    return runner


async def _install(cache: AsyncCacheStore, gate: Gate) -> AsyncSQLiteRunner:
    """Open the worker's connection and give it the gate function."""
    await cache.exists("warm-up")
    runner = _runner(cache)
    connection = runner.connection
    assert isinstance(connection, sqlite3.Connection)
    connection.create_function("gate", 0, gate)  # the worker is idle: safe from here
    return runner


async def _run(runner: AsyncSQLiteRunner, op: Op[Any]) -> Any:
    """``runner.run(op)`` in a task of its own: queued when the task first runs, as a
    store's method queues it (``run`` itself queues at once)."""
    return await runner.run(op)


async def _block(runner: AsyncSQLiteRunner, gate: Gate) -> asyncio.Task[Any]:
    blocker = asyncio.create_task(_run(runner, gated()))
    await gate.wait_entered()
    return blocker


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as connection:
        value: int = connection.execute(sql).fetchone()[0]
    connection.close()
    return value


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_hundred_concurrent_callers_pass_exactly_the_limit(db_url: str, algorithm: str) -> None:
    """Two keys of different limits, their callers interleaved: each result reaches the
    caller whose operation produced it (a result handed to the wrong caller moves hits
    from one key's count to the other's)."""

    async def scenario() -> tuple[list[bool], list[bool]]:
        async with authstore.open_async_cache(db_url) as cache:
            results = await asyncio.gather(
                *(
                    cache.check_rate_limit(
                        "a" if i % 2 else "b", 10 if i % 2 else 3, 60, 1, algorithm
                    )
                    for i in range(100)
                )
            )
        a = [r.allowed for i, r in enumerate(results) if i % 2 and r.limit == 10]
        b = [r.allowed for i, r in enumerate(results) if not i % 2 and r.limit == 3]
        return a, b

    a, b = asyncio.run(scenario())
    assert (len(a), sum(a)) == (50, 10)
    assert (len(b), sum(b)) == (50, 3)


def test_a_queued_operation_times_out_and_never_runs(db_url: str, gate: Gate) -> None:
    async def scenario() -> tuple[BaseException | None, bool, object]:
        async with authstore.open_async_cache(f"{db_url}?timeout=0.2") as cache:
            runner = await _install(cache, gate)
            blocker = await _block(runner, gate)
            try:
                await asyncio.wait_for(cache.set("late", 1), PATIENCE)
            except Exception as error:
                raised: BaseException | None = error
            else:
                raised = None
            still_blocked = not gate.left.is_set()  # it did not wait for the worker
            gate.open()
            await asyncio.gather(blocker, return_exceptions=True)  # timed out too
            return raised, still_blocked, await cache.get("late")

    raised, still_blocked, late = asyncio.run(scenario())
    assert isinstance(raised, BackendUnavailableError), raised
    assert still_blocked
    assert late is None  # the worker skipped it


def test_a_queued_operation_waits_its_timeout_not_longer(db_url: str, gate: Gate) -> None:
    """The deadline is the batch's (its first submission's plus the timeout): the caller
    hears of it once the timeout has passed, not much later."""

    async def scenario() -> float:
        async with authstore.open_async_cache(f"{db_url}?timeout=0.2") as cache:
            runner = await _install(cache, gate)
            blocker = await _block(runner, gate)
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(BackendUnavailableError):
                await asyncio.wait_for(cache.set("late", 1), PATIENCE)
            waited = loop.time() - began
            gate.open()
            await asyncio.gather(blocker, return_exceptions=True)
            return waited

    waited = asyncio.run(scenario())
    assert 0.18 <= waited < 1.2, waited


def test_a_cancelled_queued_operation_never_runs(db_url: str, gate: Gate) -> None:
    async def scenario() -> object:
        async with authstore.open_async_cache(db_url) as cache:
            runner = await _install(cache, gate)
            blocker = await _block(runner, gate)
            queued = asyncio.create_task(cache.set("cancelled", 1))
            await asyncio.sleep(0)  # queued now
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            gate.open()
            await blocker
            return await cache.get("cancelled")

    assert asyncio.run(scenario()) is None


def _two_inserts() -> Op[None]:
    """A transaction with the gate between its two writes."""
    yield Begin()
    for key in ("first", "second"):
        yield Query(
            "INSERT INTO authstore_cache (cache_key, value) VALUES (:key, :value)",
            {"key": key, "value": b"1"},
        )
        if key == "first":
            yield Query("SELECT gate()", fetch="one")


def test_a_caller_cancelled_mid_transaction_leaves_it_whole(
    db_url: str, db_path: Path, gate: Gate
) -> None:
    async def scenario() -> bool:
        async with authstore.open_async_cache(db_url) as cache:
            runner = await _install(cache, gate)
            caller = asyncio.create_task(_run(runner, _two_inserts()))
            await gate.wait_entered()
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            gate.open()
            await cache.exists("after")  # the worker is past the transaction
            connection = runner.connection
            assert connection is not None
            return bool(connection.in_transaction)

    assert asyncio.run(scenario()) is False
    rows = _count(db_path, "SELECT COUNT(*) FROM authstore_cache WHERE cache_key != 'after'")
    assert rows in (0, 2), rows  # both writes or neither
    assert rows == 2  # it had started: the worker finished it


def test_a_caller_cancelled_mid_transaction_on_a_given_connection(
    db_path: Path, gate: Gate
) -> None:
    async def scenario() -> tuple[int, bool]:
        connection = await aiosqlite.connect(db_path, isolation_level=None)
        try:
            runner = AsyncSQLiteRunner(SQLiteSettings("", connection=connection))
            await runner.run(_count_op())  # migrated
            await connection.create_function("gate", 0, gate)
            caller = asyncio.create_task(_run(runner, _two_inserts()))
            await gate.wait_entered()
            caller.cancel()
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await caller
            rows = await runner.run(_count_op())
            in_transaction = connection.in_transaction
            await runner.close()
            return rows, in_transaction
        finally:
            await connection.close()

    rows, in_transaction = asyncio.run(scenario())
    assert not in_transaction
    assert rows == 0  # cancelled on the caller's thread: rolled back


def _count_op() -> Op[int]:
    row = yield Query("SELECT COUNT(*) FROM authstore_cache", fetch="one")
    return int(row[0])


def test_waiting_for_a_busy_given_connection_times_out(db_path: Path, gate: Gate) -> None:
    async def scenario() -> BaseException | None:
        connection = await aiosqlite.connect(db_path, isolation_level=None)
        try:
            settings = SQLiteSettings("", connection=connection, timeout=0.2)
            first, second = AsyncSQLiteRunner(settings), AsyncSQLiteRunner(settings)
            await first.run(_count_op())
            await connection.create_function("gate", 0, gate)
            blocker = asyncio.create_task(first.run(gated()))
            await gate.wait_entered()
            try:
                await asyncio.wait_for(second.run(_count_op()), PATIENCE)
            except Exception as error:
                raised: BaseException | None = error
            else:
                raised = None
            gate.open()
            await blocker
            await first.close()
            await second.close()
            return raised
        finally:
            await connection.close()

    assert isinstance(asyncio.run(scenario()), BackendUnavailableError)


def test_close_lets_queued_operations_finish_then_refuses_work(db_url: str, gate: Gate) -> None:
    async def scenario() -> tuple[list[object], BaseException | None, bool]:
        cache = authstore.open_async_cache(db_url)
        runner = await _install(cache, gate)
        blocker = await _block(runner, gate)
        queued = [asyncio.create_task(cache.incr("n")) for _ in range(20)]
        await asyncio.sleep(0)
        closing = asyncio.create_task(cache.aclose())
        await asyncio.sleep(0)
        gate.open()
        await blocker
        results: list[object] = list(await asyncio.gather(*queued, return_exceptions=True))
        await asyncio.wait_for(closing, PATIENCE)
        try:
            await cache.get("n")
        except BackendError as error:
            after: BaseException | None = error
        else:
            after = None
        worker = runner._worker
        assert worker is not None and worker._thread is not None
        worker._thread.join(PATIENCE)  # it ends right after posting the last result
        return results, after, worker._thread.is_alive()

    results, after, alive = asyncio.run(scenario())
    assert sorted(results) == list(range(1, 21))  # type: ignore[type-var]
    assert isinstance(after, BackendError) and "closed" in str(after)
    assert not alive


def test_bad_input_after_close_is_still_a_value_error(db_url: str) -> None:
    async def scenario() -> None:
        cache = authstore.open_async_cache(db_url)
        await cache.set("k", 1)
        await cache.aclose()
        with pytest.raises(ValueError):
            await cache.check_rate_limit("k", 0, 60)
        with pytest.raises(BackendError, match="closed"):
            await cache.get("k")

    asyncio.run(scenario())


def test_a_closed_loop_does_not_break_the_store(db_url: str) -> None:
    """Each asyncio.run is a new loop: the store follows its caller from one to the next."""
    cache = authstore.open_async_cache(db_url)

    async def set_and_incr() -> int:
        await cache.set("k", 1)
        return await cache.incr("k")

    assert asyncio.run(set_and_incr()) == 2
    assert asyncio.run(set_and_incr()) == 2
    asyncio.run(cache.aclose())


def test_async_sqlite_needs_no_aiosqlite() -> None:
    code = (
        "import sys, asyncio\n"
        "sys.modules['aiosqlite'] = None  # as if it were not installed\n"
        "import authstore\n"
        "async def main():\n"
        "    async with authstore.open_async_cache('sqlite:///:memory:') as cache:\n"
        "        await cache.set('k', 1)\n"
        "        print(await cache.get('k'))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["1"], result.stdout + result.stderr


def test_an_idle_worker_ends_and_the_next_operation_starts_another(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio, "IDLE_EXIT", 0.05)

    async def scenario() -> tuple[bool, int]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("k", 1)
            worker = _runner(cache)._worker
            assert worker is not None
            first = worker._thread
            assert first is not None
            await asyncio.to_thread(first.join, PATIENCE)  # idle: it ends by itself
            ended = not first.is_alive()
            value = await asyncio.wait_for(cache.incr("k"), PATIENCE)
            return ended, value

    assert asyncio.run(scenario()) == (True, 2)


def test_an_operation_runs_whole_on_the_worker_thread(db_url: str) -> None:
    """One thread hop per operation: every statement of a transaction (magic-link issue:
    BEGIN, several statements, COMMIT) runs on the worker, none on the event loop."""

    async def scenario() -> tuple[list[tuple[int, str]], int]:
        async with authstore.open_async_magic_links(db_url) as links:
            await links.peek("warm-up")
            connection = links._runner.connection  # type: ignore[attr-defined]
            assert isinstance(connection, sqlite3.Connection)
            seen: list[tuple[int, str]] = []
            connection.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))
            await links.issue("u", "u@example.com", ttl=60)
            connection.set_trace_callback(None)
            return seen, threading.get_ident()

    seen, loop_thread = asyncio.run(scenario())
    assert seen[0][1].startswith("BEGIN") and seen[-1][1] == "COMMIT", seen
    threads = {thread for thread, _ in seen}
    assert len(threads) == 1 and loop_thread not in threads


def test_a_lock_wait_does_not_hold_back_earlier_results(db_url: str, db_path: Path) -> None:
    """The worker holds finished results back while more work is queued (to wake the
    loop once per batch): an operation that then waits for another writer's lock must
    not keep them."""

    async def scenario() -> tuple[object, bool, object]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("quick", 7)
            other = sqlite3.connect(db_path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
                quick = asyncio.create_task(cache.get("quick"))
                slow = asyncio.create_task(cache.set("slow", 1))  # waits for the lock
                try:
                    done = await asyncio.wait_for(quick, PATIENCE)
                    slow_waiting = not slow.done()
                finally:
                    other.execute("COMMIT")
                return done, slow_waiting, await slow
            finally:
                other.close()

    assert asyncio.run(scenario()) == (7, True, None)


def test_a_read_sees_every_write_committed_before_it_was_called(db_url: str) -> None:
    """The reads of one batch share one read transaction: it must end with its batch,
    or a later read would still see the snapshot taken before another connection's
    write."""

    async def scenario() -> list[object]:
        async with authstore.open_async_cache(db_url) as cache:
            other = authstore.open_cache(db_url)  # another connection, on this thread
            try:
                seen = []
                for value in range(1, 4):
                    other.set("k", value)
                    seen += await asyncio.gather(cache.get("k"), cache.get("k"))  # one batch
                    await asyncio.sleep(0.01)  # the worker idle between batches
                return seen
            finally:
                other.close()

    assert asyncio.run(scenario()) == [1, 1, 2, 2, 3, 3]


def test_a_write_in_a_batch_of_reads_runs_outside_their_read_transaction(
    db_url: str, gate: Gate
) -> None:
    """A batch of a read, a read that waits while another connection writes, then a
    write: the write must not run inside the reads' transaction, whose snapshot predates
    the other connection's commit (SQLite refuses that upgrade: SQLITE_BUSY_SNAPSHOT)."""

    async def scenario() -> tuple[object, object, object]:
        async with authstore.open_async_cache(db_url) as cache:
            runner = await _install(cache, gate)
            await cache.set("k", 0)
            other = authstore.open_cache(db_url)
            try:
                before = asyncio.create_task(cache.get("k"))
                gated_read = asyncio.create_task(_run(runner, gated()))
                write = asyncio.create_task(cache.set("k", 2))
                after = asyncio.create_task(cache.get("k"))
                await gate.wait_entered()  # the batch's first read ran: its snapshot is taken
                await asyncio.to_thread(other.set, "j", 1)  # another writer commits meanwhile
                gate.open()
                await gated_read
                await asyncio.wait_for(write, PATIENCE)
                return await before, await after, other.get("k")
            finally:
                other.close()

    assert asyncio.run(scenario()) == (0, 2, 2)


def _insert_then_fail(key: str) -> Op[None]:
    """A transaction that writes, then fails: it must leave nothing behind."""
    yield Begin()
    yield Query(
        "INSERT INTO authstore_cache (cache_key, value) VALUES (:key, :value)",
        {"key": key, "value": b"1"},
    )
    raise LookupError("the operation gives up after its write")


def test_a_failed_transaction_in_a_batch_of_writes_leaves_only_its_own_writes_out(
    db_url: str, db_path: Path
) -> None:
    """Writes of one batch share one transaction, each operation's own as a savepoint of
    it: the one that fails is rolled back alone."""

    async def scenario() -> list[object]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("warm-up", 0)
            runner = _runner(cache)
            return list(
                await asyncio.gather(
                    cache.set("before", 1),
                    runner.run(_insert_then_fail("failed")),
                    cache.set("after", 2),
                    return_exceptions=True,
                )
            )

    before, failed, after = asyncio.run(scenario())
    assert (before, after) == (None, None)
    assert isinstance(failed, LookupError)
    with sqlite3.connect(db_path) as connection:
        found = sorted(
            key for (key,) in connection.execute("SELECT cache_key FROM authstore_cache")
        )
    connection.close()
    assert found == ["authstore:k:after", "authstore:k:before", "authstore:k:warm-up"]


def test_no_caller_hears_of_a_write_before_its_transaction_commits(
    db_url: str, db_path: Path
) -> None:
    """The batch's commit fails (an authorizer refuses COMMIT): every write of the batch
    fails with it, and none of them is there."""

    def refuse_commit(action: int, what: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and what == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async def scenario() -> list[object]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("warm-up", 0)
            connection = _runner(cache).connection
            assert isinstance(connection, sqlite3.Connection)
            connection.set_authorizer(refuse_commit)  # the worker is idle: safe from here
            try:
                return list(
                    await asyncio.gather(
                        *(cache.set(f"k{i}", i) for i in range(5)), return_exceptions=True
                    )
                )
            finally:
                await cache.exists("k0")  # a read: no commit refused, the worker is done
                connection.set_authorizer(None)

    results = asyncio.run(scenario())
    assert all(isinstance(result, BackendError) for result in results), results
    assert _count(db_path, "SELECT COUNT(*) FROM authstore_cache") == 1


def test_a_long_batch_of_writes_commits_as_it_goes(
    db_url: str, db_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's write transaction commits once it has been open GROUP_FOR: the writes
    before an operation that runs long are committed, and their callers told, while it
    runs (it never holds the database's write lock, nor their results, for the batch)."""
    monkeypatch.setattr(aio, "GROUP_FOR", 0.0)

    async def scenario() -> tuple[list[object], int]:
        async with authstore.open_async_cache(db_url) as cache:
            runner = await _install(cache, gate)
            writes = [asyncio.create_task(cache.set(key, 1)) for key in ("a", "b")]
            blocker = asyncio.create_task(_run(runner, gated()))
            try:
                await gate.wait_entered()
                done = list(await asyncio.wait_for(asyncio.gather(*writes), PATIENCE))
                seen = await asyncio.to_thread(
                    _count, db_path, "SELECT COUNT(*) FROM authstore_cache"
                )
            finally:
                gate.open()
                await blocker
            return done, seen

    assert asyncio.run(scenario()) == ([None, None], 2)


def test_a_lock_wait_does_not_hold_back_earlier_results_whatever_the_looks(
    db_url: str, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop takes the results finished so far as soon as a look finds that the worker
    finished nothing since the last one: it never waits for LOOKS looks then."""
    monkeypatch.setattr(aio, "LOOKS", 10**9)
    test_a_lock_wait_does_not_hold_back_earlier_results(db_url, db_path)


def test_results_reach_their_callers_while_the_worker_never_runs_out_of_work(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker posts results when its queue is empty; callers that keep submitting
    keep it from ever being empty, and every look finds that it finished operations
    since the one before. Their results must reach them all the same: the loop takes
    them after LOOKS looks (long looks here: no operation is slow enough for a look to
    find the worker stalled)."""
    monkeypatch.setattr(aio, "GROUP_FOR", 0.0)
    monkeypatch.setattr(aio, "POST_EVERY", 0.05)

    def slow() -> Op[Any]:
        row = yield Query("SELECT pause()", fetch="one")
        return row

    async def scenario() -> tuple[object, bool]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.exists("warm-up")
            runner = _runner(cache)
            connection = runner.connection
            assert isinstance(connection, sqlite3.Connection)
            # tens of microseconds on the worker, holding the GIL
            connection.create_function("pause", 0, lambda: sum(range(3000)) and 1)
            worker = runner._worker
            assert worker is not None
            flood: list[asyncio.Task[Any]] = []
            stop = asyncio.Event()

            async def keep_it_busy() -> None:
                while not stop.is_set():  # big batches queued at all times
                    if worker._batches.qsize() < 3:
                        flood.extend(asyncio.create_task(_run(runner, slow())) for _ in range(500))
                    await asyncio.sleep(0.001)  # not a busy loop: the worker gets the GIL

            feeder = asyncio.create_task(keep_it_busy())
            await asyncio.sleep(0.02)  # the worker's queue is never empty from here
            try:
                value = await asyncio.wait_for(cache.set("k", 1), 3)
                still_flooding = not stop.is_set()
            finally:
                stop.set()
                await feeder
                for task in flood:
                    task.cancel()  # queued ones are skipped
                await asyncio.gather(*flood, return_exceptions=True)
            return value, still_flooding

    assert asyncio.run(scenario()) == (None, True)


def test_a_cancelled_close_still_closes(db_url: str, gate: Gate) -> None:
    """close() queues the worker's last job; its caller cancelled, the job must still run
    (a job whose future is done is skipped, except that one): the connection closes and
    the thread ends."""

    async def scenario() -> tuple[bool, bool]:
        cache = authstore.open_async_cache(db_url)
        runner = await _install(cache, gate)
        blocker = await _block(runner, gate)
        closing = asyncio.create_task(cache.aclose())
        await asyncio.sleep(0.01)  # queued behind the blocker
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        gate.open()
        await blocker
        worker = runner._worker
        assert worker is not None and worker._thread is not None
        await asyncio.to_thread(worker._thread.join, PATIENCE)
        return worker._thread.is_alive(), runner.connection is None

    assert asyncio.run(scenario()) == (False, True)


def test_a_batch_reads_on_the_connection_that_replaced_a_broken_one(db_url: str) -> None:
    """A batch whose commit and rollback both fail leaves the worker's connection inside
    its transaction: the worker closes it, and the next operation opens another. The
    batches after that read on the new connection (the short path's reused cursor
    follows it), every one of their reads answered."""

    def refuse_ending(action: int, what: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and what in ("COMMIT", "ROLLBACK"):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async def scenario() -> tuple[list[object], list[object], bool]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("k", 1)
            assert await asyncio.gather(*(cache.get("k") for _ in range(5))) == [1] * 5
            old = _runner(cache).connection
            assert isinstance(old, sqlite3.Connection)
            old.set_authorizer(refuse_ending)  # the worker is idle: safe from here
            failed = await asyncio.gather(
                *(cache.set(f"k{i}", i) for i in range(3)), return_exceptions=True
            )
            read = list(await asyncio.gather(*(cache.get("k") for _ in range(5))))
            read += await asyncio.gather(*(cache.get("k") for _ in range(5)))
            return failed, read, _runner(cache).connection is not old

    failed, read, replaced = asyncio.run(scenario())
    assert all(isinstance(result, BackendError) for result in failed), failed
    assert replaced
    assert read == [1] * 10


def _two_results(
    first_waiter: Callable[[object], None],
) -> tuple[aio._Port, asyncio.Future[Any], list[object]]:
    """The event loop's side of a runner, with no worker behind it, holding two results
    for it to hand out, 1 then 2: the first's future has ``first_waiter`` for its waiter,
    the second's records what it hears (returned with the port and that future)."""
    loop = asyncio.get_running_loop()
    port = aio._Port(loop, cast(aio._Worker, None), PATIENCE)
    first, second = loop.create_future(), loop.create_future()
    first.add_done_callback(first_waiter)
    heard: list[object] = []
    second.add_done_callback(lambda future: heard.append(future.result()))
    port.finished.extend([(first, True, 1), (second, True, 2)])
    return port, second, heard


def test_a_waiter_that_raises_holds_back_no_other_result() -> None:
    """The loop wakes each future's waiters itself when results come back: a callback
    that raises goes to the loop's exception handler, and the results after it still
    reach their callers in the same turn of the loop."""

    def fail(_: object) -> None:
        raise RuntimeError("a waiter failed")

    async def scenario() -> tuple[object, list[object], list[str]]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _, context: reported.append(str(context["exception"])))
        port, second, heard = _two_results(fail)
        loop.call_soon(port._settle)  # as a post from the worker runs it
        await asyncio.sleep(0)
        return second.result() if second.done() else None, heard, reported

    assert asyncio.run(scenario()) == (2, [2], ["a waiter failed"])


def test_an_exit_raised_by_a_waiter_leaves_the_other_results_to_the_next_turn() -> None:
    """A waiter that raises SystemExit (or KeyboardInterrupt) stops the loop's handing
    out of results, as it stops the loop: the results not handed out yet are handed out
    in the loop's next turn, none lost."""

    def leave(_: object) -> None:
        raise SystemExit(3)

    async def scenario() -> tuple[bool, object, list[object]]:
        port, second, heard = _two_results(leave)
        with pytest.raises(SystemExit):
            port._settle()  # called here: the exit would otherwise stop the loop
        stopped_before = not second.done()
        await asyncio.sleep(0)
        return stopped_before, second.result() if second.done() else None, heard

    assert asyncio.run(scenario()) == (True, 2, [2])


class _OwnFutures(asyncio.SelectorEventLoop):
    """A loop whose futures are not asyncio's C ones (asyncio's pure Python Future)."""

    def create_future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.futures._PyFuture(loop=self)  # type: ignore[attr-defined]
        return future


def test_a_loop_with_futures_of_its_own_gets_every_result(db_url: str) -> None:
    """On a loop with futures of its own the runner makes them with the loop's
    ``create_future`` and sets their results for the loop to hand out: every caller
    hears."""

    async def scenario() -> list[object]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("k", 1)
            return list(await asyncio.gather(*(cache.get("k") for _ in range(5))))

    loop = _OwnFutures()
    loop.call_later(PATIENCE, loop.stop)  # a caller never woken fails the test, not hangs it
    try:
        assert loop.run_until_complete(scenario()) == [1] * 5
    finally:
        loop.close()


def _undecodable() -> Op[Any]:
    row = yield Query("SELECT CAST(x'ff' AS TEXT)", fetch="one")  # not UTF-8: sqlite3 refuses it
    return row


def test_the_reads_after_one_that_failed_in_their_batch_are_answered(db_url: str) -> None:
    """A read that fails on the worker's reused cursor (its row is not UTF-8) closes that
    cursor: the reads after it, in its batch and in the next, run on a new one."""

    async def scenario() -> tuple[list[object], list[object]]:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("k", 1)
            runner = _runner(cache)
            first = await asyncio.gather(
                cache.get("k"),  # opens the batch's read group: the others take the short path
                runner.run(_undecodable()),
                cache.get("k"),
                cache.get("k"),
                return_exceptions=True,
            )
            second = await asyncio.gather(*(cache.get("k") for _ in range(3)))
            return first, list(second)

    first, second = asyncio.run(scenario())
    assert isinstance(first[1], BackendError) and "UTF-8" in str(first[1]), first
    assert [first[0], *first[2:]] == [1, 1, 1]
    assert second == [1, 1, 1]


def test_a_lone_transaction_whose_rollback_fails_leaves_its_connection_behind(
    db_url: str, db_path: Path
) -> None:
    """An operation alone on the worker (no group) fails inside its transaction and its
    ROLLBACK is refused: the worker closes that connection, still inside the transaction,
    and the next operation runs on a new one (its write committed, the failed one's not
    there)."""

    def refuse_rollback(action: int, what: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and what == "ROLLBACK":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async def scenario() -> object:
        async with authstore.open_async_cache(db_url) as cache:
            await cache.set("warm-up", 0)
            runner = _runner(cache)
            old = runner.connection
            assert isinstance(old, sqlite3.Connection)
            old.set_authorizer(refuse_rollback)  # the worker is idle: safe from here
            failed = await asyncio.gather(
                runner.run(_insert_then_fail("failed")), return_exceptions=True
            )
            await cache.set("after", 1)
            assert runner.connection is not old
            return failed[0]

    failed = asyncio.run(scenario())
    assert isinstance(failed, LookupError)
    with sqlite3.connect(db_path) as connection:
        found = sorted(
            key for (key,) in connection.execute("SELECT cache_key FROM authstore_cache")
        )
    connection.close()
    assert found == ["authstore:k:after", "authstore:k:warm-up"]
