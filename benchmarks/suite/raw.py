"""The raw driver doing the same round trip: what authstore sends, captured from the
operation (not retyped), replayed on one plain connection of the same driver.

The capture swaps the store's runner for one that keeps the operation instead of running
it, then drives the operation once with the raw driver, recording every statement or
command it sends (with their results fed back the way authstore's runner shapes them).
The replay sends the recorded requests again and fetches the replies; it decodes
nothing. An operation that needs a MongoDB transaction is not replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.suite.measure import Contender
from benchmarks.suite.targets import Target, mongo_database, mysql_arguments

__all__ = ["RawDriver", "open_raw"]


class _Keep:
    def __init__(self) -> None:
        self.op: Any = None

    def run(self, op: Any) -> None:
        self.op = op


class _AsyncKeep(_Keep):
    async def run(self, op: Any) -> None:  # type: ignore[override]
        self.op = op


class Unsupported(Exception):
    pass


class RawDriver:
    """One plain connection; ``contender(store, call)`` replays what ``call(0)`` sends."""

    label = "raw driver"
    asynchronous = False

    def __init__(self, target: Target) -> None:
        self.target = target

    # --- capture ---------------------------------------------------------------------

    def _op(self, store: Any, call: Callable[[int], Any]) -> Any:
        runner = store._runner
        keep = _Keep()
        store._runner = keep
        try:
            call(0)
        finally:
            store._runner = runner
        return keep.op, runner

    async def _op_async(self, store: Any, call: Callable[[int], Any]) -> Any:
        runner = store._runner
        keep = _AsyncKeep()
        store._runner = keep
        try:
            await call(0)
        finally:
            store._runner = runner
        return keep.op, runner

    def record(self, op: Any, runner: Any) -> list[Any]:
        raise NotImplementedError

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        raise NotImplementedError

    def contender(self, store: Any, call: Callable[[int], Any]) -> Any:
        """A Contender, or an awaitable of one for async drivers."""
        if self.asynchronous:

            async def build() -> Contender:
                op, runner = await self._op_async(store, call)
                requests = await self.record(op, runner)  # type: ignore[misc]
                return Contender(self.label, "raw", self.replay(requests), note=_describe(requests))

            return build()
        op, runner = self._op(store, call)
        requests = self.record(op, runner)
        return Contender(self.label, "raw", self.replay(requests), note=_describe(requests))

    def close(self) -> Any:
        return None


def _describe(requests: list[Any]) -> str:
    return f"{len(requests)} request(s)"


# --- SQL -------------------------------------------------------------------------------


class _SqlSync(RawDriver):
    def execute(self, statement: Any) -> tuple[list[Any], int]:
        raise NotImplementedError

    def record(self, op: Any, runner: Any) -> list[Any]:
        from authstore.adapters.common.ops import drive
        from authstore.adapters.sql.execution import statements

        sent: list[Any] = []

        def execute(statement: Any) -> Any:
            sent.append(statement)
            rows, rowcount = self.execute(statement)
            return statement.result(rows, rowcount)

        drive(statements(op, runner.dialect), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)
        return lambda i: [execute(statement) for statement in requests]


class SQLiteRaw(_SqlSync):
    label = "sqlite3, same SQL"

    def __init__(self, target: Target) -> None:
        import sqlite3

        super().__init__(target)
        path = target.server.split("sqlite:///", 1)[1].split("?", 1)[0]
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA synchronous = NORMAL")  # as authstore's runner

    def execute(self, statement: Any) -> tuple[list[Any], int]:
        cursor = self.connection.execute(statement.text, statement.args)
        return cursor.fetchall(), cursor.rowcount

    def close(self) -> None:
        self.connection.close()


class PsycopgRaw(_SqlSync):
    label = "psycopg connection, same SQL"

    def __init__(self, target: Target) -> None:
        import psycopg

        super().__init__(target)
        self.connection = psycopg.connect(target.server, autocommit=True)

    def execute(self, statement: Any) -> tuple[list[Any], int]:
        cursor = self.connection.execute(statement.text, statement.args)
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    def close(self) -> None:
        self.connection.close()


class PyMySQLRaw(_SqlSync):
    label = "PyMySQL connection, same SQL"

    def __init__(self, target: Target) -> None:
        import pymysql
        from pymysql.constants import CLIENT

        super().__init__(target)
        self.connection = pymysql.connect(
            **mysql_arguments(target.server), autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS
        )

    def _results(self, statement: Any) -> list[Any]:
        results = []
        with self.connection.cursor() as cursor:
            cursor.execute(statement.text, statement.args)
            results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
            while cursor.nextset():
                results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
        return results

    def execute(self, statement: Any) -> tuple[list[Any], int]:
        results = self._results(statement)
        return list(results[-1][1] or ()), results[-1][2]

    def record(self, op: Any, runner: Any) -> list[Any]:
        from authstore.adapters.common.ops import drive
        from authstore.adapters.mysql.runner import shape
        from authstore.adapters.sql.execution import statements

        sent: list[Any] = []

        def execute(statement: Any) -> Any:
            sent.append(statement)
            return shape(statement, self._results(statement))

        drive(statements(op, runner.dialect), execute)
        return sent

    def close(self) -> None:
        self.connection.close()


class _SqlAsync(RawDriver):
    asynchronous = True

    async def execute(self, statement: Any) -> tuple[list[Any], int]:
        raise NotImplementedError

    async def record(self, op: Any, runner: Any) -> list[Any]:  # type: ignore[override]
        from authstore.adapters.common.ops import drive_async
        from authstore.adapters.sql.execution import statements

        sent: list[Any] = []

        async def execute(statement: Any) -> Any:
            sent.append(statement)
            rows, rowcount = await self.execute(statement)
            return statement.result(rows, rowcount)

        await drive_async(statements(op, runner.dialect), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)

        async def all_of(i: int) -> None:
            for statement in requests:
                await execute(statement)

        return all_of


class AiosqliteRaw(_SqlAsync):
    label = "aiosqlite, same SQL"

    async def open(self) -> None:
        import aiosqlite

        path = self.target.server.split("sqlite:///", 1)[1].split("?", 1)[0]
        self.connection = await aiosqlite.connect(path, isolation_level=None)
        await self.connection.execute("PRAGMA synchronous = NORMAL")

    async def execute(self, statement: Any) -> tuple[list[Any], int]:
        async with self.connection.execute(statement.text, statement.args) as cursor:
            return list(await cursor.fetchall()), cursor.rowcount

    async def close(self) -> None:  # type: ignore[override]
        await self.connection.close()


class AsyncpgRaw(_SqlAsync):
    label = "asyncpg connection, same SQL"

    async def open(self) -> None:
        import asyncpg

        self.connection = await asyncpg.connect(self.target.server)

    async def execute(self, statement: Any) -> tuple[list[Any], int]:
        if statement.fetch in ("one", "all"):
            return list(await self.connection.fetch(statement.text, *statement.args)), 0
        status = await self.connection.execute(statement.text, *statement.args)
        tail = status.rsplit(" ", 1)[-1]
        return [], int(tail) if tail.isdigit() else 0

    async def close(self) -> None:  # type: ignore[override]
        await self.connection.close()


def _literal(connection: Any, value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"X'{value.hex()}'"
    text: str = connection.escape(value)
    return text


class AiomysqlRaw(_SqlAsync):
    label = "aiomysql connection, same SQL"

    async def open(self) -> None:
        import aiomysql
        from pymysql.constants import CLIENT

        arguments = mysql_arguments(self.target.server)
        arguments["db"] = arguments.pop("database")
        self.connection = await aiomysql.connect(
            **arguments, autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS
        )

    async def _results(self, statement: Any) -> list[Any]:
        results = []
        async with self.connection.cursor() as cursor:
            # aiomysql 0.3 cannot escape bytes with PyMySQL 1.2: an application writes
            # them as hex literals, as authstore's runner does
            await cursor.execute(
                statement.text % tuple(_literal(self.connection, a) for a in statement.args)
            )
            results.append((cursor.description, await cursor.fetchall(), cursor.rowcount))
            while await cursor.nextset():
                results.append((cursor.description, await cursor.fetchall(), cursor.rowcount))
        return results

    async def execute(self, statement: Any) -> tuple[list[Any], int]:
        results = await self._results(statement)
        return list(results[-1][1] or ()), results[-1][2]

    async def record(self, op: Any, runner: Any) -> list[Any]:  # type: ignore[override]
        from authstore.adapters.common.ops import drive_async
        from authstore.adapters.mysql.runner import shape
        from authstore.adapters.sql.execution import statements

        sent: list[Any] = []

        async def execute(statement: Any) -> Any:
            sent.append(statement)
            return shape(statement, await self._results(statement))

        await drive_async(statements(op, runner.dialect), execute)
        return sent

    async def close(self) -> None:  # type: ignore[override]
        self.connection.close()


# --- Redis -----------------------------------------------------------------------------


class RedisRaw(RawDriver):
    label = "redis-py, same commands"

    def __init__(self, target: Target) -> None:
        import redis

        super().__init__(target)
        self.client = redis.Redis.from_url(target.server)

    def execute(self, request: Any) -> Any:
        if isinstance(request, tuple):
            return self.client.execute_command(*request)
        pipe = self.client.pipeline(transaction=True)
        for args in request:
            pipe.execute_command(*args)
        return pipe.execute()

    def record(self, op: Any, runner: Any) -> list[Any]:
        from authstore.adapters.common.ops import drive
        from authstore.adapters.redis.execution import requests

        sent: list[Any] = []

        def execute(request: Any) -> Any:
            sent.append(request)
            return self.execute(request)

        drive(requests(op), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)
        return lambda i: [execute(request) for request in requests]

    def close(self) -> None:
        self.client.close()


class AsyncRedisRaw(RawDriver):
    label = "redis.asyncio, same commands"
    asynchronous = True

    async def open(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(self.target.server)

    async def execute(self, request: Any) -> Any:
        if isinstance(request, tuple):
            return await self.client.execute_command(*request)
        pipe = self.client.pipeline(transaction=True)
        for args in request:
            pipe.execute_command(*args)
        return await pipe.execute()

    async def record(self, op: Any, runner: Any) -> list[Any]:  # type: ignore[override]
        from authstore.adapters.common.ops import drive_async
        from authstore.adapters.redis.execution import requests

        sent: list[Any] = []

        async def execute(request: Any) -> Any:
            sent.append(request)
            return await self.execute(request)

        await drive_async(requests(op), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)

        async def all_of(i: int) -> None:
            for request in requests:
                await execute(request)

        return all_of

    async def close(self) -> None:  # type: ignore[override]
        await self.client.aclose()


# --- MongoDB ---------------------------------------------------------------------------


def _documents(op: Any) -> Any:
    """A program of command documents; Unsupported for transactions."""
    from authstore.adapters.mongodb.commands import Command

    result: Any = None
    try:
        while True:
            try:
                command = op.send(result)
            except StopIteration as done:
                return done.value
            if not isinstance(command, Command):
                raise Unsupported(f"{type(command).__name__}: not replayed")
            result = yield command.document
    finally:
        op.close()


class MongoRaw(RawDriver):
    label = "pymongo, same commands"

    def __init__(self, target: Target) -> None:
        import pymongo

        super().__init__(target)
        address, name = mongo_database(target.server)
        self.client: Any = pymongo.MongoClient(address)
        self.database = self.client[name]

    def record(self, op: Any, runner: Any) -> list[Any]:
        from authstore.adapters.common.ops import drive
        from authstore.adapters.mongodb.runner import check_reply

        sent: list[Any] = []

        def execute(document: Any) -> Any:
            sent.append(document)
            return check_reply(self.database.command(document))

        drive(_documents(op), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        command = self.database.command
        if len(requests) == 1:
            (only,) = requests
            return lambda i: command(only)
        return lambda i: [command(document) for document in requests]

    def close(self) -> None:
        self.client.close()


class AsyncMongoRaw(RawDriver):
    label = "AsyncMongoClient, same commands"
    asynchronous = True

    async def open(self) -> None:
        from pymongo import AsyncMongoClient

        address, name = mongo_database(self.target.server)
        self.client: Any = AsyncMongoClient(address)
        self.database = self.client[name]

    async def record(self, op: Any, runner: Any) -> list[Any]:  # type: ignore[override]
        from authstore.adapters.common.ops import drive_async
        from authstore.adapters.mongodb.runner import check_reply

        sent: list[Any] = []

        async def execute(document: Any) -> Any:
            sent.append(document)
            return check_reply(await self.database.command(document))

        await drive_async(_documents(op), execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        command = self.database.command
        if len(requests) == 1:
            (only,) = requests
            return lambda i: command(only)

        async def all_of(i: int) -> None:
            for document in requests:
                await command(document)

        return all_of

    async def close(self) -> None:  # type: ignore[override]
        await self.client.close()


# --- memcached --------------------------------------------------------------------------


class MemcachedRaw(RawDriver):
    """pymemcache's Client doing the commands authstore sends (CAS tokens replayed as
    recorded: a replayed ``cas`` is answered "exists", still one round trip)."""

    label = "pymemcache, same commands"

    def __init__(self, target: Target) -> None:
        from pymemcache.client.base import Client

        super().__init__(target)
        self.client = Client(target.address, default_noreply=False)

    def execute(self, command: Any) -> Any:
        from authstore.adapters.memcached.commands import Delete, Get, SetMany, Store, Touch

        client = self.client
        if isinstance(command, Get):
            if command.cas:
                return {k: v for k in command.keys if (v := client.gets(k))[0] is not None}
            return {k: (v, None) for k, v in client.get_many(list(command.keys)).items()}
        if isinstance(command, Store):
            if command.verb == "cas":
                return bool(client.cas(command.key, command.value, command.token, command.exptime))
            return bool(getattr(client, command.verb)(command.key, command.value, command.exptime))
        if isinstance(command, SetMany):
            client.set_many(dict(command.items), command.exptime)
            return None
        if isinstance(command, Delete):
            return sum(bool(client.delete(k)) for k in command.keys)
        if isinstance(command, Touch):
            return sum(bool(client.touch(k, command.exptime)) for k in command.keys)
        raise Unsupported(repr(command))

    def record(self, op: Any, runner: Any) -> list[Any]:
        from authstore.adapters.common.ops import drive

        sent: list[Any] = []

        def execute(command: Any) -> Any:
            sent.append(command)
            return self.execute(command)

        drive(op, execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)
        return lambda i: [execute(command) for command in requests]

    def close(self) -> None:
        self.client.close()


class AsyncMemcachedRaw(RawDriver):
    label = "aiomcache, same commands"
    asynchronous = True

    async def open(self) -> None:
        import aiomcache

        host, port = self.target.address
        self.client = aiomcache.Client(host, port)

    async def execute(self, command: Any) -> Any:
        from authstore.adapters.memcached.commands import Get, Store

        client = self.client
        if isinstance(command, Get):
            if command.cas:
                found = {}
                for key in command.keys:
                    value, token = await client.gets(key.encode())
                    if value is not None:
                        found[key] = (value, token)
                return found
            values = await client.multi_get(*(k.encode() for k in command.keys))
            return {
                k: (v, None) for k, v in zip(command.keys, values, strict=True) if v is not None
            }
        if isinstance(command, Store):
            key = command.key.encode()
            if command.verb == "cas":
                return bool(await client.cas(key, command.value, command.token, command.exptime))
            return bool(await getattr(client, command.verb)(key, command.value, command.exptime))
        raise Unsupported(repr(command))

    async def record(self, op: Any, runner: Any) -> list[Any]:  # type: ignore[override]
        from authstore.adapters.common.ops import drive_async

        sent: list[Any] = []

        async def execute(command: Any) -> Any:
            sent.append(command)
            return await self.execute(command)

        await drive_async(op, execute)
        return sent

    def replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)

        async def all_of(i: int) -> None:
            for command in requests:
                await execute(command)

        return all_of

    async def close(self) -> None:  # type: ignore[override]
        await self.client.close()


SYNC: dict[str, type[RawDriver]] = {
    "sqlite": SQLiteRaw,
    "postgresql": PsycopgRaw,
    "mariadb": PyMySQLRaw,
    "redis": RedisRaw,
    "mongodb": MongoRaw,
    "memcached": MemcachedRaw,
}
ASYNC: dict[str, type[RawDriver]] = {
    "sqlite": AiosqliteRaw,
    "postgresql": AsyncpgRaw,
    "mariadb": AiomysqlRaw,
    "redis": AsyncRedisRaw,
    "mongodb": AsyncMongoRaw,
    "memcached": AsyncMemcachedRaw,
}


def open_raw(target: Target, asynchronous: bool) -> Any:
    """The target's raw driver (an awaitable of it when async), or None (memory)."""
    kind = (ASYNC if asynchronous else SYNC).get(target.name)
    if kind is None:
        return None
    if not asynchronous:
        return kind(target)

    async def opened() -> RawDriver:
        driver = kind(target)
        await driver.open()  # type: ignore[attr-defined]
        return driver

    return opened()
