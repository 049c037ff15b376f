"""What the psycopg and asyncpg runners share: the caller's client, the hot
connection's policy, and how driver errors become authstore's.

The two runners differ only in how they take a connection and run one statement;
how an operation becomes statements and transactions is ``sql.program``'s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from authstore.adapters.common.refusals import (
    AUTHENTICATION,
    TLS,
    UNKNOWN_DATABASE,
    refused,
    tls_failure,
)
from authstore.adapters.postgres.dialect import PostgresDialect
from authstore.adapters.postgres.settings import PostgresSettings
from authstore.adapters.sql.dialect import ParamStyle
from authstore.adapters.sql.runner import SqlRunnerBase, connection_lock
from authstore.contracts.errors import (
    AuthStoreError,
    BackendConfigurationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
)

__all__ = [
    "HOT_TURNOVER",
    "ROWS",
    "PostgresRunnerBase",
    "is_lost_state",
    "is_unavailable_state",
]


ROWS = frozenset({"one", "all"})
"""The fetch kinds that read rows (the others read a row count or nothing)."""

HOT_TURNOVER = 60.0
"""Seconds a runner keeps its hot connection before handing it back to the pool, so the
pool's own upkeep (maximum lifetime, idle checks) reaches that connection too."""

# SQLSTATE classes and codes that say "not now" rather than "wrong": connection
# exceptions, serialization failures and deadlocks, insufficient resources (too many
# connections), operator intervention (shutdown, cancel, statement timeout), system
# errors, lock not available, object in use, and a read-only standby after a failover.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_UNAVAILABLE_CODES = frozenset({"55P03", "55006", "25006"})


# Of those, the ones after which the connection itself is gone: connection exceptions,
# and an administrator's or a crash's shutdown, or a server not yet accepting connections.
_LOST_CODES = frozenset({"57P01", "57P02", "57P03"})

# The transaction was rolled back whole and the connection is fine: a deadlock's victim,
# a serialization failure. The operation's transaction is replayed.
_ROLLED_BACK_CODES = frozenset({"40P01", "40001"})

# A refused configuration: invalid authorization (28000: no pg_hba.conf entry, unknown
# role; 28P01: wrong password), insufficient privilege, an unknown database or schema.
_REFUSED_CODES = {"28000": AUTHENTICATION, "28P01": AUTHENTICATION, "42501": AUTHENTICATION}
_REFUSED_CODES.update({"3D000": UNKNOWN_DATABASE, "3F000": UNKNOWN_DATABASE})
# libpq reports a failed connect without a SQLSTATE: its (English) text says why.
_REFUSED_TEXTS = (
    (re.compile(r'database "[^"]*" does not exist'), UNKNOWN_DATABASE),
    (
        re.compile(
            r"password authentication failed|no password supplied|SCRAM authentication|"
            r'pg_hba\.conf|role "[^"]*" does not exist|permission denied for database'
        ),
        AUTHENTICATION,
    ),
    (
        re.compile(
            r"server does not support SSL|rejected SSL upgrade|root certificate file|"
            r"server certificate for"
        ),
        TLS,
    ),
)


def is_unavailable_state(sqlstate: str | None) -> bool:
    return sqlstate is not None and (
        sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_CODES
    )


def is_lost_state(sqlstate: str | None) -> bool:
    return sqlstate is not None and (sqlstate[:2] == "08" or sqlstate in _LOST_CODES)


class PostgresRunnerBase(SqlRunnerBase[PostgresSettings, PostgresDialect]):
    """What both PostgreSQL runners add to every SQL runner: a hot connection and error
    wrapping.

    With its own pool, a runner keeps one connection checked out (the "hot" one) for
    whichever operation finds it free; others take pooled connections. A sequential
    caller then always meets the same connection, its server process and prepared
    statements warm, and pays no pool bookkeeping: on a local server that bookkeeping
    (a FIFO pool rotating connections; asyncpg's release taking event-loop turns)
    costs as much as the query.
    """

    database = "PostgreSQL"

    def __init__(
        self, settings: PostgresSettings, paramstyle: ParamStyle, *, auto_migrate: bool
    ) -> None:
        super().__init__(settings, PostgresDialect(paramstyle), auto_migrate=auto_migrate)
        self.retry_within = settings.timeout
        self._hot_since = 0.0
        self._waiting = 0
        """Operations waiting for a pooled connection: a freed hot one goes to them."""

    # How the driver's errors without a SQLSTATE read (each runner sets its driver's):
    _misconfigured: tuple[type[BaseException], ...] = ()
    """A client-side configuration error."""
    _unreachable: tuple[type[BaseException], ...] = ()
    """The server did not answer: unavailable."""
    _lost: tuple[type[BaseException], ...] = ()
    """The connection itself failed."""
    _not_connection: tuple[type[BaseException], ...] = ()
    """Subclasses of those that are about the statement's data, not the connection."""

    def _client(
        self, pool_type: type, connection_type: type, names: str, new_lock: Callable[[], Any]
    ) -> tuple[Any, Any, Any]:
        """The caller's client as (pool, single connection, that connection's lock)."""
        client = self.settings.client
        if client is None or isinstance(client, pool_type):
            return client, None, None
        if isinstance(client, connection_type):
            return None, client, connection_lock(client, new_lock)
        raise ConfigurationError(f"client must be {names}, not {type(client).__name__}")

    def _hot_stays(self) -> bool:
        """After an operation went well on the hot connection: keep it, unless another
        operation waits for a pooled one, the store closed, or it is due for turnover."""
        return (
            not self._waiting
            and not self._closed
            and time.monotonic() - self._hot_since < HOT_TURNOVER
        )

    def _rolled_back(self, error: BaseException) -> bool:
        return getattr(error.__cause__, "sqlstate", None) in _ROLLED_BACK_CODES

    def _message(self, error: BaseException) -> str:
        """A driver error's text with the password scrubbed out (drivers may echo
        connection parameters), prefixed with the redacted URL."""
        text = str(error).strip() or type(error).__name__
        password = self.settings.password
        if password:
            text = text.replace(password, "***")
        return f"postgresql ({self.settings.display}): {text}"

    def _translate(self, error: BaseException, *, connecting: bool = False) -> AuthStoreError:
        """A driver error as authstore's; ``connecting``: whatever stops a connection (a
        refusal, a wrong database or password) leaves the store unavailable."""
        if isinstance(error, AuthStoreError):
            return error
        if isinstance(error, self._misconfigured):
            return ConfigurationError(self._message(error))
        sqlstate: str | None = getattr(error, "sqlstate", None)
        if connecting:
            unavailable = True
        elif sqlstate:
            unavailable = is_unavailable_state(sqlstate)
        else:
            unavailable = isinstance(error, self._unreachable) and not isinstance(
                error, self._not_connection
            )
        return self._error(error, unavailable=unavailable)

    def _is_lost(self, error: BaseException) -> bool:
        """Whether the connection itself failed (not merely the statement)."""
        sqlstate: str | None = getattr(error, "sqlstate", None)
        if sqlstate:
            return is_lost_state(sqlstate)
        return isinstance(error, self._lost) and not isinstance(error, self._not_connection)

    def _error(self, error: BaseException, *, unavailable: bool) -> BackendError:
        refusal = self._refusal(error)
        if refusal is not None:
            return refused(
                refusal, "postgresql", self.settings.display, str(error), [self.settings.password]
            )
        kind = BackendUnavailableError if unavailable else BackendError
        return kind(self._message(error))

    @staticmethod
    def _refusal(error: BaseException) -> type[BackendConfigurationError] | None:
        """The kind of refused configuration ``error`` is, or None: retrying will not help."""
        sqlstate: str | None = getattr(error, "sqlstate", None)
        if sqlstate:
            return _REFUSED_CODES.get(sqlstate)
        if tls_failure(error):
            return TLS
        text = str(error)
        for pattern, kind in _REFUSED_TEXTS:
            if pattern.search(text):
                return kind
        return None
