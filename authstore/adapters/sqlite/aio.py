"""The async SQLite runner: each operation runs whole on a thread that owns the connection.

sqlite3 blocks, so an async runner must run it on another thread. Handing each
statement over (aiosqlite: execute, fetch, close the cursor; three hops a statement)
made async SQLite a tenth as fast as sync. Here an operation crosses once: the
caller queues it, one worker thread per store runs it through the sync runner (the
same connection handling, transactions and errors as sync stores), and its result
comes back with those of every operation finished meanwhile, in one wake-up of the
event loop. The operations submitted in one turn of the loop reach the worker
together, in one wake-up of the worker, and the reads among them share one read
transaction (see ``_BatchRunner``). The worker runs operations one at a time, so a
transaction never interleaves with another; a caller that is cancelled or times out
while its operation runs leaves it to finish on the worker (committed or rolled back
whole, never half).

Every operation is bounded by ``timeout``, its wait in the queue included: past it,
its caller gets BackendUnavailableError, and the worker skips it if it has not
started. ``close()`` lets the operations queued before it finish, then closes the
connection and ends the thread.

A caller's own ``aiosqlite.Connection`` (``connection=``) runs on aiosqlite's thread
instead, one statement at a time under a lock shared by every store given it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, TypeVar

from authstore.adapters.common.ops import Op, drive
from authstore.adapters.sql.program import Statement, drive_async
from authstore.adapters.sqlite.runner import SQLITE_ERRORS, SQLiteRunnerBase, translate_error
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.adapters.sqlite.sync import SyncSQLiteRunner, execute
from authstore.contracts.errors import BackendError, BackendUnavailableError

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["AsyncSQLiteRunner"]

T = TypeVar("T")

POST_EVERY = 0.004
"""The worker posts finished results to the event loop when it runs out of work; while
operations are outstanding, the loop also collects them this often (seconds). Each post
wakes the loop, which then competes with the worker for the GIL: posting per operation
halved the throughput under 100 callers."""

IDLE_EXIT = 10.0
"""Seconds without work after which the worker thread ends (the next operation starts
another): a store nobody closes holds no thread for ever."""


class _Job:
    """One operation on its way through the worker."""

    __slots__ = ("abandoned", "deadline", "future", "op", "port")

    def __init__(self, op: Op[Any] | None, port: _Port, deadline: float) -> None:
        self.op = op
        """None: the worker's last job, closing the connection."""
        self.port = port
        self.future: asyncio.Future[Any] = port.loop.create_future()
        self.deadline = deadline
        self.abandoned = False
        """Set by the event loop when the caller stopped waiting: not to be started."""


class _Port:
    """The runner's side in one event loop. Operations go to the worker in batches: the
    first one submitted in a turn of the loop schedules a hand-over, which runs once
    every caller ready in that turn has submitted its own, and wakes the worker once for
    all of them (waking it per operation made it fight the loop for the GIL while the
    loop still ran callers). Results come back in batches too: one wake-up of the loop
    for all the operations the worker finished meanwhile. One timer fails the operations
    whose deadline passed (they are queued in deadline order, so the timer only ever
    watches the oldest).

    The worker posts its results when it runs out of work; while operations are
    outstanding the loop also collects them every POST_EVERY, so an operation that
    runs long on the worker never holds back the results finished before it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: _Worker, timeout: float) -> None:
        self.loop = loop
        self._worker = worker
        self._timeout = timeout
        self._outgoing: list[_Job] = []
        self._finished: deque[tuple[_Job, bool, Any]] = deque()
        self._posted = False
        self._waiting: deque[_Job] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._collecting: asyncio.TimerHandle | None = None

    def submit(self, op: Op[Any] | None) -> _Job:
        loop = self.loop
        job = _Job(op, self, loop.time() + self._timeout)
        if op is not None:
            self._watch(job)
        outgoing = self._outgoing
        outgoing.append(job)
        if len(outgoing) == 1:
            loop.call_soon(self._hand_over)
        return job

    def _hand_over(self) -> None:
        batch, self._outgoing = self._outgoing, []
        self._worker.put(batch)

    # --- the worker thread ------------------------------------------------------------

    def finish(self, job: _Job, ok: bool, value: Any) -> None:
        self._finished.append((job, ok, value))

    def post(self) -> None:
        if self._finished and not self._posted:
            # Set before posting; _settle clears it before it drains, so a result added
            # while it drains is either drained by it or posted anew.
            self._posted = True
            try:
                self.loop.call_soon_threadsafe(self._settle)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                self._finished.clear()

    # --- the event loop ---------------------------------------------------------------

    def _settle(self) -> None:
        self._posted = False
        finished = self._finished
        while finished:
            job, ok, value = finished.popleft()
            future = job.future
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _watch(self, job: _Job) -> None:
        waiting = self._waiting
        while waiting and waiting[0].future.done():
            waiting.popleft()
        waiting.append(job)
        if self._timer is None:
            self._timer = self.loop.call_at(job.deadline, self._expire)
        if self._collecting is None:
            self._collecting = self.loop.call_later(POST_EVERY, self._collect)

    def _collect(self) -> None:
        self._collecting = None
        self._settle()
        waiting = self._waiting
        while waiting and waiting[0].future.done():
            waiting.popleft()
        if waiting:
            self._collecting = self.loop.call_later(POST_EVERY, self._collect)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        waiting = self._waiting
        while waiting:
            job = waiting[0]
            if not job.future.done():
                if job.deadline > now:
                    self._timer = self.loop.call_at(job.deadline, self._expire)
                    return
                job.abandoned = True
                job.future.set_exception(
                    BackendUnavailableError(
                        f"sqlite: no result within {self._timeout:g} s (the store's earlier "
                        "operations, or another writer's lock, held it up)"
                    )
                )
            waiting.popleft()


_BEGIN_READS = Statement("BEGIN", (), "none")
_END_READS = Statement("COMMIT", (), "none")


class _BatchRunner(SyncSQLiteRunner):
    """The worker's sync runner: the reads of one batch share one read transaction.

    In WAL mode each statement outside a transaction opens and ends a read transaction
    of its own (shared-memory locks on the ``-shm`` file), about half the cost of a
    cheap SELECT. Here a SELECT run outside an operation's transaction joins the read
    transaction open on the connection, or opens one (a deferred BEGIN); any other
    statement ends it first (an operation's BEGIN IMMEDIATE, a write, a PRAGMA), and
    the worker ends it after each batch, so it never outlives the batch.

    Reads stay linearizable: every operation of a batch was submitted before the batch
    reached the worker, so the snapshot, taken at the batch's first read, is taken after
    each of them started and before any of them returned; a write on this connection
    ends the transaction before it runs, so later reads see it. Nothing is ever written
    inside the shared transaction.
    """

    _reading = False

    def _execute(self, statement: Statement) -> Any:
        connection = self._connection or self._connect()
        if statement.text.startswith("SELECT"):
            if not self._reading and not connection.in_transaction:
                execute(connection, _BEGIN_READS)
                self._reading = True
        elif self._reading:
            self._reading = False
            execute(connection, _END_READS)
        return execute(connection, statement)

    def end_reads(self) -> None:
        """End the batch's read transaction, if one is open (worker thread only)."""
        if self._reading:
            self._reading = False
            connection = self._connection
            try:
                if connection is not None:
                    execute(connection, _END_READS)
            except BackendError:
                self._recover()  # still inside it: this connection is done

    def _recover(self) -> None:
        self.end_reads()
        super()._recover()

    def close(self) -> None:
        self.end_reads()
        super().close()


class _Worker:
    """The thread that owns a sync runner and runs every operation on it, in order."""

    def __init__(self, runner: _BatchRunner, timeout: float) -> None:
        self.runner = runner
        self._timeout = timeout
        self._batches: SimpleQueue[list[_Job]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._port: _Port | None = None
        self.closing = False

    def submit(self, op: Op[Any] | None) -> _Job:
        port = self._port
        loop = asyncio.get_running_loop()
        if port is None or port.loop is not loop:
            port = self._port = _Port(loop, self, self._timeout)
        return port.submit(op)

    def put(self, batch: list[_Job]) -> None:
        self._batches.put(batch)
        # After the put: a worker ending for idleness either sees the batch, or has
        # cleared _thread before it looked (see _work).
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._work, name="authstore-sqlite", daemon=True
                    )
                    self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _work(self) -> None:
        runner, batches = self.runner, self._batches
        unposted: set[_Port] = set()
        while True:
            if unposted and batches.empty():
                for port in unposted:
                    port.post()
                unposted.clear()
            try:
                batch = batches.get(timeout=IDLE_EXIT)
            except Empty:
                with self._start:
                    # Cleared before looking: a batch put after the look finds no thread
                    # and starts one; a batch put before it is seen here.
                    thread, self._thread = self._thread, None
                    if batches.empty():
                        return
                    self._thread = thread
                continue
            for job in batch:
                if job.abandoned:
                    continue
                op = job.op
                value: Any = None
                try:
                    if op is None:
                        runner.close()
                    else:
                        value = runner.run(op)
                    ok = True
                except BaseException as error:  # handed to the caller, whatever it is
                    value, ok = error, False
                port = job.port
                port.finish(job, ok, value)
                unposted.add(port)
                if op is None:  # closed: nothing can be queued behind it any more
                    for port in unposted:
                        port.post()
                    return
            runner.end_reads()


class AsyncSQLiteRunner(SQLiteRunnerBase[Any]):
    """One operation at a time per runner: a transaction never interleaves with another."""

    def __init__(self, settings: SQLiteSettings, *, auto_migrate: bool = True) -> None:
        # A caller's connection is an aiosqlite one, so aiosqlite is imported already;
        # without one, async SQLite needs nothing but the standard library.
        aiosqlite = sys.modules.get("aiosqlite")
        connection_type = type(None) if aiosqlite is None else aiosqlite.Connection
        super().__init__(
            settings, connection_type, "an aiosqlite.Connection", auto_migrate=auto_migrate
        )
        self._worker: _Worker | None = None
        self._lock: asyncio.Lock | None = None
        if self.owns_client:
            sync = _BatchRunner(settings, auto_migrate=auto_migrate)
            self.dialect = sync.dialect
            self._worker = _Worker(sync, settings.timeout)
        else:
            self._lock = self._new_lock(asyncio.Lock)

    @property
    def connection(self) -> Any:
        """The open connection, None before first use (for tracing and diagnostics): a
        sqlite3.Connection that belongs to the worker thread, or the caller's."""
        return self._connection if self._worker is None else self._worker.runner.connection

    async def run(self, op: Op[T]) -> T:
        worker = self._worker
        if worker is None:
            return await self._run_given(op)
        if worker.closing:
            # As the sync runner does once closed: bad arguments are still ValueErrors.
            return drive(self._program(op), lambda _: self._check_open())
        job = worker.submit(op)
        try:
            value: T = await job.future
        finally:
            if job.future.cancelled():
                # The caller was cancelled. Not started: the worker skips it. Started: it
                # ends whole on the worker.
                job.abandoned = True
        return value

    async def close(self) -> None:
        worker = self._worker
        if worker is None:
            await self._close_given()
            return
        self._closed = True
        if worker.closing:
            return
        worker.closing = True
        if worker.running:
            # Runs after the operations queued before it; it has no deadline of its own.
            await worker.submit(None).future
        else:
            worker.runner.close()

    # --- a caller's aiosqlite connection ----------------------------------------------

    async def _run_given(self, op: Op[T]) -> T:
        assert self._lock is not None
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise BackendUnavailableError(
                f"sqlite: the given connection stayed busy for {self.settings.timeout:g} s"
            ) from None
        try:
            return await drive_async(self._program(op), self._execute_given)
        finally:
            self._lock.release()

    async def _execute_given(self, statement: Statement) -> Any:
        self._check_open()
        connection: aiosqlite.Connection | None = self._connection
        assert connection is not None  # given at construction, never taken away
        try:
            async with connection.execute(statement.text, statement.args) as cursor:
                return statement.result(list(await cursor.fetchall()), cursor.rowcount)
        except SQLITE_ERRORS as error:  # aiosqlite raises the sqlite3 exceptions themselves
            raise translate_error(error) from error

    async def _close_given(self) -> None:
        assert self._lock is not None
        async with self._lock:
            self._take_for_close()  # the caller's connection: never closed here
