"""The async memcached runner: aiomcache, one pooled client per server.

aiomcache speaks to one server; several servers are one client each, with keys
routed by ``runner.Ring`` exactly as the sync runner routes them. Every operation
is bounded by ``timeout`` as a whole (``Deadlines``: one loop timer, not one per
call). A call cut short (timed out or cancelled) may leave its reply unread on a
pooled connection, where the next command would read it as its own: the client's
idle connections are closed then, so none is reused. And a
connection the server closes mid-reply raises (aiomcache 0.8 would spin on it
forever, freezing the loop), on a client given as ``client=`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from authstore.adapters.common.deadlines import Deadlines
from authstore.adapters.common.ops import Op, drive_async
from authstore.adapters.common.sockets import IdlePoll
from authstore.adapters.memcached.commands import (
    ERROR_LINES,
    Pause,
    Replies,
    Swap,
    Turn,
    meta_get_request,
    meta_replies,
    swap_answer,
    swap_request,
    value_size,
)
from authstore.adapters.memcached.runner import METHODS, Call, MemcachedRunnerBase, Ring
from authstore.adapters.memcached.settings import MemcachedSettings, node_name
from authstore.contracts.errors import BackendError, ConfigurationError
from authstore.registry import require_module

__all__ = ["AsyncMemcachedRunner", "meta_get", "swap"]

T = TypeVar("T")


class AsyncMemcachedRunner(MemcachedRunnerBase[Any]):
    lock_factory = asyncio.Lock

    def __init__(self, settings: MemcachedSettings) -> None:
        super().__init__(settings)
        self._aiomcache = require_module("aiomcache", "memcached async", "memcached")
        self._unavailable: tuple[type[BaseException], ...] = (OSError, EOFError)
        self._driver_errors = (*self._unavailable, self._aiomcache.ClientException)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines = Deadlines(settings.timeout)
        direct: dict[str, Callable[..., Awaitable[Any]]] = {"swap": swap, "mget": meta_get}
        self._methods: dict[str, Callable[..., Awaitable[Any]]] = {
            name: direct.get(name) or getattr(self, f"_{name}") for name in METHODS
        }
        """``Call.method`` -> what performs it on a client (the meta commands: the
        functions themselves, one coroutine fewer)."""
        client = settings.client
        if client is not None:
            if not isinstance(client, self._aiomcache.Client):
                raise ConfigurationError(
                    "client= for an async memcached store is an aiomcache.Client, "
                    f"not {type(client).__name__}"
                )
            # the same fix on the caller's client (this instance only): a server closing
            # the connection mid-reply must raise, not freeze the event loop
            client._execute_simple_command = types.MethodType(_execute_simple_command, client)
            client._pool.acquire = types.MethodType(_acquire_fresh, client._pool)
            self._use({"client": client})
        else:
            self._ring = Ring(node_name(host, port) for host, port in settings.servers)

    def _ready(self) -> None:
        """Clients of the running loop, made on first use (their connections belong to it)."""
        if self.settings.client is not None:
            return
        loop = self._deadlines.loop  # the running loop: ``run`` started its deadline
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise BackendError(
                "this async memcached store is in use by another event loop; "
                "open one store per loop"
            )
        assert loop is not None
        safe = _safe_client_class(self._aiomcache)
        size = self.settings.pool_size
        self._loop = loop
        self._clients = {
            # aiomcache opens a connection beyond pool_minsize only when it holds none:
            # with a smaller minimum every caller would queue on one connection.
            node_name(host, port): safe(host, port, pool_size=size, pool_minsize=size)
            for host, port in self.settings.servers
        }

    async def run(self, op: Op[T]) -> T:
        started = self._deadlines.start()
        try:
            return await drive_async(self.program(op), self._call)
        except asyncio.CancelledError as error:
            if self._deadlines.finish(started, error):
                late = TimeoutError(f"no answer within {self.settings.timeout:g} s")
                raise self._error(late, unavailable=True) from None
            raise
        finally:
            self._deadlines.finish(started, None)

    async def _call(self, call: Call) -> Any:
        """One call; the operation as a whole is bounded by ``timeout`` (``run``)."""
        if not call.server:  # LOCAL: a turn or a pause, no client
            return await self._methods[call.method](None, *call.args)
        client = self._clients[call.server]
        method = call.method
        try:
            return await self._methods[method](client, *call.args)
        except BaseException:
            # a driver error, or cut short (timed out or cancelled) mid-call: closing the
            # idle connections closes the one this call used too
            await client.close()
            raise

    def _is_unavailable(self, error: BaseException) -> bool:
        # aiomcache reports a connection closed mid-reply as a failed get of b''
        return isinstance(error, self._unavailable) or str(error).endswith("b''")

    # One method per Call.method: the aiomcache call and nothing else.

    async def _get(self, client: Any, keys: list[str]) -> dict[str, Any]:
        if len(keys) == 1:
            key = keys[0]
            value = await client.get(key.encode())
            return {} if value is None else {key: (value, None)}
        values = await client.multi_get(*(key.encode() for key in keys))
        return {
            key: (value, None) for key, value in zip(keys, values, strict=True) if value is not None
        }

    async def _gets(self, client: Any, keys: list[str]) -> dict[str, Any]:
        found = {}
        for key in keys:
            value, token = await client.gets(key.encode())
            if value is not None:
                found[key] = (value, token)
        return found

    async def _set(self, client: Any, key: str, value: bytes, exp: int, _: object) -> bool:
        self._stored(await client.set(key.encode(), value, exp), "set")
        return True

    async def _add(self, client: Any, key: str, value: bytes, exp: int, _: object) -> bool:
        return bool(await client.add(key.encode(), value, exp))

    async def _cas(self, client: Any, key: str, value: bytes, exp: int, token: object) -> bool:
        return bool(await client.cas(key.encode(), value, token, exp))

    async def _set_many(self, client: Any, items: list[tuple[str, bytes]], exp: int) -> None:
        for key, value in items:
            self._stored(await client.set(key.encode(), value, exp), "set_many")

    async def _delete(self, client: Any, key: str) -> bool:
        return bool(await client.delete(key.encode()))

    async def _touch(self, client: Any, key: str, exp: int) -> bool:
        return bool(await client.touch(key.encode(), exp))

    async def _version(self, client: Any) -> None:
        await client.version()

    async def _turn(self, _: None, turn: Turn) -> bool:
        return bool(await turn.lock.acquire())  # the deadline (``run``) bounds the wait

    async def _pause(self, _: None, pause: Pause) -> None:
        await asyncio.sleep(pause.seconds)

    async def close(self) -> None:
        self._closed = True
        if self.owns_client and self._loop is asyncio.get_running_loop():
            for client in self._clients.values():
                await client.close()


async def _execute_simple_command(self: Any, conn: Any, raw_command: bytes) -> bytes:
    """aiomcache's one-line command, except that a connection the server closes mid-reply
    raises: aiomcache 0.8 reads the empty line at EOF again and again without ever
    yielding to the loop, so not even a timeout could end it."""
    conn.writer.write(raw_command)
    await conn.writer.drain()
    line: bytes = await conn.reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionResetError("memcached closed the connection mid-reply")
    return line[:-2]


async def swap(client: Any, request: Swap) -> tuple[bytes | None, tuple[bytes, bytes] | None]:
    """A ``Swap`` on an aiomcache ``Client``: its meta set and meta get in one write,
    their replies read after (aiomcache has no meta commands). A failed connection is
    closed, as aiomcache closes its own."""
    ((status, _), (header, value)) = await _exchange(client, swap_request(request), 2)
    return swap_answer(status, header, value)


async def meta_get(client: Any, key: str) -> dict[str, tuple[bytes, int]]:
    """A ``Get`` of one key with its CAS token, as a meta get (``meta_get_request``) on an
    aiomcache ``Client``: ``{key: (raw value, token)}`` (an int, as aiomcache's ``gets``
    gives and its ``cas`` takes), or ``{}``. A failed connection is closed."""
    return _found(key, *await _exchange(client, meta_get_request(key), 1))


def _found(key: str, reply: tuple[bytes, bytes | None]) -> dict[str, tuple[bytes, int]]:
    """A meta get's reply as a ``Get``'s answer."""
    header, value = reply
    if value is None:
        value_size(header)  # EN, or raises
        return {}
    return {key: (value, int(header.rpartition(b" c")[2]))}


async def _exchange(client: Any, request: bytes, count: int) -> Replies:
    """Send ``request`` on a pooled connection and read its ``count`` meta replies
    (``meta_replies``) from what the connection received, usually the whole reply at
    once. An error reply raises aiomcache's ClientException, a connection closed
    mid-reply ConnectionResetError; a failed connection is closed."""
    conn = await client._pool.acquire()
    try:
        conn.writer.write(request)
        reader = conn.reader
        buf = await reader.read(READ_SIZE)
        while True:
            replies = meta_replies(buf, count)
            if not isinstance(replies, int):
                break
            more = await (reader.read(READ_SIZE) if replies == 1 else reader.readexactly(replies))
            if not more:
                raise ConnectionResetError("memcached closed the connection mid-reply")
            buf += more
        line = replies[-1][0]
        if line.startswith(ERROR_LINES):
            from aiomcache import ClientException

            raise ClientException("memcached: " + line.decode(errors="replace"))
        return replies
    except Exception as error:
        conn.reader.set_exception(error)
        raise
    finally:
        client._pool.release(conn)


def _stale(connection: Any) -> bool:
    """Whether an idle pooled connection was closed by the server (a restart, an idle
    timeout): its reader saw EOF, or its socket has something to read that the event
    loop has not read yet (a loop busy since the server closed it). memcached never
    sends anything unasked, so anything to read means the connection is unusable."""
    if connection.reader.at_eof() or connection.reader.exception() is not None:
        return True
    writer = connection.writer
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    idle: IdlePoll | None = getattr(writer, "_authstore_idle", None)
    if idle is None:  # a connection not seen yet
        idle = writer._authstore_idle = IdlePoll()
        _smaller_reads(writer.transport)
    return idle.readable(sock)


READ_SIZE = 65536
"""What one receive of a connection asks the kernel for (``_smaller_reads``)."""


def _smaller_reads(transport: Any) -> None:
    """Receives of at most ``READ_SIZE`` bytes on an asyncio selector transport, which
    asks ``recv`` for 256 KiB: a buffer that size is above glibc's mmap threshold, so
    every reply, however short, cost an mmap, a page fault, an mremap and a munmap (four
    trips to the kernel beside the receive itself). 64 KiB comes from the heap; a longer
    reply takes more receives. Other transports (uvloop's) are left as they are."""
    if isinstance(getattr(type(transport), "max_size", None), int):
        with contextlib.suppress(AttributeError, TypeError):
            transport.max_size = READ_SIZE


async def _acquire_fresh(pool: Any) -> Any:
    """aiomcache's ``MemcachePool.acquire``, passing over stale connections (closed,
    then replaced by new ones) before anything is sent on them: a call, a write too,
    is then sent once, on a live connection, and never sent again after a failure, when
    it may have been applied. At most one more than the pool holds are passed over (a
    server that closes every new connection, full say, fails the call instead)."""
    acquire = type(pool).acquire
    idle, in_use = pool._pool, pool._in_use
    for _ in range(pool._maxsize + 1):
        if idle.qsize() and len(in_use) + idle.qsize() >= pool._minsize:
            # an idle connection and no connection to open: what ``acquire`` does then,
            # without its coroutines (it checks the connection's EOF, as ``_stale`` does)
            connection = idle.get_nowait()
            in_use.add(connection)
        else:
            connection = await acquire(pool)
        if not _stale(connection):
            return connection
        pool._in_use.discard(connection)
        pool._do_close(connection)
    return await acquire(pool)


@functools.cache
def _safe_client_class(aiomcache: Any) -> Any:
    class SafeClient(aiomcache.Client):  # type: ignore[misc]
        """aiomcache's Client with ``_execute_simple_command`` that raises at EOF, and a
        pool that passes over stale connections (``_acquire_fresh``) and hands out the
        connection released last first (a stack, where aiomcache's queue goes round all
        of them): one caller at a time keeps using one connection, warm in the caches
        of this process, of the kernel and of the memcached thread serving it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pool = self._pool
            pool.acquire = types.MethodType(_acquire_fresh, pool)
            if isinstance(pool._pool, asyncio.Queue) and pool._pool.empty():
                pool._pool = asyncio.LifoQueue()

    SafeClient._execute_simple_command = _execute_simple_command
    return SafeClient
