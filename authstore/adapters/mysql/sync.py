"""The sync MySQL runner: PyMySQL over authstore's small thread-safe pool.

Connections are in autocommit: a single statement is one round trip with no BEGIN;
an operation that yields Begin keeps its one connection for the whole transaction.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.common.sockets import socket_readable
from authstore.adapters.mysql.pool import (
    STALE_AFTER,
    ConnectionPool,
    OneConnection,
    SyncConnections,
)
from authstore.adapters.mysql.runner import (
    Lease,
    MySQLRunnerBase,
    batch_parts,
    connection_options,
    shape,
)
from authstore.adapters.mysql.settings import MySQLSettings
from authstore.adapters.sql.program import Statement, drive
from authstore.contracts.errors import BackendError, ConfigurationError
from authstore.registry import require_module

if TYPE_CHECKING:
    import pymysql

__all__ = ["SyncMySQLRunner"]

T = TypeVar("T")


def _send(connection: pymysql.Connection[Any], statement: Statement, multi: bool) -> Any:
    results = []
    with connection.cursor() as cursor:
        for part in (statement,) if multi else batch_parts(statement):
            cursor.execute(part.text, part.args)
            results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
            while cursor.nextset():
                results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
    return shape(statement, results)


def _usable(connection: pymysql.Connection[Any], idle: float) -> bool:
    if socket_readable(getattr(connection, "_sock", None)):
        return False
    if idle > STALE_AFTER:
        try:
            connection.ping(reconnect=False)
        except Exception:
            return False
    return True


def _close(connection: pymysql.Connection[Any]) -> None:
    # no COM_QUIT round trip: the server notices the closed socket and rolls back
    connection._force_close()  # type: ignore[attr-defined]


def _revive(connection: pymysql.Connection[Any]) -> None:
    """A given connection the server dropped is reconnected in place (its own settings,
    a new session, which the runner then sets up)."""
    if connection.open and not socket_readable(getattr(connection, "_sock", None)):
        return
    _close(connection)
    connection.connect()


def _reset(connection: pymysql.Connection[Any]) -> None:
    connection.rollback()


class SyncMySQLRunner(MySQLRunnerBase):
    """Thread-safe: each operation runs on a connection of its own from the pool."""

    def __init__(self, settings: MySQLSettings, *, auto_migrate: bool = True) -> None:
        self._driver = require_module("pymysql", "MySQL", "mysql")
        super().__init__(settings, auto_migrate=auto_migrate)
        self._pool: SyncConnections[pymysql.Connection[Any]]
        if settings.client is not None:
            if not isinstance(settings.client, self._driver.connections.Connection):
                raise ConfigurationError(
                    f"client must be a pymysql Connection, not {type(settings.client).__name__}"
                )
            self._pool = OneConnection(
                settings.client,
                timeout=settings.timeout,
                revive=_revive,
                reset=_reset,
                name=settings.display,
            )
        else:
            self._pool = ConnectionPool(
                size=settings.pool_size,
                timeout=settings.timeout,
                connect=self._connect,
                usable=_usable,
                close=_close,
                name=settings.display,
            )

    def run(self, op: Op[T]) -> T:
        lease = Lease()
        try:
            return drive(self._program(op), lambda statement: self._execute(lease, statement))
        finally:
            if lease.connection is not None:
                self._pool.release(lease.connection, reuse=not lease.broken)

    def _execute(self, lease: Lease, statement: Statement) -> Any:
        """Takes the connection at the first statement, so bad arguments never connect."""
        if lease.connection is None:
            self._lease(lease)
        self._check_usable(lease)
        self._track(lease, statement)
        resent = 0
        while True:
            try:
                return _send(lease.connection, statement, lease.multi)
            except Exception as error:
                pause = self._resend_after(lease, error, resent)
                resent += 1
            except BaseException:
                lease.broken = True
                raise
            time.sleep(pause)  # deadlocked: the others go first

    def _lease(self, lease: Lease) -> None:
        self._check_open()
        try:
            lease.connection = self._pool.acquire()
        except BackendError:
            raise  # exhausted, closed, or a connect error already translated
        except Exception as error:  # reviving a given connection
            raise self.translate(error, connecting=True) from error
        if not self._known(lease):
            try:
                _send(lease.connection, self._session, lease.multi)
            except Exception as error:
                raise self._failure(lease, error) from error
            except BaseException:
                lease.broken = True
                raise
            self._session_ready(lease)

    def _connect(self) -> pymysql.Connection[Any]:
        s = self.settings
        try:
            connection: pymysql.Connection[Any] = self._driver.connect(
                database=s.database,
                client_flag=self._client_flags.MULTI_STATEMENTS,
                read_timeout=s.timeout,
                write_timeout=s.timeout,
                # Without ssl_ options PyMySQL tries TLS where the server offers it, without
                # verifying (MySQL's own "preferred"): MySQL 8's default authentication then
                # works without the cryptography package. aiomysql has no such mode.
                **connection_options(s),
            )
        except Exception as error:
            raise self.translate(error, connecting=True) from error
        return connection

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._pool.close()
