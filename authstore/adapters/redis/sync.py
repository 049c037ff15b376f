"""The sync Redis runner: redis-py, thread-safe (a blocking pool of connections)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.redis.commands import Script
from authstore.adapters.redis.execution import (
    RedisRunnerBase,
    Request,
    ScriptMissing,
    closing_calls,
    direct_pool,
    get_connection_args,
    make_client,
    pack,
    request,
)
from authstore.adapters.redis.settings import RedisSettings
from authstore.registry import require_module

__all__ = ["SyncRedisRunner"]

T = TypeVar("T")


class SyncRedisRunner(RedisRunnerBase):
    def __init__(self, settings: RedisSettings) -> None:
        self._redis = require_module("redis", "Redis", "redis")
        super().__init__(settings, require_module("redis.exceptions", "Redis", "redis"))
        self._client: Any = None
        self._pool: Any = None
        """The client's pool when commands go straight to its connections (``direct_pool``)."""
        self._pool_args: tuple[str, ...] = ()
        """What ``get_connection`` takes from this redis-py version (``get_connection_args``)."""
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The redis-py client, made at first use."""
        self._check_open()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = self.settings.client
                    if client is None:
                        client = make_client(self._redis, self.settings, asynchronous=False)
                    self._first_look(client)
                    self._pool = direct_pool(client, self._redis.Redis)
                    self._pool_args = get_connection_args(self._pool)
                    self._client = client
        return self._client

    def _first_look(self, client: Any) -> None:
        # INFO may be disabled, or the server down: the operation will say so
        with contextlib.suppress(self.errors.RedisError):
            self._inspect(client.info("memory"))

    def run(self, op: Op[T]) -> T:
        execute = self._execute
        try:
            command = next(op)
            while True:
                if type(command) is Script:
                    try:
                        reply = execute(command.evalsha())
                    except ScriptMissing:
                        reply = execute(command.eval())
                else:
                    reply = execute(request(command))
                command = op.send(reply)
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            op.close()

    def _execute(self, request: Request) -> Any:
        try:
            client = self.client  # a cluster client connects here: it can be down
            if type(request) is tuple:
                pool = self._pool
                if pool is None:
                    return client.execute_command(*request)
                packed = pack(request)
                connection = pool.get_connection(*self._pool_args)
                try:
                    connection.send_packed_command((packed,))
                    reply = connection.read_response()
                finally:
                    pool.release(connection)
                callback = client.response_callbacks.get(request[0])
                return reply if callback is None else callback(reply)
            pipe = client.pipeline(transaction=not self._is_cluster_client(client))
            for args in request:
                pipe.execute_command(*args)
            return pipe.execute()
        except self.driver_errors as error:
            raise self._translate(error) from error

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client, self._pool = self._client, None, None
        if client is not None and self.owns_client:
            for close in closing_calls(client, asynchronous=False):
                close()
