"""How every SQL runner executes an operation, written once for sync and async.

``statements`` turns an operation's commands into the statements a driver runs,
adding the transaction control around a ``Begin`` (commit when the operation
returns, roll back when anything fails). ``drive`` and ``drive_async`` feed those
statements to a driver call and nothing else: the only code a sync runner and an
async runner do not share is that one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from authstore.adapters.common.ops import Op, drive, drive_async
from authstore.adapters.sql.commands import Begin, Fetch, Query
from authstore.adapters.sql.dialect import Dialect

__all__ = ["Program", "Statement", "drive", "drive_async", "statements"]

T = TypeVar("T")


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


def _control(text: str) -> Statement:
    return Statement(text, (), "none")


def statements(op: Op[T], dialect: Dialect, *, before: Program[None] | None = None) -> Program[T]:
    """Run ``op``, yielding each statement to execute and receiving its result.

    A driver error is thrown back in here: inside a transaction it rolls back
    before the error goes on, so nothing half-written survives; outside one it is
    thrown into the operation, which may handle it or let it go on. ``before`` (a
    runner's connection setup) runs when the operation yields its first command,
    that is once its argument checks have passed: bad input fails before any I/O.
    """
    in_transaction = False
    result: Any = None
    failure: Exception | None = None
    compile_, clock = dialect.compile, dialect.clock
    try:
        while True:
            try:
                command = op.send(result) if failure is None else op.throw(failure)
            except StopIteration as done:
                value: T = done.value
                break
            failure = None
            if before is not None:
                yield from before
                before = None
            if isinstance(command, Query):
                compiled = compile_(command.sql)
                if clock is None or not compiled.clocked:
                    arguments = compiled.pick(command.params)
                else:
                    arguments = dialect.arguments(compiled, command.params)
                try:
                    result = yield Statement(compiled.text, arguments, command.fetch)
                except Exception as error:
                    if in_transaction:
                        raise  # the database aborted the transaction: nothing to go on with
                    # Outside a transaction the operation may handle it (a setup step that
                    # retries, say); one that does not re-raises it from its yield.
                    failure, result = error, None
            elif isinstance(command, Begin):
                if in_transaction:
                    raise RuntimeError("an operation yielded Begin inside its transaction")
                yield _control(dialect.begin)
                in_transaction, result = True, None
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
