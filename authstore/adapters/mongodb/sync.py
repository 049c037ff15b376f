"""The sync runner: pymongo's MongoClient (authstore's own, or one given as client=)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op, drive
from authstore.adapters.common.watchdog import WATCHDOG
from authstore.adapters.mongodb.commands import Abort, Command, Commit, Exclusive, StartTransaction
from authstore.adapters.mongodb.ops import Pause
from authstore.adapters.mongodb.runner import (
    MongoRunnerBase,
    Run,
    check_reply,
    mark_dirty,
    transaction_options,
)
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.contracts.errors import BackendUnavailableError
from authstore.registry import require_module

__all__ = ["SyncMongoRunner"]

T = TypeVar("T")

WAKE_MARGIN = 0.005
"""Seconds after the deadline at which the watchdog wakes a waiting server selection."""


class SyncMongoRunner(MongoRunnerBase):
    def __init__(
        self, settings: MongoSettings, kinds: Iterable[str], *, auto_migrate: bool = True
    ) -> None:
        super().__init__(settings, kinds, auto_migrate=auto_migrate, lock_factory=threading.Lock)
        self._pymongo = require_module("pymongo", "mongodb", "mongodb")
        if settings.client is not None:
            self._client = settings.client
        else:
            self._client = self._pymongo.MongoClient(settings.uri, **settings.client_options())
        self._database = self._client[settings.database]
        self._abandoned: set[threading.Thread] = set()
        self._abandoned_lock = threading.Lock()

    def run(self, op: Op[T]) -> T:
        run = Run()
        try:
            try:
                with self._pymongo.timeout(self.timeout):
                    deadline = time.monotonic() + self.timeout
                    # pymongo's server selection waits in 0.5 s steps, and would go
                    # on waiting past the deadline: the watchdog wakes it just after
                    WATCHDOG.arm(run, self.timeout + WAKE_MARGIN, self._wake_selection)
                    try:
                        return drive(
                            self.program(op, run),
                            lambda command: self._execute(command, run, deadline),
                        )
                    finally:
                        WATCHDOG.disarm(run)
            finally:
                self._finish(run)
        except self._pymongo.errors.PyMongoError as failure:
            raise self._translate(failure) from failure

    def _execute(self, command: Any, run: Run, deadline: float) -> Any:
        session = run.session
        if isinstance(command, Command):
            return check_reply(self._database.command(command.document, session=session))
        if isinstance(command, StartTransaction):
            session = session or self._client.start_session()
            session.start_transaction(**transaction_options(self._pymongo, command))
            return session
        if isinstance(command, Commit):
            session.commit_transaction()
        elif isinstance(command, Abort):
            if session.in_transaction:
                session.abort_transaction()
        elif isinstance(command, Pause):
            time.sleep(max(0.0, min(command.seconds, deadline - time.monotonic())))
        elif isinstance(command, Exclusive):
            lock = self._turns.join(command.name)
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self._turns.leave(command.name, held=False)
                raise BackendUnavailableError(
                    f"MongoDB at {self._where()} timed out waiting for this user's other operations"
                )
            run.held.append(command.name)
        else:
            raise TypeError(f"a MongoDB operation yielded {command!r}")
        return None

    def _wake_selection(self) -> None:
        """Wake every thread waiting in pymongo's server selection, which then sees its
        deadline passed and raises (called by the watchdog thread: never blocks long)."""
        condition = getattr(getattr(self._client, "_topology", None), "_condition", None)
        if condition is not None and condition.acquire(timeout=0.05):
            try:
                condition.notify_all()
            finally:
                condition.release()

    def _finish(self, run: Run) -> None:
        """End the operation's session; an abandoned one is killed in a thread of its own
        (see the runner module), its turns handed on after."""
        if not run.abandoned:
            if run.session is not None:
                run.session.end_session()  # no transaction: no I/O
            self._hand_on(run.held)
            return
        thread = threading.Thread(
            target=self._kill, args=(run,), name="authstore-mongodb-abort", daemon=True
        )
        with self._abandoned_lock:
            self._abandoned.add(thread)
        thread.start()

    def _kill(self, run: Run) -> None:
        session = run.session
        try:
            with self._pymongo.timeout(self.timeout):
                # failing that, the server ends it after its transaction lifetime
                with contextlib.suppress(self._pymongo.errors.PyMongoError):
                    self._client.admin.command({"killSessions": [session.session_id]})
                mark_dirty(session)
                session.end_session()
        except Exception:  # noqa: S110 - best effort in the background, nobody to tell
            pass
        finally:
            self._hand_on(run.held)
            with self._abandoned_lock:
                self._abandoned.discard(threading.current_thread())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # let the kills of abandoned transactions finish (each within the timeout)
            with self._abandoned_lock:
                pending = list(self._abandoned)
            for thread in pending:
                thread.join(self.timeout + 1)
            if self.owns_client:
                self._client.close()
