"""The async SQLite runner: each operation runs whole on a thread that owns the connection.

sqlite3 blocks, so an async runner must run it on another thread. Handing each
statement over (aiosqlite: execute, fetch, close the cursor; three hops a statement)
made async SQLite a tenth as fast as sync. Here an operation crosses once: the
caller queues it, one worker thread per store runs it through the sync runner (the
same connection handling, transactions and errors as sync stores), and its result
comes back with those of every operation finished meanwhile, in one wake-up of the
event loop. The operations submitted in one turn of the loop reach the worker
together, in one wake-up of the worker, and share transactions there (a group commit:
see ``_BatchRunner``). The worker runs operations one at a time, so a transaction never
interleaves with another; a caller that is cancelled or times out while its operation
runs leaves it to finish on the worker (committed or rolled back whole, never half).

Every operation is bounded by ``timeout``, its wait in the queue included: past it,
its caller gets BackendUnavailableError, and the worker skips it if it has not
started. ``close()`` lets the operations queued before it finish, then closes the
connection and ends the thread.

A caller's own ``aiosqlite.Connection`` (``connection=``) runs on aiosqlite's thread
instead, one statement at a time under a lock shared by every store given it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
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
operations are outstanding, the loop also looks for them this often (seconds). Each post
wakes the loop, which then competes with the worker for the GIL: posting per operation
halved the throughput under 100 callers."""

LOOKS = 3
"""While the worker keeps finishing operations, the loop leaves their results to it (it
posts them when it runs out of work: one wake-up a batch) for at most this many looks;
at a look after which the worker finished nothing (an operation waits for a lock, or
runs long) it takes them at once. Taking them at every look cut the batches of
operations slower than a look's share (100 callers issuing magic links: 34-40
operations a batch instead of 57-68, and a fifth more commits), the loop and the worker
fighting for the GIL in between."""

GROUP_FOR = 0.004
"""A write transaction shared by a batch's operations commits once it has been open
this long (seconds), at the next operation's end: a large batch holds neither the
database's write lock nor its results for long."""

IDLE_EXIT = 10.0
"""Seconds without work after which the worker thread ends (the next operation starts
another): a store nobody closes holds no thread for ever."""

_Job = tuple["Op[Any] | None", "asyncio.Future[Any]"]
"""An operation and the future its caller awaits; the operation None is the worker's
last job, closing the connection. A future done before the worker starts its operation
(the caller was cancelled, or its deadline passed) means the operation is skipped."""

_Result = tuple["asyncio.Future[Any]", bool, Any]
"""A future, whether the operation succeeded, and its value or error."""


class _Batch:
    """The operations submitted in one turn of one event loop, handed to the worker
    together. They share a deadline: the batch's first submission's plus the timeout
    (a later one's wait counts from there: never longer than its own timeout)."""

    __slots__ = ("deadline", "done", "jobs", "port")

    def __init__(self, port: _Port, jobs: list[_Job], deadline: float) -> None:
        self.port = port
        self.jobs = jobs
        self.deadline = deadline
        self.done = False
        """Set by the worker once every result of the batch is in ``port.finished`` (or
        its operation was skipped): nothing of it is left to time out."""


class _Port:
    """The runner's side in one event loop. Operations go to the worker in batches: the
    first one submitted in a turn of the loop schedules a hand-over, which runs once
    every caller ready in that turn has submitted its own, and wakes the worker once for
    all of them (waking it per operation made it fight the loop for the GIL while the
    loop still ran callers). Results come back in batches too: one wake-up of the loop
    for all the operations the worker finished meanwhile. One timer fails the operations
    whose deadline passed (batches are queued in deadline order, so the timer only ever
    watches the oldest).

    The worker posts its results when it runs out of work; while operations are
    outstanding the loop also looks every POST_EVERY, and takes the results finished so
    far when the worker finished nothing since its last look (an operation that runs
    long never holds back the results finished before it) or after LOOKS looks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: _Worker, timeout: float) -> None:
        self.loop = loop
        own = type(loop).create_future is asyncio.BaseEventLoop.create_future
        self.new_future: Callable[[], asyncio.Future[Any]] = (
            asyncio.Future if own else loop.create_future
        )
        """``loop.create_future``, without its Python frame where it is asyncio's own (a
        future made on the loop's thread takes the running loop)."""
        self._wake = (
            own
            and asyncio.Future.__module__ == "_asyncio"
            and hasattr(asyncio.Future, "_callbacks")  # a later Python may drop it
        )
        """``_settle`` wakes the callers itself: the futures are asyncio's own, in C."""
        self._worker = worker
        self._timeout = timeout
        self.outgoing: list[_Job] = []
        self.began = 0.0
        """When the first operation of ``outgoing`` was submitted (the loop's clock)."""
        self.finished: deque[_Result] = deque()
        self._posted = False
        self._waiting: deque[_Batch] = deque()
        """The batches handed over whose results are not all finished, oldest first."""
        self._timer: asyncio.TimerHandle | None = None
        self._collecting: asyncio.TimerHandle | None = None
        self._seen = -1
        """The worker's count of finished operations at the last look."""
        self._looks = 0
        """Looks since results last reached the loop."""

    def hand_over(self) -> None:
        jobs, self.outgoing = self.outgoing, []
        batch = _Batch(self, jobs, self.began + self._timeout)
        self._waiting.append(batch)
        loop = self.loop
        if self._timer is None:
            self._timer = loop.call_at(batch.deadline, self._expire)
        if self._collecting is None:
            self._collecting = loop.call_later(POST_EVERY, self._collect)
        self._worker.put(batch)

    # --- the worker thread ------------------------------------------------------------

    def post(self) -> None:
        if self.finished and not self._posted:
            # Set before posting; _settle clears it before it drains, so a result added
            # while it drains is either drained by it or posted anew.
            self._posted = True
            try:
                self.loop.call_soon_threadsafe(self._settle)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                self.finished.clear()

    # --- the event loop ---------------------------------------------------------------

    def _settle(self) -> None:
        """Hand the finished results to their futures' callers.

        ``set_result`` has the loop call a future's callbacks later: one Handle each, run
        in a later turn of the loop (call_soon, Handle and its run: the loop's 21.9k
        instructions per cache get under 100 callers were 15.0k without them, callgrind).
        Where the futures are asyncio's own, this wakes their callers itself, now: it
        takes a future's callbacks off (as a rule one, the wake-up of the task that
        awaits it), sets the result, then runs each in its context as the loop would (an
        exception goes to the loop's handler).
        ``_settle`` runs as a callback of its own (posted, or from ``_collect``), never
        inside a task: the tasks it wakes take their step here, one after another."""
        self._posted = False
        self._looks = 0
        finished = self.finished
        wake = self._wake
        while finished:
            future, ok, value = finished.popleft()
            if future.done():
                continue  # cancelled, or past its deadline
            callbacks = future._callbacks if wake else None
            if callbacks:
                for callback, _ in callbacks:
                    future.remove_done_callback(callback)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
            if callbacks:
                for callback, context in callbacks:
                    try:
                        context.run(callback, future)
                    except (SystemExit, KeyboardInterrupt):
                        if finished:
                            self.loop.call_soon(self._settle)  # the rest, in the next turn
                        raise
                    except BaseException as error:
                        self.loop.call_exception_handler(
                            {
                                "message": f"Exception in callback {callback!r}",
                                "exception": error,
                                "future": future,
                            }
                        )

    def _prune(self) -> None:
        waiting = self._waiting
        while waiting and waiting[0].done:
            waiting.popleft()

    def _collect(self) -> None:
        self._collecting = None
        ran = self._worker.ran
        if ran == self._seen or self._looks >= LOOKS:
            self._settle()
        else:
            self._looks += 1
        self._seen = ran
        self._prune()
        if self._waiting or self.finished:
            self._collecting = self.loop.call_later(POST_EVERY, self._collect)

    def _expire(self) -> None:
        self._timer = None
        self._prune()
        now = self.loop.time()
        waiting = self._waiting
        while waiting:
            batch = waiting[0]
            if batch.deadline > now:
                self._timer = self.loop.call_at(batch.deadline, self._expire)
                return
            for op, future in batch.jobs:
                if op is not None and not future.done():  # closing has no deadline
                    future.set_exception(
                        BackendUnavailableError(
                            f"sqlite: no result within {self._timeout:g} s (the store's "
                            "earlier operations, or another writer's lock, held it up)"
                        )
                    )
            waiting.popleft()


def _control(text: str) -> Statement:
    return Statement(text, (), "none")


_BEGIN_READS, _BEGIN_WRITES, _COMMIT, _ROLLBACK = map(
    _control, ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
)
_SAVEPOINT, _RELEASE, _ROLLBACK_TO = map(
    _control,
    ("SAVEPOINT authstore_op", "RELEASE authstore_op", "ROLLBACK TO authstore_op"),
)
_WRITES = ("INSERT", "UPDATE", "DELETE")


class _BatchRunner(SyncSQLiteRunner):
    """The worker's sync runner: the operations of one batch share transactions.

    In WAL mode each statement outside a transaction opens and ends a read transaction
    of its own (shared-memory locks on the ``-shm`` file), about half the cost of a
    cheap SELECT, and each write transaction commits on its own (WAL frames written for
    every commit, pages rewritten again and again). Here consecutive operations of a
    batch share one transaction, a *group*:

    - a **read group** (a deferred BEGIN) for SELECTs run outside an operation's own
      transaction;
    - a **write group** (BEGIN IMMEDIATE) for INSERT, UPDATE and DELETE run outside one
      and for operations' own transactions, each of which runs as a savepoint of the
      group (its BEGIN, COMMIT and ROLLBACK become SAVEPOINT, RELEASE and ROLLBACK TO):
      an operation that fails leaves nothing behind, the others in the group stay.

    A SELECT in a write group runs in it (a rate limiter reads, then writes: one group
    for the whole batch). Any other statement (a PRAGMA, DDL) ends the group first. The
    worker ends the group after each batch, so it never outlives its batch. Inside a
    write group nothing waits for another connection's lock (the group holds the write
    lock; in WAL, readers never block it): only its BEGIN IMMEDIATE waits, before any
    result is held for it.

    A result computed in a write group is *held* (``writing``) until the group commits:
    no caller hears of a write, or reads one, that might still be rolled back. When the
    commit fails, or SQLite rolls the whole group back after an error, every operation
    held for it gets the error instead.

    Reads stay linearizable: every operation of a batch was submitted before the batch
    reached the worker, so a group's snapshot, taken at its first statement, is taken
    after each of its operations started and before any of them returned. Transactions
    stay isolated: the group holds the write lock from its first write to its commit,
    and its operations run one at a time.
    """

    def __init__(self, settings: SQLiteSettings, *, auto_migrate: bool = True) -> None:
        super().__init__(settings, auto_migrate=auto_migrate)
        self.group: Statement | None = None
        """The open group's BEGIN, or None."""
        self._in_op = False
        """An operation's own transaction is open, as the savepoint."""
        self.group_began = 0.0
        self.alone = False
        """The operation running is the last of its batch and no group is open: it runs
        as on a sync store (a group of one would only add statements)."""
        self._held: list[_Result] = []
        self._cursor: sqlite3.Cursor | None = None
        """The short path's cursor, reused (worker thread only)."""
        self.deliver: Callable[[_Result], None] = lambda result: None
        """Hands a result to its caller: held ones when their group ends (the worker's)."""

    @property
    def writing(self) -> bool:
        """A write group is open: a result computed now is to be held."""
        return self.group is _BEGIN_WRITES

    def hold(self, result: _Result) -> None:
        self._held.append(result)

    def _execute(self, statement: Statement) -> Any:
        connection = self._connection or self._connect()
        text = statement.text
        group = self.group
        if (
            group is not None
            and not self._in_op
            and (text.startswith("SELECT") or (group is _BEGIN_WRITES and text.startswith(_WRITES)))
        ):
            # The common case, in short: a statement of the open group's kind (what
            # follows would run it in the group all the same), on the worker's one cursor.
            cursor = self._cursor
            if cursor is None or cursor.connection is not connection:
                cursor = self._cursor = connection.cursor()
            try:
                return execute(connection, statement, cursor)
            except BackendError as error:
                self._cursor = None  # closed by execute
                if not connection.in_transaction:
                    self._abort(error)  # SQLite rolled the whole group back
                raise
        if self._in_op:
            if text in ("COMMIT", "ROLLBACK"):
                self._in_op = False
                try:
                    if text == "ROLLBACK":
                        execute(connection, _ROLLBACK_TO)
                    return execute(connection, _RELEASE)
                except BackendError as error:
                    # the operation's writes might stay in the group: the group goes
                    self._abort(error)
                    raise
            return self._in_group(connection, statement)
        if self.alone and self.group is None:
            return execute(connection, statement)
        if not self._prepared:
            # The connection's setup and migration run as they do on sync stores: a
            # migration never waits in a group that might still roll back.
            if self.group is not None:
                self.end_group()
            return execute(self._connection or self._connect(), statement)
        begin = text == self.dialect.begin
        if text.startswith("SELECT"):
            wanted: Statement | None = _BEGIN_READS if self.group is None else self.group
        elif begin or text.startswith(_WRITES):
            wanted = _BEGIN_WRITES
        elif text in ("COMMIT", "ROLLBACK") and self.group is not None:
            return None  # an operation's, for a BEGIN that failed: the group is not its
        else:
            wanted = None
        group = self.group
        if group is not None and group is not wanted:
            self.end_group()
            connection = self._connection or self._connect()
        if wanted is not None and self.group is None and not connection.in_transaction:
            execute(connection, wanted)
            self.group_began = time.monotonic()
            self.group = wanted
        if begin and self.group is _BEGIN_WRITES:
            self._in_group(connection, _SAVEPOINT)
            self._in_op = True
            return None
        return self._in_group(connection, statement)

    def _in_group(self, connection: Any, statement: Statement) -> Any:
        try:
            return execute(connection, statement)
        except BackendError as error:
            if self.group is not None and not connection.in_transaction:
                self._abort(error)  # SQLite rolled the whole group back (a full disk, say)
            raise

    def _abort(self, error: BackendError) -> None:
        """Roll the whole group back; every result held for it gets ``error``."""
        self.group, self._in_op = None, False
        connection = self._connection
        with contextlib.suppress(BackendError):
            if connection is not None and connection.in_transaction:
                execute(connection, _ROLLBACK)
        self._fail_held(error)

    def _fail_held(self, error: BackendError) -> None:
        for future, ok, value in self._held:
            if ok:
                lost = type(error)(f"{error} (the transaction it was written in rolled back)")
                lost.__cause__ = error
                value, ok = lost, False
            self.deliver((future, ok, value))
        self._held.clear()

    def end_group(self) -> None:
        """Commit the open group, if any (worker thread only); its held results go to
        their callers, or on failure its error does."""
        group, self.group = self.group, None
        self._in_op = False
        if group is None:
            return
        connection = self._connection
        try:
            if connection is not None:
                execute(connection, _COMMIT)
        except BackendError as error:
            self._abort(error)
            super()._recover()  # still inside it: this connection is done
        else:
            for result in self._held:
                self.deliver(result)
            self._held.clear()

    def _recover(self) -> None:
        if self._in_op:  # the operation's savepoint is still open: the whole group goes
            self._abort(BackendError("sqlite: an operation failed inside its transaction"))
        if self.group is None:
            super()._recover()

    def close(self) -> None:
        self.end_group()
        self._cursor = None
        super().close()


class _Worker:
    """The thread that owns a sync runner and runs every operation on it, in order."""

    def __init__(self, runner: _BatchRunner, timeout: float) -> None:
        self.runner = runner
        self.timeout = timeout
        self._batches: SimpleQueue[_Batch] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.port: _Port | None = None
        self.closing = False
        self.ran = 0
        """Operations finished (or skipped) so far: the loop's sign of progress."""

    def submit(self, op: Op[Any] | None) -> asyncio.Future[Any]:
        """Queue ``op`` for the worker; the caller awaits the future. A caller who stops
        waiting (cancelled) cancels the future: the worker skips a job whose future is
        done, unless it already started it (then it ends whole)."""
        loop = asyncio.get_running_loop()
        port = self.port
        if port is None or port.loop is not loop:
            port = self.port = _Port(loop, self, self.timeout)
        future = port.new_future()
        outgoing = port.outgoing
        if not outgoing:
            port.began = loop.time()
            loop.call_soon(port.hand_over)
        outgoing.append((op, future))
        return future

    def put(self, batch: _Batch) -> None:
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
        monotonic = time.monotonic
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
            port = batch.port
            unposted.add(port)
            finished = runner.deliver = port.finished.append  # held results too
            jobs = batch.jobs
            last = len(jobs) - 1
            for index, (op, future) in enumerate(jobs):
                if op is None:
                    try:
                        runner.close()
                        result: _Result = (future, True, None)
                    except BaseException as error:
                        result = (future, False, error)
                    finished(result)
                    batch.done = True
                    # closed: nothing can be queued behind it any more
                    for port in unposted:
                        port.post()
                    return
                if future.done():  # abandoned: cancelled, or past its deadline
                    self.ran += 1
                    continue
                runner.alone = index == last
                try:
                    result = (future, True, runner.run(op))
                except BaseException as error:  # handed to the caller, whatever it is
                    result = (future, False, error)
                self.ran += 1
                if runner.group is _BEGIN_WRITES:  # ``writing``, without a call
                    runner.hold(result)
                    if monotonic() - runner.group_began > GROUP_FOR:
                        runner.end_group()
                else:
                    finished(result)
            runner.end_group()
            batch.done = True


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

    def run(self, op: Op[T]) -> Awaitable[T]:
        """The worker's future for ``op``, queued now; a caller's connection's, or a
        closed runner's, coroutine. A future, not a coroutine awaiting it: a caller
        awaits one frame less (1.3k instructions of the loop's 15k per cache get under
        100 callers). A cancelled caller cancels the future. Not started: the worker
        skips it. Started: it ends whole on the worker."""
        worker = self._worker
        if worker is None or worker.closing:
            return self._run_elsewhere(op)
        return worker.submit(op)

    async def _run_elsewhere(self, op: Op[T]) -> T:
        if self._worker is None:
            return await self._run_given(op)
        # As the sync runner does once closed: bad arguments are still ValueErrors.
        return drive(self._program(op), lambda _: self._check_open())

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
            await worker.submit(None)
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
