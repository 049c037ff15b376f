"""The async runner: pymongo's AsyncMongoClient, or a client given as client= (an
AsyncMongoClient, or a motor AsyncIOMotorClient). Sessions differ a little between the
two (motor's start_session is a coroutine, pymongo's start_transaction is), so the
session calls go through ``_settled``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.mongodb.commands import Abort, Command, Commit, StartTransaction
from authstore.adapters.mongodb.ops import Pause
from authstore.adapters.mongodb.runner import Execution, MongoRunnerBase, check_reply
from authstore.adapters.mongodb.settings import MongoSettings
from authstore.registry import require_module

__all__ = ["AsyncMongoRunner"]

T = TypeVar("T")


async def _settled(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AsyncMongoRunner(MongoRunnerBase):
    def __init__(
        self, settings: MongoSettings, kinds: Iterable[str], *, auto_migrate: bool = True
    ) -> None:
        super().__init__(settings, kinds, auto_migrate=auto_migrate)
        self._pymongo = require_module("pymongo", "mongodb", "mongodb")
        self._client: Any = settings.client
        self._database: Any = None if self._client is None else self._client[settings.database]

    def _connect(self) -> Any:
        """authstore's own client is made on first use, inside the running loop."""
        if self._database is None:
            self._client = self._pymongo.AsyncMongoClient(
                self.settings.uri, **self.settings.client_options()
            )
            self._database = self._client[self.settings.database]
        return self._database

    async def run(self, op: Op[T]) -> T:
        execution = Execution(self._program(op))
        session: Any = None
        try:
            async with asyncio.timeout(self.timeout):
                with self._pymongo.timeout(self.timeout):
                    try:
                        command = execution.step()
                        while not execution.done:
                            try:
                                reply, error = await self._execute(command, session), None
                                if isinstance(command, StartTransaction):
                                    session = reply
                            except Exception as failure:
                                in_transaction = session is not None and session.in_transaction
                                error = self._translate(failure, in_transaction)
                                reply = None
                            command = execution.step(reply, error)
                    finally:
                        if session is not None:
                            # within the timeout (see the sync runner)
                            await _settled(session.end_session())
        except (self._pymongo.errors.PyMongoError, TimeoutError) as failure:
            raise self._translate(failure) from failure
        return execution.result  # type: ignore[return-value]

    async def _execute(self, command: Any, session: Any) -> Any:
        if isinstance(command, Command):
            database = self._connect()
            return check_reply(await database.command(command.document, session=session))
        if isinstance(command, StartTransaction):
            self._connect()
            session = session or await _settled(self._client.start_session())
            await _settled(session.start_transaction())
            return session
        if isinstance(command, Commit):
            await session.commit_transaction()
        elif isinstance(command, Abort):
            if session.in_transaction:
                await session.abort_transaction()
        elif isinstance(command, Pause):
            await asyncio.sleep(command.seconds)
        else:
            raise TypeError(f"a MongoDB operation yielded {command!r}")
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.owns_client and self._client is not None:
                await self._client.close()
