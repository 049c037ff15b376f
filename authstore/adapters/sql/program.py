"""How every SQL runner executes an operation, written once for sync and async.

``statements`` turns an operation's commands into the statements a driver runs,
adding the transaction control around a ``Begin`` (commit when the operation
returns, roll back when anything fails). ``drive`` and ``drive_async`` feed those
statements to a driver call and nothing else: the only code a sync runner and an
async runner do not share is that one call.

``run`` and ``run_async`` (twins, as ``drive`` and ``drive_async``) add a fast path
in front of them for a runner whose schema is ready: an operation's first statement
goes straight to the driver call, and an operation that returns after it (most do:
one UPSERT, one SELECT) never meets ``statements`` or the driver loop. Its semantics
are those of ``statements`` outside a transaction: a driver error is thrown into the
operation, a cancellation closes it. Any other command (a ``Begin``, a second
statement) hands the started operation to ``statements``, from that command.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

from authstore.adapters.common.ops import Op, drive, drive_async
from authstore.adapters.sql.commands import Begin, Fetch, Query
from authstore.adapters.sql.dialect import Dialect

__all__ = [
    "TRANSACTION_RETRIES",
    "UNSTARTED",
    "Program",
    "Statement",
    "drive",
    "drive_async",
    "run",
    "run_async",
    "statement",
    "statements",
]

T = TypeVar("T")

TRANSACTION_RETRIES = 30
"""How often a transaction the database rolled back whole (a deadlock's victim, a
serialization failure) is replayed, at most; never past the runner's ``retry_within``
(its timeout). 200 concurrent link issues for 7 users on MariaDB: about 160 replays,
the unluckiest 19 times (concurrent first inserts of the users' lock rows deadlock on
the gap they share)."""


class Statement(NamedTuple):
    """One statement ready for the driver: placeholders and arguments in its style.

    A named tuple: one is built per statement, and a frozen dataclass costs several
    times as much to build."""

    text: str
    args: tuple[object, ...]
    fetch: Fetch

    def result(self, rows: list[Any], rowcount: int) -> Any:
        """Shape what the driver returned the way the operation asked for it."""
        if self.fetch == "one":
            return rows[0] if rows else None
        if self.fetch == "all":
            return rows
        if self.fetch == "rowcount":
            return rowcount
        return None


Program = Generator[Statement, Any, T]

UNSTARTED: Any = object()
"""``statements``' ``first`` when the operation has not been started."""

_new_statement = tuple.__new__  # the named tuple's own __new__ is a Python function


def statement(command: Query, dialect: Dialect) -> Statement:
    """A Query as the driver gets it: the dialect's placeholders, the arguments in their
    order (``:now`` read from the dialect's clock, where it has one)."""
    compiled = dialect.cached(command.sql) or dialect.compile(command.sql)
    if dialect.clock is None or not compiled.clocked:
        arguments = compiled.pick(command.params)
    else:
        arguments = dialect.arguments(compiled, command.params)
    made: Statement = _new_statement(Statement, (compiled.text, arguments, command.fetch))
    return made


def run(
    op: Op[T],
    dialect: Dialect | None,
    program: Callable[[Op[T], Any], Program[T]],
    execute: Callable[[Statement], Any],
) -> T:
    """``drive(program(op, UNSTARTED), execute)``, with the fast path for an operation
    whose first command is a Query (see the module docstring). ``dialect``: None while
    the runner must prepare (migrate) before its first statement, which only
    ``program`` does. ``program(op, command)`` goes on from ``command``, which the
    started ``op`` yielded last."""
    command = UNSTARTED
    if dialect is not None:
        try:
            command = next(op)  # the argument checks: bad input fails here
            if type(command) is Query:
                sent = statement(command, dialect)
                try:
                    result = execute(sent)
                except Exception as error:
                    command = op.throw(error)
                except BaseException:
                    op.close()
                    raise
                else:
                    command = op.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
    return drive(program(op, command), execute)


async def run_async(
    op: Op[T],
    dialect: Dialect | None,
    program: Callable[[Op[T], Any], Program[T]],
    execute: Callable[[Statement], Awaitable[Any]],
) -> T:
    """``run`` with an awaited driver call: the only difference between the two."""
    command = UNSTARTED
    if dialect is not None:
        try:
            command = next(op)  # the argument checks: bad input fails here
            if type(command) is Query:
                sent = statement(command, dialect)
                try:
                    result = await execute(sent)
                except Exception as error:
                    command = op.throw(error)
                except BaseException:
                    op.close()
                    raise
                else:
                    command = op.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
    return await drive_async(program(op, command), execute)


def _control(text: str) -> Statement:
    return Statement(text, (), "none")


def statements(
    op: Op[T],
    dialect: Dialect,
    *,
    before: Program[None] | None = None,
    rolled_back: Callable[[BaseException], bool] | None = None,
    retry_within: float = 0.0,
    first: Any = UNSTARTED,
) -> Program[T]:
    """Run ``op``, yielding each statement to execute and receiving its result;
    ``first``: the command ``op`` yielded last, when it was started already (``run``).

    A driver error is thrown back in here: inside a transaction it rolls back
    before the error goes on, so nothing half-written survives; outside one it is
    thrown into the operation, which may handle it or let it go on. ``before`` (a
    runner's connection setup) runs when the operation yields its first command,
    that is once its argument checks have passed: bad input fails before any I/O.

    An error for which ``rolled_back`` is true says the database rolled the whole
    transaction back and nothing else is wrong (a deadlock's victim): the transaction
    is replayed (see ``_replay``), at most ``TRANSACTION_RETRIES`` times and only
    within ``retry_within`` seconds of the operation's first statement.
    """
    in_transaction = False
    journal: list[tuple[Statement, Any]] = []
    """The statements of the open transaction and what each returned."""
    started = time.monotonic()
    result: Any = None
    failure: Exception | None = None
    try:
        while True:
            try:
                if first is UNSTARTED:
                    command = op.send(result) if failure is None else op.throw(failure)
                else:
                    command, first = first, UNSTARTED
            except StopIteration as done:
                value: T = done.value
                break
            failure = None
            if before is not None:
                yield from before
                before = None
            if isinstance(command, Query):
                sent = statement(command, dialect)
                try:
                    result = yield sent
                except Exception as error:
                    if in_transaction:
                        # the database aborted the transaction: replayed, or nothing to go
                        # on with
                        if rolled_back is None or not rolled_back(error):
                            raise
                        deadline = started + retry_within
                        result = yield from _replay(
                            dialect, journal, sent, error, rolled_back, deadline
                        )
                    else:
                        # Outside a transaction the operation may handle it (a setup step
                        # that retries, say); one that does not re-raises it from its yield.
                        failure, result = error, None
                if in_transaction:
                    journal.append((sent, result))
            elif isinstance(command, Begin):
                if in_transaction:
                    raise RuntimeError("an operation yielded Begin inside its transaction")
                # Open from the moment BEGIN is sent: a caller cancelled while BEGIN waits
                # (SQLite's BEGIN IMMEDIATE on a busy database) may leave it to begin later
                # on the driver's thread; the ROLLBACK queued behind it then ends it.
                in_transaction, result = True, None
                yield _control(dialect.begin)
            else:
                raise TypeError(f"a SQL operation yielded {command!r}")
        if in_transaction:
            yield _control(dialect.commit)
        return value
    except GeneratorExit:
        raise
    except BaseException:
        op.close()
        if in_transaction:
            # The database may have rolled back already (SQLite does on some errors):
            # the error worth reporting is the one that got us here.
            with contextlib.suppress(Exception):
                yield _control(dialect.rollback)
        raise


def _replay(
    dialect: Dialect,
    journal: list[tuple[Statement, Any]],
    statement: Statement,
    error: Exception,
    rolled_back: Callable[[BaseException], bool],
    deadline: float,
) -> Program[Any]:
    """After the database rolled the transaction back whole, run it again: BEGIN, the
    statements that went through, each of which must return exactly what it returned
    the first time, then ``statement``; its result goes on to the operation.

    The operation chose each statement from the results before it: when every one
    comes back the same, its choices hold in the new transaction too, and it goes on
    as if nothing happened (the first transaction left nothing behind). When one
    differs (another writer got in between), the original error goes on: the
    operation cannot be restarted from here, and a wrong answer is worse than none.
    """
    for _ in range(TRANSACTION_RETRIES):
        if time.monotonic() >= deadline:
            break
        try:
            # The database rolled back already (MySQL) or awaits a ROLLBACK (PostgreSQL)
            yield _control(dialect.rollback)
            yield _control(dialect.begin)
            for earlier, seen in journal:
                if (yield earlier) != seen:
                    raise error
            result = yield statement
        except Exception as again:
            if again is error or not rolled_back(again):
                raise
            error = again
            continue
        return result
    raise error
