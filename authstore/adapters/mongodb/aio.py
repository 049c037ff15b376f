"""The async runner: pymongo's AsyncMongoClient, or a client given as client= (an
AsyncMongoClient, or a motor AsyncIOMotorClient). Sessions differ a little between the
two (motor's start_session is a coroutine, pymongo's start_transaction is), so the
session calls go through ``_settled``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op, drive_async
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
from authstore.registry import require_module

__all__ = ["AsyncMongoRunner"]

T = TypeVar("T")


async def _settled(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AsyncMongoRunner(MongoRunnerBase):
    def __init__(
        self, settings: MongoSettings, kinds: Iterable[str], *, auto_migrate: bool = True
    ) -> None:
        super().__init__(settings, kinds, auto_migrate=auto_migrate, lock_factory=asyncio.Lock)
        self._pymongo = require_module("pymongo", "mongodb", "mongodb")
        self._client: Any = settings.client
        self._database: Any = None if self._client is None else self._client[settings.database]
        self._abandoned: set[asyncio.Task[None]] = set()

    def _connect(self) -> Any:
        """authstore's own client is made on first use, inside the running loop."""
        if self._database is None:
            self._client = self._pymongo.AsyncMongoClient(
                self.settings.uri, **self.settings.client_options()
            )
            self._database = self._client[self.settings.database]
        return self._database

    async def run(self, op: Op[T]) -> T:
        run = Run()
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    with self._pymongo.timeout(self.timeout):
                        return await drive_async(
                            self.program(op, run), lambda command: self._execute(command, run)
                        )
            finally:
                # outside both timeouts (a task it starts must not inherit pymongo's
                # expired deadline); nothing here waits for the server
                await self._finish(run)
        except (self._pymongo.errors.PyMongoError, TimeoutError) as failure:
            raise self._translate(failure) from failure

    async def _execute(self, command: Any, run: Run) -> Any:
        session = run.session
        if isinstance(command, Command):
            database = self._connect()
            return check_reply(await database.command(command.document, session=session))
        if isinstance(command, StartTransaction):
            self._connect()
            session = session or await _settled(self._client.start_session())
            await _settled(session.start_transaction(**transaction_options(self._pymongo, command)))
            return session
        if isinstance(command, Commit):
            await session.commit_transaction()
        elif isinstance(command, Abort):
            if session.in_transaction:
                await session.abort_transaction()
        elif isinstance(command, Pause):
            await asyncio.sleep(command.seconds)
        elif isinstance(command, Exclusive):
            lock = self._turns.join(command.name)
            try:
                await lock.acquire()
            except BaseException:
                self._turns.leave(command.name, held=False)
                raise
            run.held.append(command.name)
        else:
            raise TypeError(f"a MongoDB operation yielded {command!r}")
        return None

    async def _finish(self, run: Run) -> None:
        """End the operation's session; an abandoned one is killed in a task of its own
        (see the runner module), its turns handed on after."""
        if not run.abandoned:
            if run.session is not None:
                await _settled(run.session.end_session())  # no transaction: no I/O
            self._hand_on(run.held)
            return
        task = asyncio.get_running_loop().create_task(self._kill(run))
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _kill(self, run: Run) -> None:
        session = run.session
        try:
            async with asyncio.timeout(self.timeout):
                with self._pymongo.timeout(self.timeout):
                    # failing that, the server ends it after its transaction lifetime
                    with contextlib.suppress(self._pymongo.errors.PyMongoError):
                        await self._client.admin.command({"killSessions": [session.session_id]})
                    mark_dirty(session)
                    await _settled(session.end_session())
        except Exception:  # noqa: S110 - best effort in the background, nobody to tell
            pass
        finally:
            self._hand_on(run.held)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._abandoned:  # the kills of abandoned transactions, within the timeout
                await asyncio.gather(*self._abandoned, return_exceptions=True)
            if self.owns_client and self._client is not None:
                await self._client.close()
