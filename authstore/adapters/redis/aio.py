"""The async Redis runner: redis.asyncio, its client made in the loop that first uses it.

Every operation is bounded by ``timeout`` on the client side as a whole (connection
wait, connect and reply), so a frozen server gives BackendUnavailableError in time
(``Deadlines``: one loop timer for all operations in flight, not one per operation).
At most ``pool_size`` operations are in flight (a semaphore, per event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from authstore.adapters.common.deadlines import Deadlines
from authstore.adapters.common.ops import Op, drive_async
from authstore.adapters.redis.client import (
    closing_calls,
    drop_connections,
    first_live,
    major_version,
    make_client,
)
from authstore.adapters.redis.runner import (
    RedisRunner,
    Request,
    Waited,
    is_cluster_client,
    pack,
)
from authstore.adapters.redis.settings import RedisSettings
from authstore.contracts.errors import BackendError

__all__ = ["AsyncRedisRunner"]

T = TypeVar("T")


class AsyncRedisRunner(RedisRunner):
    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(settings, "redis.asyncio")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._deadlines = Deadlines(settings.timeout)
        self._batch_one_by_one = major_version() < 6

    async def _client_here(self) -> Any:
        """Our client belongs to one loop; a store used from a new loop starts over there
        (the old loop's connections cannot be awaited from this one)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._client is None or (self.owns_client and self._client_loop is not loop):
            if self._loop is not loop:
                self._loop, self._ready = loop, asyncio.Lock()
            async with self._ready:
                if self._client is None or (self.owns_client and self._client_loop is not loop):
                    client, live = self.settings.client, None
                    if client is None:
                        if self.cluster:  # on a thread: the caller's deadline bounds the wait
                            live = await asyncio.to_thread(first_live, self.settings)
                        client = make_client(
                            self._redis, self.settings, asynchronous=True, live=live
                        )
                    try:
                        await self._first_look(client, live)
                    except BaseException:  # a deadline or an error: none of it stays open
                        if self.owns_client:
                            drop_connections(client)
                        raise
                    old, old_loop = self._client, self._client_loop
                    self._adopt(client)
                    self._client_loop = loop
                    if old is not None and self.owns_client:
                        self._let_go(old, old_loop)
        return self._client

    async def _first_look(self, client: Any, live: tuple[str, int] | None) -> None:
        target: dict[str, Any] = {}
        if is_cluster_client(client):
            # Learn the slot map once, before concurrent commands: redis-py
            # replaces the startup nodes' connections while others use them.
            await client.initialize()
            node = None if live is None else client.get_node(*live)
            if node is not None:  # only the node that answered: another may be frozen
                target["target_nodes"] = node
        # INFO may be disabled, or the server down: the operation says so
        with contextlib.suppress(*self.driver_errors):
            self._inspect(await client.info("memory", **target))

    def _let_go(self, client: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        """Close a client of another event loop: on that loop when it still runs (another
        thread), else at once, without it (a closed loop can no longer close anything)."""
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close_client(client), loop)
        else:
            drop_connections(client)

    async def _close_client(self, client: Any) -> None:
        for close in closing_calls(client, asynchronous=True):
            try:
                await asyncio.wait_for(close(), self.settings.timeout)
            except Exception:  # noqa: S112 - a store that cannot say goodbye is closed all the same
                continue

    async def run(self, op: Op[T]) -> T:
        started = self._deadlines.start()
        try:
            loop = asyncio.get_running_loop()
            if self._slots_loop is not loop:
                self._slots, self._slots_loop = asyncio.Semaphore(self.settings.pool_size), loop
            async with self._slots:  # at most pool_size operations in flight
                return await drive_async(self.program(op), self._execute)
        except asyncio.CancelledError as error:
            if self._deadlines.finish(started, error):
                raise self._late() from None
            raise
        except TimeoutError as error:
            raise self._late() from error
        finally:
            self._deadlines.finish(started, None)

    async def _execute(self, request: Request) -> Any:
        client = self._client
        if client is None or (
            self._client_loop is not asyncio.get_running_loop() and self.owns_client
        ):
            client = await self._client_here()  # a cluster client connects here
        elif self._closed:
            self._check_open()
        if type(request) is Waited:
            if self._batch_one_by_one and is_cluster_client(client):
                raise BackendError(
                    "durability=replicated on Redis Cluster needs redis-py 6 or later "
                    "(an older async cluster pipeline never runs)"
                )
            pipe, node = self.waited_pipeline(client, request)
            replies = await pipe.execute(raise_on_error=False)
            return self.waited_replies(client, request, node, replies)
        if type(request) is tuple:
            pool = self._pool
            if pool is None:
                return await client.execute_command(*request)
            packed = pack(request)
            connection = await pool.get_connection(*self._pool_args)
            try:
                await connection.send_packed_command(packed)
                reply = await connection.read_response()
            finally:
                await pool.release(connection)
            callback = client.response_callbacks.get(request[0])
            return reply if callback is None else callback(reply)
        if self._batch_one_by_one and is_cluster_client(client):
            # redis-py before 6 runs an async cluster pipeline once per allowed
            # retry, so with none (make_client) it never runs: one command at a time
            return [await client.execute_command(*args) for args in request]
        pipe = client.pipeline(transaction=not is_cluster_client(client))
        for args in request:
            pipe.execute_command(*args)
        return await pipe.execute()

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is None or not self.owns_client:
            return
        self._pool = None
        if self._client_loop is asyncio.get_running_loop():
            await self._close_client(client)
        else:
            self._let_go(client, self._client_loop)
