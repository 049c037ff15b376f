"""What the PyMySQL and aiomysql runners share: session setup, statements, errors, state.

The two runners differ only in how they take a connection and send one statement;
how an operation becomes statements and transactions is ``sql.program``'s. One
``Statement`` is one round trip: MySQL runs several statements sent as one command
(``CLIENT.MULTI_STATEMENTS``), which is how a write and the read of the row it left
stay one round trip and one transaction (``MySQLDialect.write_then_read``).
"""

from __future__ import annotations

import math
import random
import re
import time
import weakref
from typing import Any

from authstore.adapters.common.ops import Op
from authstore.adapters.common.refusals import (
    AUTHENTICATION,
    TLS,
    UNKNOWN_DATABASE,
    refused,
    tls_failure,
)
from authstore.adapters.mysql.dialect import MySQLDialect
from authstore.adapters.mysql.settings import MySQLSettings
from authstore.adapters.sql.commands import Query
from authstore.adapters.sql.program import TRANSACTION_RETRIES, Statement
from authstore.adapters.sql.runner import SqlRunnerBase
from authstore.contracts.errors import BackendError, BackendUnavailableError, ConfigurationError
from authstore.registry import require_module

__all__ = [
    "DEADLOCK_RETRIES",
    "connection_options",
    "Lease",
    "MySQLRunnerBase",
    "batch_parts",
    "shape",
]


DEADLOCK_RETRIES = TRANSACTION_RETRIES
"""InnoDB rolls a deadlock's victim back whole; a statement that is its own transaction
(autocommit, or a BEGIN ... COMMIT batch) is then sent again, at most this often and
within the operation's timeout (200 concurrent one-command link issues for one token
deadlocked up to 4 times in a row). Inside an operation's own transaction,
``program.statements`` replays the whole transaction instead (``_rolled_back``)."""

# Server error numbers that say "not now" rather than "wrong": too many connections,
# shutdown, lock wait timeout, deadlock, read-only server (a failover), query
# interrupted or killed, statement time limits, MySQL 8's idle disconnect. Client
# errors (2000-2999) are all about the connection.
_UNAVAILABLE = frozenset({1040, 1053, 1205, 1213, 1290, 1317, 1792, 1836, 1927, 1969, 3024, 4031})
_DEADLOCK = 1213
# Server error numbers of a refused configuration: access denied (1044 to the database,
# 1045 wrong user or password, 1142/1143 a command or column the user may not use,
# 1227 a privilege, 1698 no password where one is required), an unknown database
# (1049); 2026 is the client's TLS error.
_REFUSED = {1044: AUTHENTICATION, 1045: AUTHENTICATION, 1142: AUTHENTICATION}
_REFUSED.update({1143: AUTHENTICATION, 1227: AUTHENTICATION, 1698: AUTHENTICATION})
_REFUSED.update({1049: UNKNOWN_DATABASE, 2026: TLS})
_BINARY_TEXT = frozenset({253, 254})
"""VAR_STRING and STRING: the VARBINARY key columns come back as bytes; blobs are 252."""
_PLACEHOLDER = re.compile(r"%%|%s")
_SEPARATOR = ";\n"
"""How the dialect joins the statements of one command (see ``batch_parts``)."""
_CONTROL = {MySQLDialect.begin: True, "BEGIN": True, "COMMIT": False, "ROLLBACK": False}


def session_setup(timeout: float) -> str:
    """What every connection runs once before its first operation (owned or given).

    REPEATABLE READ, set explicitly whatever the server's default: its gap locks keep
    a key that a write found missing missing until the read after it (the write-then-
    read commands rely on that), and its snapshot starts at the first read, after the
    lock of a capped session create. UTC makes UNIX_TIMESTAMP(NOW(6)) unambiguous.
    Strict mode turns an over-long value into an error instead of a truncation (two
    truncated keys would collide). A lock wait ends before the socket's own timeout.
    """
    lock_wait = max(1, math.ceil(timeout) - 1)
    return (
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n"
        "SET time_zone = '+00:00', sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), "
        "'STRICT_ALL_TABLES', 'NO_ENGINE_SUBSTITUTION'), "
        f"innodb_lock_wait_timeout = {lock_wait}, default_storage_engine = InnoDB"
    )


def connection_options(settings: MySQLSettings) -> dict[str, Any]:
    """What PyMySQL and aiomysql both take; each adds its own (the database's keyword,
    timeouts). The password travels as a keyword, never in a string a driver echoes."""
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        # both drivers send the password encoded as latin-1 (a non-latin-1 character
        # raised UnicodeEncodeError, its repr holding the password); the server, like
        # the mysql client, expects UTF-8: this string's latin-1 bytes are its UTF-8
        "password": (settings.password or "").encode("utf-8").decode("latin-1"),
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": settings.connect_timeout,
        "ssl": settings.ssl,
        "program_name": "authstore",
    }


class Lease:
    """One operation's hold on one connection, taken at its first statement."""

    __slots__ = ("broken", "connection", "in_transaction", "multi", "pool", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.connection: Any = None
        self.pool: Any = None
        """Where the connection goes back (the runner's pool may be gone by then)."""
        self.multi = True
        """Whether the connection runs several statements per command."""
        self.broken = False
        """A statement failed on it: its state is unknown (an open transaction, a
        half-read reply, a session lock), so an owned connection is closed."""
        self.in_transaction = False


def batch_parts(statement: Statement) -> list[Statement]:
    """One command's statements, for a connection without CLIENT.MULTI_STATEMENTS
    (a client the caller gave): the same statements, one round trip each."""
    texts = statement.text.split(_SEPARATOR)
    if len(texts) == 1:
        return [statement]
    parts, args = [], list(statement.args)
    for text in texts:
        count = sum(1 for found in _PLACEHOLDER.findall(text) if found == "%s")
        parts.append(Statement(text, tuple(args[:count]), statement.fetch))
        del args[:count]
    return parts


Result = tuple[Any, Any, int]
"""One statement's reply: cursor description, rows, rowcount."""


def shape(statement: Statement, results: list[Result]) -> Any:
    """The reply of a command's last statement that returned rows (the read of a
    write-then-read), else its last one; key columns decoded back to str."""
    chosen = results[-1]
    if len(results) > 1:
        for result in reversed(results):
            if result[0]:
                chosen = result
                break
    description, rows, rowcount = chosen
    if statement.fetch in ("one", "all") and description:
        binary = [i for i, column in enumerate(description) if column[1] in _BINARY_TEXT]
        if binary and rows:
            rows = [_decoded(row, binary) for row in rows]
    return statement.result(list(rows or ()), rowcount)


def _decoded(row: tuple[Any, ...], columns: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for index in columns:
        value = values[index]
        if isinstance(value, (bytes, bytearray)):
            values[index] = bytes(value).decode("utf-8")
    return tuple(values)


class MySQLRunnerBase(SqlRunnerBase[MySQLSettings, MySQLDialect]):
    """A runner migrates the schema on its first operation, on that operation's
    connection, and sets each connection's session up before its first statement."""

    database = "MySQL"

    def __init__(self, settings: MySQLSettings, *, auto_migrate: bool) -> None:
        super().__init__(
            settings, MySQLDialect(settings.tables, settings.timeout), auto_migrate=auto_migrate
        )
        self._errors = require_module("pymysql.err", "MySQL", "mysql")
        self._client_flags = require_module("pymysql.constants.CLIENT", "MySQL", "mysql")
        self._session = Statement(session_setup(settings.timeout), (), "none")
        self.retry_within = settings.timeout
        # connection -> (the server thread its session was set up on, multi-statements)
        self._sessions: weakref.WeakKeyDictionary[Any, tuple[int, bool]] = (
            weakref.WeakKeyDictionary()
        )

    def setup(self) -> Op[None]:
        """Migrate, then check the tables are InnoDB: every guarantee here (atomic
        upserts, row locks, write-then-read transactions) is InnoDB's."""
        yield from super().setup()
        t = self.settings.tables
        names = [t.schema_version, t.cache, t.rate_limits, t.sessions, t.totp]
        names += [t.backup_codes, t.magic_links]
        params = {f"t{i}": name for i, name in enumerate(names)}
        listed = ", ".join(f":{name}" for name in params)
        # placeholders only: the names are bound
        sql = f"SELECT COUNT(*) FROM information_schema.tables WHERE table_name IN ({listed})"
        row = yield Query(
            f"{sql} AND table_schema = DATABASE() AND engine <> 'InnoDB'", params, "one"
        )
        if row is not None and int(row[0]):
            raise BackendError(
                f"{self.settings.display}: tables {t.prefix}* must use the InnoDB engine "
                "(authstore relies on its transactions and row locks)"
            )

    # --- connections ------------------------------------------------------------------

    def _known(self, lease: Lease) -> bool:
        """Whether the lease's connection has its session set up already (a reconnect of
        a given connection gets a new server thread, so a fresh session)."""
        connection = lease.connection
        known = self._sessions.get(connection)
        if known is not None and known[0] == connection.thread_id():
            lease.multi = known[1]
            return True
        self._check_client(lease)
        return False

    def _session_ready(self, lease: Lease) -> None:
        self._sessions[lease.connection] = (lease.connection.thread_id(), lease.multi)

    def _check_client(self, lease: Lease) -> None:
        """A given connection must behave like authstore's own: autocommit (else every
        statement would wait in a transaction nobody commits) and affected rows that
        count changed rows (CLIENT.FOUND_ROWS would make add() succeed twice)."""
        connection = lease.connection
        flags = int(getattr(connection, "client_flag", 0))
        lease.multi = bool(flags & self._client_flags.MULTI_STATEMENTS)
        server = int(getattr(connection, "server_capabilities", 0))
        if self.settings.ssl is not None and not server & self._client_flags.SSL:
            # PyMySQL refuses this itself; aiomysql silently goes on without TLS
            lease.broken = True  # never used: closed rather than pooled
            text = "the server does not offer TLS, which the URL requires"
            raise refused(TLS, "mysql", self.settings.display, text)
        if self.owns_client:
            return
        if not connection.get_autocommit():
            raise ConfigurationError(
                "the given MySQL client must be in autocommit mode (autocommit=True): "
                "authstore begins and commits its own transactions"
            )
        if flags & self._client_flags.FOUND_ROWS:
            raise ConfigurationError(
                "the given MySQL client must not set CLIENT.FOUND_ROWS: authstore reads "
                "affected rows as changed rows"
            )

    def _check_usable(self, lease: Lease) -> None:
        """After a failure the connection is not used again, not even for ROLLBACK (the
        server rolls back when it is closed)."""
        if lease.broken:
            raise BackendUnavailableError(f"{self.settings.display}: the connection failed")

    def _track(self, lease: Lease, statement: Statement) -> None:
        """Whether the operation's own transaction is open (a deadlock is then not
        retried statement by statement: the transaction is replayed)."""
        opens = _CONTROL.get(statement.text)
        if opens is not None:
            lease.in_transaction = opens

    # --- errors -----------------------------------------------------------------------

    def _resend_after(self, lease: Lease, error: Exception, resent: int) -> float:
        """After a statement (sent again ``resent`` times) failed with ``error``: the
        seconds to wait before sending it again, or the failure raised.

        InnoDB rolls a deadlock's victim back whole: a statement that is its own
        transaction is sent again, after a random pause growing to at most 50 ms (sent
        again at once, the same contenders deadlocked each other again and again: 200
        concurrent one-command link issues for one token, 5 of them 30 times in a row).
        Inside the operation's transaction the error goes on to ``program.statements``,
        which replays the transaction."""
        if (
            resent >= DEADLOCK_RETRIES
            or lease.in_transaction
            or time.monotonic() - lease.started >= self.retry_within
            or not isinstance(error, self._errors.MySQLError)
            or _errno(error) != _DEADLOCK
        ):
            raise self._failure(lease, error) from error
        return random.uniform(0.0, min(0.05, 0.002 * 2 ** (resent + 1)))  # noqa: S311 - a jitter

    def _rolled_back(self, error: BaseException) -> bool:
        cause = error.__cause__
        return isinstance(cause, self._errors.MySQLError) and _errno(cause) == _DEADLOCK

    def _failure(self, lease: Lease, error: BaseException) -> BackendError:
        # A deadlock's victim was rolled back whole and its reply read: the connection
        # stays usable (for the replay of its transaction, or the pool)
        deadlock = isinstance(error, self._errors.MySQLError) and _errno(error) == _DEADLOCK
        lease.broken = not deadlock
        return self.translate(error)

    def translate(self, error: BaseException, *, connecting: bool = False) -> BackendError:
        """A driver error as authstore's; the driver's stays the ``__cause__``."""
        number = _errno(error) if isinstance(error, self._errors.MySQLError) else None
        refusal = _REFUSED.get(number) if number is not None else None
        if refusal is None and tls_failure(error):
            refusal = TLS
        if refusal is not None:
            settings = self.settings
            text = error.args[1] if number is not None and len(error.args) > 1 else str(error)
            return refused(refusal, "mysql", settings.display, str(text), [settings.password])
        unavailable = (
            connecting
            or isinstance(error, (OSError, self._errors.InterfaceError))
            or number in _UNAVAILABLE
            or (number is not None and 2000 <= number < 3000)
        )
        kind = BackendUnavailableError if unavailable else BackendError
        return kind(self._message(error))

    def _message(self, error: BaseException) -> str:
        """A driver error's text with the password scrubbed out, after where it happened."""
        text = str(error).strip() or type(error).__name__
        password = self.settings.password
        if password:
            text = text.replace(password, "***")
        return f"{self.settings.display}: {text}"


def _errno(error: BaseException) -> int | None:
    number = error.args[0] if error.args else None
    return number if isinstance(number, int) else None
