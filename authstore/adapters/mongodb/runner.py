"""What the sync and async MongoDB runners share: stepping an operation, reading
replies, turning driver errors into authstore's, and indexes on first use.

A runner only executes the commands an operation yields: ``database.command(doc)``
(sync) or ``await database.command(doc)`` (async), plus session calls for the few
operations that use a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.common.refusals import AUTHENTICATION, TLS, refused, tls_failure
from authstore.adapters.mongodb.commands import Conflict, DuplicateKey
from authstore.adapters.mongodb.ops import create_indexes
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.contracts.errors import BackendError, BackendUnavailableError, StoreClosedError

__all__ = ["Execution", "MongoRunnerBase", "check_reply", "translate"]

T = TypeVar("T")

DUPLICATE_KEY = 11000
_UNAVAILABLE_CODES = frozenset({6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436})
"""Host unreachable/not found, network timeout, shutdown in progress, not primary ..."""
_REFUSED_CODES = {13: AUTHENTICATION, 18: AUTHENTICATION}
"""Unauthorized (a user without the rights authstore needs), AuthenticationFailed."""
_SELECTION_TIMEOUTS = frozenset({"ServerSelectionTimeoutError", "TimeoutError"})
_SERVER_ERROR = re.compile(r"'errmsg': '(?P<errmsg>[^']*)', 'code': (?P<code>\d+)")


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


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


class Execution(Generic[T]):
    """Steps one operation: the runner executes each command and reports its reply or
    its (translated) error back; ``done`` and ``result`` say when it has finished."""

    def __init__(self, op: Op[T]) -> None:
        self._op = op
        self.done = False
        self.result: T | None = None

    def step(self, reply: Any = None, error: BaseException | None = None) -> Any:
        try:
            command = self._op.throw(error) if error is not None else self._op.send(reply)
        except StopIteration as finished:
            self.done = True
            self.result = finished.value
            return None
        return command

    def close(self) -> None:
        self._op.close()


class MongoRunnerBase:
    """Settings, the collections' indexes created on the first operation, closing."""

    def __init__(
        self, settings: MongoSettings, kinds: Iterable[str], *, auto_migrate: bool
    ) -> None:
        self.settings = settings
        self.kinds = tuple(kinds)
        self.timeout = settings.timeout
        self._prepared = not auto_migrate
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.settings.display} "
            f"prefix={self.settings.collections.prefix!r}>"
        )

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def _program(self, op: Op[T]) -> Op[T]:
        """The operation, with the indexes created before its first command but after its
        checks (which run on its first step): bad input fails before any I/O, and
        before a closed store refuses."""
        try:
            command = next(op)
        except StopIteration as finished:
            result: T = finished.value
            return result
        self._check_open()
        if not self._prepared:
            yield from create_indexes(self.settings.collections, self.kinds)
            self._prepared = True
        while True:
            try:
                reply = yield command
            except Exception as error:
                try:
                    command = op.throw(error)
                except StopIteration as finished:
                    result = finished.value
                    return result
                continue
            try:
                command = op.send(reply)
            except StopIteration as finished:
                result = finished.value
                return result

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
        return translate(failure, self._where(), in_transaction)
