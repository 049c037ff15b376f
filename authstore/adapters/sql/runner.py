"""What every SQL runner shares, whatever its database or driver: its settings and
dialect, the schema migrated on first use, and refusing work once closed.

A database's sync and async runners add only how they take a connection and run
one statement (``program.drive`` / ``drive_async`` do the rest).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.program import UNSTARTED, Program, statements
from authstore.adapters.sql.schema import Tables, migrate
from authstore.contracts.errors import StoreClosedError

__all__ = ["SqlRunnerBase", "SqlSettings", "connection_lock"]

T = TypeVar("T")
L = TypeVar("L")

_locks_guard = threading.Lock()
_locks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def connection_lock(connection: object, new_lock: Callable[[], L]) -> L:
    """The lock of a caller's single connection, shared by every store given it, so
    one store's statements never land inside another store's transaction."""
    with _locks_guard:
        lock = _locks.get(connection)
        if lock is None:
            lock = _locks[connection] = new_lock()
        return cast(L, lock)


class SqlSettings(Protocol):
    @property
    def tables(self) -> Tables: ...
    @property
    def display(self) -> str:
        """Where the store is, for reprs and errors: never a password."""

    @property
    def client(self) -> Any:
        """A connection or pool the caller owns, or None."""


S = TypeVar("S", bound=SqlSettings)
D = TypeVar("D", bound=Dialect)


class SqlRunnerBase(Generic[S, D]):
    """A runner migrates the schema on its first operation, on that operation's connection."""

    database = "SQL"
    """The database's name in messages."""

    def __init__(self, settings: S, dialect: D, *, auto_migrate: bool) -> None:
        self.settings = settings
        self.dialect = dialect
        self._prepared = not auto_migrate
        self._closed = False
        self.retry_within = 0.0
        """Seconds after an operation's start during which a transaction the database
        rolled back whole (``_rolled_back``) is replayed (see ``program.statements``)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.settings.display} "
            f"prefix={self.settings.tables.prefix!r}>"
        )

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def setup(self) -> Op[None]:
        """What runs once before the first operation; a database may add to it."""
        yield from migrate(self.dialect, self.settings.tables)

    def _rolled_back(self, error: BaseException) -> bool:
        """Whether ``error`` (translated, the driver's as its cause) says the database
        rolled the operation's transaction back whole and nothing else is wrong: a
        deadlock's victim, a serialization failure. Such a transaction is replayed."""
        return False

    def _program(self, op: Op[T], first: Any = UNSTARTED) -> Program[T]:
        """``op``'s statements; ``first``: the command it yielded last, when started."""
        before = None if self._prepared else self._prepare()
        return statements(
            op,
            self.dialect,
            before=before,
            rolled_back=self._rolled_back,
            retry_within=self.retry_within,
            first=first,
        )

    def _prepare(self) -> Program[None]:
        # Its own program, so the migration commits before the operation starts.
        yield from statements(self.setup(), self.dialect)
        self._prepared = True

    def _check_open(self) -> None:
        """Called before taking a connection: a closed runner never connects again."""
        if self._closed:
            raise StoreClosedError(f"this {self.database} store is closed")
