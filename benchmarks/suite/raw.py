"""The raw driver doing the same round trip: what authstore sends, captured from the
operation (not retyped), replayed on one plain connection of the same driver.

The capture swaps the store's runner for one that keeps the operation instead of running
it, then drives the operation once with the raw driver, recording every statement or
command it sends (each reply fed back shaped the way authstore's runner shapes it). The
replay sends the recorded requests again and fetches the replies; it decodes nothing.
An operation that needs a MongoDB transaction is not replayed.

Record and replay are written once (``RawDriver``): a driver's ``execute`` returns the
reply, or an awaitable of it for an async driver, and the steps are driven by
``run_sync`` or ``run_async`` from ``ops``. Each driver only says how it connects, how it
sends one request and which program turns an operation into requests.

A replay repeats requests recorded once, so a compare-and-set write (SQLite's rate
limiters: read the row, decide, write only if the row is still as read) applies nothing
from the second replay on: the row has moved on. The replay then skips the write (and on
SQLite its commit to the log) that authstore does on every call: not the same work. Such
a replay is measured all the same, as kind ``NOT_APPLIED``, labelled so, and held to no
goal. A driver whose replies say whether a write changed anything (``applied``: SQL's row
counts) is checked on a replay after the first. memcached's replayed compare-and-set is
not: its server answers a stale token in the same round trip, doing the same work but
the store.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from authstore.adapters.common.settings import SQL_POOL_SIZE
from benchmarks.suite.measure import Contender
from benchmarks.suite.ops import Steps, run_async, run_sync
from benchmarks.suite.targets import Target, mongo_database, mysql_arguments

__all__ = ["RawDriver", "open_raw"]


class _Keep:
    """Stands in for a store's runner: keeps the operation, runs nothing."""

    def __init__(self, asynchronous: bool) -> None:
        self.op: Any = None
        self.asynchronous = asynchronous

    def run(self, op: Any) -> Any:
        self.op = op
        if self.asynchronous:

            async def nothing() -> None:
                return None

            return nothing()
        return None


class Unsupported(Exception):
    pass


NOT_APPLIED = "raw, write not applied"
"""The kind of a replay whose recorded write changes nothing when replayed (see the
module docstring): measured, no goal."""


class RawDriver:
    """One plain connection; ``contender(store, call)`` replays what ``call(0)`` sends."""

    label = "raw driver"
    kind = "raw"
    """``raw``: one plain connection (the goal's reference); ``raw pool``: the driver's
    own pool, the way an application shares it (context, no goal)."""
    asynchronous = False

    def __init__(self, target: Target) -> None:
        self.target = target

    def open(self) -> Any:
        """Connect; an awaitable for async drivers."""
        return None

    def program(self, op: Any, runner: Any) -> Generator[Any, Any, Any]:
        """The operation as driver requests (the runner's own translation)."""
        raise NotImplementedError

    def execute(self, request: Any) -> Any:
        """Send one request, return its reply (an awaitable of it for async drivers)."""
        raise NotImplementedError

    def shaped(self, request: Any, reply: Any) -> Any:
        """The reply as the operation expects it back (as authstore's runner shapes it)."""
        return reply

    def applied(self, request: Any, reply: Any) -> bool | None:
        """Whether ``reply`` says the write ``request`` changed something; None when it
        is no write or its reply cannot say."""
        return None

    def close(self) -> Any:
        return None

    def _record(
        self, program: Generator[Any, Any, Any], sent: list[Any], wrote: list[bool | None]
    ) -> Steps:
        try:
            request = next(program)
            while True:
                sent.append(request)
                reply = yield self.execute(request)
                wrote.append(self.applied(request, reply))
                request = program.send(self.shaped(request, reply))
        except StopIteration:
            return None

    def _writes_lost(self, requests: list[Any], wrote: list[bool | None]) -> Steps:
        """Replay twice; whether a write that applied when recorded applies nothing on
        the second replay (the first may still find the row as recorded)."""
        replies: list[Any] = []
        for _ in range(2):
            replies = []
            for request in requests:
                replies.append((yield self.execute(request)))
        return any(
            before and self.applied(request, reply) is False
            for request, reply, before in zip(requests, replies, wrote, strict=True)
        )

    def _replay(self, requests: list[Any]) -> Callable[[int], Any]:
        execute = self.execute
        if len(requests) == 1:
            (only,) = requests
            return lambda i: execute(only)
        if not self.asynchronous:
            return lambda i: [execute(request) for request in requests]

        async def all_of(i: int) -> None:
            for request in requests:
                await execute(request)

        return all_of

    def contender(self, store: Any, call: Callable[[int], Any]) -> Any:
        """A Contender, or an awaitable of one for async drivers."""
        sent: list[Any] = []
        wrote: list[bool | None] = []

        def made(lost: bool) -> Contender:
            note = f"{len(sent)} request(s)"
            if lost:
                note += "; its write applies nothing once replayed (the row moved on): no goal"
                label = f"{self.label}, write not applied"
                return Contender(label, NOT_APPLIED, self._replay(sent), note=note)
            return Contender(self.label, self.kind, self._replay(sent), note=note)

        runner, keep = store._runner, _Keep(self.asynchronous)
        if not self.asynchronous:
            store._runner = keep
            try:
                call(0)
            finally:
                store._runner = runner
            run_sync(self._record(self.program(keep.op, runner), sent, wrote))
            return made(run_sync(self._writes_lost(sent, wrote)))

        async def build() -> Contender:
            store._runner = keep  # an async method makes its operation when awaited
            try:
                await call(0)
            finally:
                store._runner = runner
            await run_async(self._record(self.program(keep.op, runner), sent, wrote))
            return made(await run_async(self._writes_lost(sent, wrote)))

        return build()


# --- SQL -------------------------------------------------------------------------------


class _Sql(RawDriver):
    """Replies are (rows, rowcount); the operation gets ``Statement.result`` of them."""

    def program(self, op: Any, runner: Any) -> Generator[Any, Any, Any]:
        from authstore.adapters.sql.program import statements

        return statements(op, runner.dialect)

    def shaped(self, request: Any, reply: Any) -> Any:
        rows, rowcount = reply
        return request.result(rows, rowcount)

    def applied(self, request: Any, reply: Any) -> bool | None:
        if request.fetch != "rowcount":
            return None  # a read, or a write returning rows: not judged
        changed: int = self.shaped(request, reply)
        return changed > 0


def _sqlite_path(target: Target) -> str:
    return target.server.split("sqlite:///", 1)[1].split("?", 1)[0]


class SQLiteRaw(_Sql):
    label = "sqlite3, same SQL"

    def open(self) -> None:
        import sqlite3

        self.connection = sqlite3.connect(
            _sqlite_path(self.target), isolation_level=None, check_same_thread=False
        )
        self.connection.execute("PRAGMA synchronous = NORMAL")  # as authstore's runner

    def execute(self, request: Any) -> tuple[list[Any], int]:
        cursor = self.connection.execute(request.text, request.args)
        return cursor.fetchall(), cursor.rowcount

    def close(self) -> None:
        self.connection.close()


class AiosqliteRaw(_Sql):
    label = "aiosqlite, same SQL"
    asynchronous = True

    async def open(self) -> None:
        import aiosqlite

        self.connection = await aiosqlite.connect(_sqlite_path(self.target), isolation_level=None)
        await self.connection.execute("PRAGMA synchronous = NORMAL")

    async def execute(self, request: Any) -> tuple[list[Any], int]:
        async with self.connection.execute(request.text, request.args) as cursor:
            return list(await cursor.fetchall()), cursor.rowcount

    async def close(self) -> None:
        await self.connection.close()


class PsycopgRaw(_Sql):
    label = "psycopg connection, same SQL"

    def open(self) -> None:
        import psycopg

        # authstore's sync runner sends PostgreSQL's own $1 placeholders (raw cursors)
        self.connection = psycopg.connect(
            self.target.server, autocommit=True, cursor_factory=psycopg.RawCursor
        )

    def execute(self, request: Any) -> tuple[list[Any], int]:
        cursor = self.connection.execute(request.text, request.args)
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    def close(self) -> None:
        self.connection.close()


class PsycopgPoolRaw(PsycopgRaw):
    label = f"psycopg_pool of {SQL_POOL_SIZE} (authstore's default), same SQL"
    kind = "raw pool"

    def open(self) -> None:
        import psycopg
        import psycopg_pool

        self.pool = psycopg_pool.ConnectionPool(
            self.target.server,
            min_size=1,
            max_size=SQL_POOL_SIZE,
            kwargs={"autocommit": True, "cursor_factory": psycopg.RawCursor},
            open=True,
        )

    def execute(self, request: Any) -> tuple[list[Any], int]:
        with self.pool.connection() as connection:
            cursor = connection.execute(request.text, request.args)
            return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    def close(self) -> None:
        self.pool.close()


class AsyncpgRaw(_Sql):
    label = "asyncpg connection, same SQL"
    asynchronous = True

    async def open(self) -> None:
        import asyncpg

        self.connection = await asyncpg.connect(self.target.server)

    async def execute(self, request: Any) -> tuple[list[Any], int]:
        if request.fetch in ("one", "all"):
            return list(await self.connection.fetch(request.text, *request.args)), 0
        status = await self.connection.execute(request.text, *request.args)
        tail = status.rsplit(" ", 1)[-1]
        return [], int(tail) if tail.isdigit() else 0

    async def close(self) -> None:
        await self.connection.close()


class AsyncpgPoolRaw(AsyncpgRaw):
    label = f"asyncpg pool of {SQL_POOL_SIZE} (authstore's default), same SQL"
    kind = "raw pool"

    async def open(self) -> None:
        import asyncpg

        self.connection = await asyncpg.create_pool(
            self.target.server, min_size=1, max_size=SQL_POOL_SIZE
        )


class _MySQL(_Sql):
    """Replies are every result set of a multi-statement command, shaped as the
    runner shapes them (the last one that returned rows)."""

    def shaped(self, request: Any, reply: Any) -> Any:
        from authstore.adapters.mysql.runner import shape

        return shape(request, reply)


class PyMySQLRaw(_MySQL):
    label = "PyMySQL connection, same SQL"

    def open(self) -> None:
        import pymysql
        from pymysql.constants import CLIENT

        self.connection = pymysql.connect(
            **mysql_arguments(self.target.server),
            autocommit=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
        )

    def execute(self, request: Any) -> list[Any]:
        results = []
        with self.connection.cursor() as cursor:
            cursor.execute(request.text, request.args)
            results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
            while cursor.nextset():
                results.append((cursor.description, cursor.fetchall(), cursor.rowcount))
        return results

    def close(self) -> None:
        self.connection.close()


def _literal(connection: Any, value: object) -> str:
    """aiomysql 0.3 cannot escape bytes with PyMySQL 1.2: an application writes them as
    hex literals, as authstore's runner does."""
    if isinstance(value, (bytes, bytearray)):
        return f"X'{value.hex()}'"
    text: str = connection.escape(value)
    return text


class AiomysqlRaw(_MySQL):
    label = "aiomysql connection, same SQL"
    asynchronous = True

    async def open(self) -> None:
        import aiomysql
        from pymysql.constants import CLIENT

        arguments = mysql_arguments(self.target.server)
        arguments["db"] = arguments.pop("database")
        self.connection = await aiomysql.connect(
            **arguments, autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS
        )

    async def execute(self, request: Any) -> list[Any]:
        results = []
        text = request.text % tuple(_literal(self.connection, a) for a in request.args)
        async with self.connection.cursor() as cursor:
            await cursor.execute(text)
            results.append((cursor.description, await cursor.fetchall(), cursor.rowcount))
            while await cursor.nextset():
                results.append((cursor.description, await cursor.fetchall(), cursor.rowcount))
        return results

    async def close(self) -> None:
        self.connection.close()


# --- Redis -----------------------------------------------------------------------------


class _Redis(RawDriver):
    """A request is one command's arguments, or a list of them for a MULTI pipeline."""

    def program(self, op: Any, runner: Any) -> Generator[Any, Any, Any]:
        from authstore.adapters.redis.commands import Batch, Script

        def requests() -> Generator[Any, Any, Any]:
            # the runners' translation: a script as EVALSHA (authstore loaded it already)
            try:
                command = next(op)
                while True:
                    if type(command) is Script:
                        reply = yield command.evalsha()
                    elif type(command) is Batch:
                        reply = yield [call.args for call in command.calls]
                    else:
                        reply = yield command.args
                    command = op.send(reply)
            except StopIteration as done:
                return done.value

        return requests()

    def execute(self, request: Any) -> Any:
        if isinstance(request, tuple):
            return self.client.execute_command(*request)
        pipe = self.client.pipeline(transaction=True)
        for args in request:
            pipe.execute_command(*args)
        return pipe.execute()  # an awaitable with redis.asyncio


class RedisRaw(_Redis):
    label = "redis-py, same commands"

    def open(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.target.server)

    def close(self) -> None:
        self.client.close()


class AsyncRedisRaw(_Redis):
    label = "redis.asyncio, same commands"
    asynchronous = True

    async def open(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(self.target.server)

    async def close(self) -> None:
        await self.client.aclose()


# --- MongoDB ---------------------------------------------------------------------------


def _documents(op: Any) -> Generator[Any, Any, Any]:
    """The operation's command documents; Unsupported for transactions."""
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
    """pymongo's ``database.command``; the async client's returns an awaitable."""

    label = "pymongo, same commands"

    def open(self) -> None:
        import pymongo

        self._connect(pymongo.MongoClient)

    def _connect(self, kind: Any) -> None:
        address, name = mongo_database(self.target.server)
        direct = "directconnection=true" in self.target.server.lower()  # through the proxy
        self.client = kind(address, directConnection=True) if direct else kind(address)
        self.database = self.client[name]

    def program(self, op: Any, runner: Any) -> Generator[Any, Any, Any]:
        return _documents(op)

    def execute(self, request: Any) -> Any:
        return self.database.command(request)

    def shaped(self, request: Any, reply: Any) -> Any:
        from authstore.adapters.mongodb.runner import check_reply

        return check_reply(reply)

    def close(self) -> Any:
        return self.client.close()


class AsyncMongoRaw(MongoRaw):
    label = "AsyncMongoClient, same commands"
    asynchronous = True

    async def open(self) -> None:  # type: ignore[override]
        from pymongo import AsyncMongoClient

        self._connect(AsyncMongoClient)


# --- memcached --------------------------------------------------------------------------


class _Memcached(RawDriver):
    """The operation yields memcached commands itself; CAS tokens are replayed as
    recorded (a replayed ``cas`` is answered "exists": still one round trip). A ``Swap``
    (incr, rate limits) is its meta set and meta get in one write, the bytes authstore's
    runner writes (``commands.swap_request``), its replies read the runner's way; a read
    of one key with its CAS token is a meta get (``commands.meta_get_request``), as there."""

    def program(self, op: Any, runner: Any) -> Generator[Any, Any, Any]:
        return op  # type: ignore[no-any-return]


class MemcachedRaw(_Memcached):
    label = "pymemcache, same commands"

    def open(self) -> None:
        from pymemcache.client.base import Client

        # as authstore's runner connects: TCP_NODELAY (pymemcache's default leaves Nagle on)
        self.client = Client(self.target.address, default_noreply=False, no_delay=True)

    def execute(self, request: Any) -> Any:
        from authstore.adapters.memcached.commands import (
            Delete,
            Get,
            SetMany,
            Store,
            Swap,
            Touch,
        )
        from authstore.adapters.memcached.sync import meta_get, swap

        client = self.client
        if isinstance(request, Swap):
            return swap(client, request)
        if isinstance(request, Get):
            if request.cas and len(request.keys) == 1:  # as authstore's runner: a meta get
                return meta_get(client, request.keys[0])
            if request.cas:
                return {k: v for k in request.keys if (v := client.gets(k))[0] is not None}
            return {k: (v, None) for k, v in client.get_many(list(request.keys)).items()}
        if isinstance(request, Store):
            if request.verb == "cas":
                return bool(client.cas(request.key, request.value, request.token, request.exptime))
            return bool(getattr(client, request.verb)(request.key, request.value, request.exptime))
        if isinstance(request, SetMany):
            client.set_many(dict(request.items), request.exptime)
            return None
        if isinstance(request, Delete):
            return sum(bool(client.delete(k)) for k in request.keys)
        if isinstance(request, Touch):
            return sum(bool(client.touch(k, request.exptime)) for k in request.keys)
        raise Unsupported(repr(request))

    def close(self) -> None:
        self.client.close()


class AsyncMemcachedRaw(_Memcached):
    label = "aiomcache, same commands"
    asynchronous = True

    async def open(self) -> None:
        import aiomcache

        host, port = self.target.address
        self.client = aiomcache.Client(host, port)

    async def execute(self, request: Any) -> Any:
        from authstore.adapters.memcached.aio import meta_get, swap
        from authstore.adapters.memcached.commands import Get, Store, Swap

        client = self.client
        if isinstance(request, Swap):
            return await swap(client, request)
        if isinstance(request, Get):
            if request.cas and len(request.keys) == 1:  # as authstore's runner: a meta get
                return await meta_get(client, request.keys[0])
            if request.cas:
                found = {}
                for key in request.keys:
                    value, token = await client.gets(key.encode())
                    if value is not None:
                        found[key] = (value, token)
                return found
            if len(request.keys) == 1:  # as authstore's runner: get, not multi_get's gets
                (key,) = request.keys
                value = await client.get(key.encode())
                return {} if value is None else {key: (value, None)}
            values = await client.multi_get(*(k.encode() for k in request.keys))
            return {
                k: (v, None) for k, v in zip(request.keys, values, strict=True) if v is not None
            }
        if isinstance(request, Store):
            key = request.key.encode()
            if request.verb == "cas":
                return bool(await client.cas(key, request.value, request.token, request.exptime))
            return bool(await getattr(client, request.verb)(key, request.value, request.exptime))
        raise Unsupported(repr(request))

    async def close(self) -> None:
        await self.client.close()


DRIVERS: dict[tuple[str, bool], type[RawDriver]] = {
    ("sqlite", False): SQLiteRaw,
    ("sqlite", True): AiosqliteRaw,
    ("postgresql", False): PsycopgRaw,
    ("postgresql", True): AsyncpgRaw,
    ("mariadb", False): PyMySQLRaw,
    ("mariadb", True): AiomysqlRaw,
    ("redis", False): RedisRaw,
    ("redis", True): AsyncRedisRaw,
    ("mongodb", False): MongoRaw,
    ("mongodb", True): AsyncMongoRaw,
    ("memcached", False): MemcachedRaw,
    ("memcached", True): AsyncMemcachedRaw,
}


POOLED: dict[str, type[RawDriver]] = {
    "postgresql": AsyncpgPoolRaw,
    "redis": AsyncRedisRaw,  # redis.asyncio's client has its own pool (unbounded)
    "mongodb": AsyncMongoRaw,  # AsyncMongoClient pools (maxPoolSize 100)
}
"""Async drivers many callers can share, for 100 concurrent callers."""

POOLS: dict[tuple[str, bool], type[RawDriver]] = {
    ("postgresql", False): PsycopgPoolRaw,
    ("postgresql", True): AsyncpgPoolRaw,
}
"""A second raw replay for one caller, through the driver's own pool (as authstore's
runners use one): what a pool checkout costs, apart from authstore's own work."""


def open_raw(
    target: Target, asynchronous: bool, *, pooled: bool = False, pool: bool = False
) -> Any:
    """The target's raw driver, connected (an awaitable of it when async), or None
    (memory: nothing to replay; with ``pooled``, a target without a pooled driver for
    many callers here; with ``pool``, one without a pool replay for one caller)."""
    if pool:
        kind = POOLS.get((target.name, asynchronous))
    else:
        kind = POOLED.get(target.name) if pooled else DRIVERS.get((target.name, asynchronous))
    if kind is None:
        return None
    driver = kind(target)
    opened = driver.open()
    if not asynchronous:
        return driver

    async def connected() -> RawDriver:
        await opened
        return driver

    return connected()
