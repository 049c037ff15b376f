"""The sync runner: pymongo's MongoClient (authstore's own, or one given as client=)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.mongodb.commands import Abort, Command, Commit, StartTransaction
from authstore.adapters.mongodb.ops import Pause
from authstore.adapters.mongodb.runner import Execution, MongoRunnerBase, check_reply
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.registry import require_module

__all__ = ["SyncMongoRunner"]

T = TypeVar("T")


class SyncMongoRunner(MongoRunnerBase):
    def __init__(
        self, settings: MongoSettings, kinds: Iterable[str], *, auto_migrate: bool = True
    ) -> None:
        super().__init__(settings, kinds, auto_migrate=auto_migrate)
        self._pymongo = require_module("pymongo", "mongodb", "mongodb")
        if settings.client is not None:
            self._client = settings.client
        else:
            self._client = self._pymongo.MongoClient(settings.uri, **settings.client_options())
        self._database = self._client[settings.database]

    def run(self, op: Op[T]) -> T:
        execution = Execution(self._program(op))
        session: Any = None
        try:
            with self._pymongo.timeout(self.timeout):
                try:
                    command = execution.step()
                    while not execution.done:
                        try:
                            reply, error = self._execute(command, session), None
                            if isinstance(command, StartTransaction):
                                session = reply
                        except Exception as failure:
                            in_transaction = session is not None and session.in_transaction
                            reply, error = None, self._translate(failure, in_transaction)
                        command = execution.step(reply, error)
                finally:
                    if session is not None:
                        # within the timeout: aborting an open transaction on a server
                        # that stopped answering must not wait past it
                        session.end_session()
        except self._pymongo.errors.PyMongoError as failure:
            raise self._translate(failure) from failure
        return execution.result  # type: ignore[return-value]

    def _execute(self, command: Any, session: Any) -> Any:
        if isinstance(command, Command):
            return check_reply(self._database.command(command.document, session=session))
        if isinstance(command, StartTransaction):
            session = session or self._client.start_session()
            session.start_transaction()
            return session
        if isinstance(command, Commit):
            session.commit_transaction()
        elif isinstance(command, Abort):
            if session.in_transaction:
                session.abort_transaction()
        elif isinstance(command, Pause):
            time.sleep(command.seconds)
        else:
            raise TypeError(f"a MongoDB operation yielded {command!r}")
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.owns_client:
                self._client.close()
