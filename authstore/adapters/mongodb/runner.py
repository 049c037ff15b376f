"""What the sync and async MongoDB runners share: the program wrapped around every
operation, turning driver errors into authstore's, transaction state and turns.

``drive``/``drive_async`` run ``MongoRunnerBase.program(op)``; a runner only executes
one command (``database.command(doc)`` or its awaited twin, plus the session calls of
the few operations that use a transaction). The program:

- refuses on a closed store, after the operation's argument checks;
- after a pause of more than ``STALE_AFTER`` seconds (the pooled connections may belong
  to a server that has restarted since) sends a ``ping`` before a first command that is
  not safe to resend (a write, a transaction); a ping or read that fails on a closed
  connection (not a timeout) is sent once more: its failure made the driver drop the
  pool's stale connections. A write is never sent twice;
- creates the collections' indexes before the first command of the runner;
- with ``durability=replicated``, gives a security write's commands (``Durable``) the
  write concern ``{w: "majority", j: true}``: a write command its own
  (``writeConcern``), a transaction its commit's (its commands may not carry one);
- keeps the transaction state in ``Run``, and translates a driver error before
  throwing it into the operation: MongoDB ops speak ``DuplicateKey`` and ``Conflict``
  (a duplicate key also arrives in a write's reply, see ``check_reply``), and telling
  a conflict from an outage (the driver labels a network error in a transaction as
  transient too) needs the driver's error classes, which ops do not import.

An operation that ends inside its transaction (a timeout, a cancellation, an error raised
in it) has its session killed on the server in the background (``killSessions``, which
aborts the transaction), with a timeout of its own, so the caller's call still ends at
its deadline and the transaction does not hold the user's lock document until the server
reaps it (60 s). The user's turn (``Exclusive``, kept in ``Turns``) is handed on only
after that.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Durable, Op
from authstore.adapters.common.refusals import AUTHENTICATION, TLS, refused, tls_failure
from authstore.adapters.common.turns import Turns
from authstore.adapters.mongodb.commands import (
    Abort,
    Command,
    Commit,
    Conflict,
    DuplicateKey,
    StartTransaction,
)
from authstore.adapters.mongodb.ops import create_indexes
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.contracts.errors import BackendError, BackendUnavailableError, StoreClosedError

__all__ = [
    "MongoRunnerBase",
    "Run",
    "Turns",
    "check_reply",
    "mark_dirty",
    "transaction_options",
    "translate",
]

T = TypeVar("T")

DUPLICATE_KEY = 11000
_UNAVAILABLE_CODES = frozenset({6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436})
"""Host unreachable/not found, network timeout, shutdown in progress, not primary ..."""
_REFUSED_CODES = {13: AUTHENTICATION, 18: AUTHENTICATION}
"""Unauthorized (a user without the rights authstore needs), AuthenticationFailed."""
_SELECTION_TIMEOUTS = frozenset({"ServerSelectionTimeoutError", "TimeoutError"})
_SERVER_ERROR = re.compile(r"'errmsg': '(?P<errmsg>[^']*)', 'code': (?P<code>\d+)")
STALE_AFTER = 0.25
"""Seconds without an answer after which pooled connections may be stale: a server can
not be killed and answer again in less. pymongo's async pool does not see a closed
connection that sits idle (it stops reading between replies), and its sync pool polls
only connections idle for a second."""
_RESENDABLE = frozenset({"find", "aggregate", "count", "ping", "listIndexes", "createIndexes"})
"""Commands that change nothing (authstore's pipelines have no $out or $merge stage) or
that are idempotent (createIndexes): safe to send again after a closed connection."""
_PING = Command({"ping": 1})
_WRITES = frozenset({"findAndModify", "update", "delete", "insert"})
"""The write commands authstore sends: what takes a ``writeConcern`` (a read refuses one)."""


def transaction_options(pymongo: Any, start: StartTransaction) -> dict[str, Any]:
    """``start_transaction``'s keywords: the write concern of its commit, if any."""
    if start.write_concern is None:
        return {}
    return {"write_concern": pymongo.WriteConcern(**start.write_concern)}


def resendable(command: object) -> bool:
    return isinstance(command, Command) and next(iter(command.document)) in _RESENDABLE


def closed_connection(error: BaseException) -> bool:
    """The driver found its connection closed (a server that restarted or dropped it),
    not a timeout: nothing was answered on it."""
    import pymongo.errors as errors

    cause = error.__cause__ if isinstance(error, BackendError) else error
    return (
        isinstance(cause, errors.ConnectionFailure)
        and not isinstance(cause, errors.ServerSelectionTimeoutError)
        and not getattr(cause, "timeout", False)
    )


def check_reply(reply: dict[str, Any]) -> dict[str, Any]:
    """Write commands report per-statement errors in the reply, not as a failure."""
    errors = reply.get("writeErrors")
    if errors:
        first = errors[0]
        if first.get("code") == DUPLICATE_KEY:
            raise DuplicateKey(f"MongoDB: duplicate key ({first.get('errmsg', '')[:200]})")
        raise BackendError(f"MongoDB refused a write: {first.get('errmsg', first)}")
    concern = reply.get("writeConcernError")
    if concern:
        raise BackendUnavailableError(
            f"MongoDB could not confirm a write: {concern.get('errmsg', concern)}"
        )
    return reply


def translate(error: BaseException, where: str, in_transaction: bool) -> BaseException:
    """A driver error as authstore's (the driver error kept as ``__cause__``)."""
    if isinstance(error, BackendError):
        return error
    import pymongo.errors as errors

    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    text = details.get("errmsg") if isinstance(details, dict) else None
    if code is None and isinstance(error, errors.ServerSelectionTimeoutError):
        # The server's refusal of the handshake, kept by the driver only as text.
        found = _SERVER_ERROR.search(str(error))
        if found:
            code, text = int(found["code"]), found["errmsg"]
    refusal = _REFUSED_CODES.get(code) if isinstance(code, int) else None
    if refusal is None and isinstance(error, errors.ConnectionFailure) and tls_failure(error):
        refusal = TLS
    if refusal is not None:
        refusal_error = refused(refusal, "mongodb", where, str(text or error))
        refusal_error.__cause__ = error
        return refusal_error
    labelled = getattr(error, "has_error_label", None)
    transient = callable(labelled) and labelled("TransientTransactionError")
    mapped: BackendError
    unavailable = (
        isinstance(error, (errors.ConnectionFailure, TimeoutError))
        or getattr(error, "timeout", False)
        or code in _UNAVAILABLE_CODES
    )
    if unavailable:
        # before the conflict check: the driver labels a network error inside a
        # transaction TransientTransactionError too, and retrying past the timeout
        # would only fail again
        what = "timed out" if getattr(error, "timeout", False) else "is unavailable"
        mapped = BackendUnavailableError(
            f"MongoDB at {where} {what} ({type(error).__name__}: {_first_line(error)})"
        )
    elif in_transaction and (transient or code in (112, DUPLICATE_KEY)):
        mapped = Conflict(f"MongoDB at {where}: a transaction conflicted ({error})")
    elif code == DUPLICATE_KEY:
        mapped = DuplicateKey(f"MongoDB at {where}: duplicate key")
    else:
        mapped = BackendError(f"MongoDB at {where}: {type(error).__name__}: {_first_line(error)}")
    mapped.__cause__ = error
    return mapped


def _scrubbed(error: BaseException, uri: str) -> BaseException:
    """``error`` with the URI's password masked in its message: the driver's text (a
    server's reply, a DNS or auth failure) may repeat what it was given."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(uri).password
    except ValueError:
        return error
    if not password:
        return error
    secrets = {password, unquote(password)}
    text = str(error)
    if not any(secret in text for secret in secrets):
        return error
    for secret in secrets:
        text = text.replace(secret, "***")
    error.args = (text,)
    return error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def mark_dirty(session: Any) -> None:
    """A killed session's server session must not return to the driver's pool."""
    server_session = getattr(session, "_server_session", None)
    mark = getattr(server_session, "mark_dirty", None)
    if callable(mark):
        mark()


class Run:
    """One operation's state in a runner: its session, whether its last transaction
    may still be open on the server, the turns it holds."""

    __slots__ = ("held", "open", "session")

    def __init__(self) -> None:
        self.session: Any = None
        self.open = False
        """Since a StartTransaction, until its Commit succeeded (an Abort the driver
        could not deliver is not known to have happened)."""
        self.held: list[str] = []

    @property
    def in_transaction(self) -> bool:
        return self.session is not None and bool(self.session.in_transaction)

    @property
    def abandoned(self) -> bool:
        """Its transaction may still be open on the server: its session must be killed."""
        return self.session is not None and self.open


class MongoRunnerBase:
    """Settings, the program (see the module), turns, the end of an operation's session."""

    def __init__(
        self,
        settings: MongoSettings,
        kinds: Iterable[str],
        *,
        auto_migrate: bool,
        lock_factory: Callable[[], Any],
    ) -> None:
        self.settings = settings
        self.kinds = tuple(kinds)
        self.timeout = settings.timeout
        self._prepared = not auto_migrate
        self._closed = False
        self._answered_at = time.monotonic()
        """When the server last answered a command (see ``STALE_AFTER``)."""
        self._turns = Turns(lock_factory)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.settings.display} "
            f"prefix={self.settings.collections.prefix!r}>"
        )

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def program(self, op: Op[T], run: Run) -> Op[T]:
        """The operation wrapped in the hooks both modes share (see the module): its
        checks run on its first step, so bad input fails before any I/O, and before a
        closed store refuses."""
        try:
            try:
                command = next(op)
            except StopIteration as finished:
                result: T = finished.value
                return result
            if type(command) is Durable:
                command = self._concerned(command.command, False)
            self._check_open()
            if time.monotonic() - self._answered_at > STALE_AFTER and not resendable(command):
                yield from self._resent(_PING)
            if not self._prepared:
                yield from create_indexes(self.settings.collections, self.kinds)
                self._prepared = True
            transaction = False
            while True:
                try:
                    if transaction or not resendable(command):
                        reply = yield command  # a write is never sent twice
                    else:
                        reply = yield from self._resent(command)
                except Exception as error:
                    command = op.throw(self._translate(error, run.in_transaction))
                    if type(command) is Durable:
                        command = self._concerned(command.command, transaction)
                    continue
                if isinstance(command, Command):
                    self._answered_at = time.monotonic()
                elif isinstance(command, StartTransaction):
                    run.session, run.open, transaction = reply, True, True
                elif isinstance(command, Commit):
                    run.open = transaction = False
                elif isinstance(command, Abort):
                    transaction = False  # an Abort is not known to have reached the server
                command = op.send(reply)
                if type(command) is Durable:
                    command = self._concerned(command.command, transaction)
        except StopIteration as finished:
            result = finished.value
            return result
        finally:
            op.close()

    def _concerned(self, command: Any, transaction: bool) -> Any:
        """A security write's command with the write concern ``durability`` asks for:
        a write command outside a transaction carries it, a transaction's start sets it
        for its commit; reads, and commands inside a transaction, stay as they are."""
        concern = self.settings.write_concern  # set: only durable_ops yield Durable
        if isinstance(command, StartTransaction):
            return dataclasses.replace(command, write_concern=concern)
        if (
            not transaction
            and isinstance(command, Command)
            and next(iter(command.document)) in _WRITES
        ):
            return Command({**command.document, "writeConcern": concern})
        return command

    def _hand_on(self, held: list[str]) -> None:
        for name in held:
            self._turns.leave(name, held=True)
        held.clear()

    @staticmethod
    def _resent(command: Command) -> Op[Any]:
        """The reply of ``command`` (safe to resend); sent once more when its
        connection was found closed."""
        try:
            return (yield command)
        except Exception as error:
            if not closed_connection(error):
                raise
        return (yield command)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this MongoDB store is closed")

    def _where(self) -> str:
        return self.settings.display

    def _translate(self, failure: BaseException, in_transaction: bool = False) -> BaseException:
        """``translate``, where a timeout is the server refusing the handshake when the
        driver's view of the servers says so: the async runner's own deadline can end an
        operation before pymongo's server selection reports that refusal."""
        if isinstance(failure, TimeoutError) or type(failure).__name__ in _SELECTION_TIMEOUTS:
            description = getattr(getattr(self, "_client", None), "topology_description", None)
            servers = description.server_descriptions().values() if description else ()
            for server in servers:
                code = getattr(server.error, "code", None)
                if code in _REFUSED_CODES:
                    failure = server.error
                    break
        return _scrubbed(translate(failure, self._where(), in_transaction), self.settings.uri)
