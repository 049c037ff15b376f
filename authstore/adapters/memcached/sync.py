"""The sync memcached runner: pymemcache, a PooledClient per server (thread-safe).

Several servers are a HashClient's per-server clients, but keys are routed by
``runner.Ring``, never by HashClient's failover, which would answer a default value
for a failing server or drop it from the ring (a missing revocation, a rate limit
starting over): here a server that is down makes its keys' operations raise.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.memcached.runner import Call, MemcachedRunnerBase, calls
from authstore.adapters.memcached.settings import MemcachedSettings, node_name
from authstore.contracts.errors import BackendError, ConfigurationError
from authstore.registry import require_module

__all__ = ["SyncMemcachedRunner"]

T = TypeVar("T")


class SyncMemcachedRunner(MemcachedRunnerBase[Any]):
    def __init__(self, settings: MemcachedSettings) -> None:
        super().__init__(settings)
        pymemcache = require_module("pymemcache", "memcached", "memcached")
        base = require_module("pymemcache.client.base", "memcached", "memcached")
        hashed = require_module("pymemcache.client.hash", "memcached", "memcached")
        self._unavailable: tuple[type[BaseException], ...] = (
            OSError,
            pymemcache.MemcacheUnexpectedCloseError,
        )
        self._driver_errors = (*self._unavailable, pymemcache.MemcacheError)
        self._locks: dict[str, threading.Lock] = {}
        client = settings.client
        if client is None:
            options: dict[str, Any] = {
                "connect_timeout": settings.connect_timeout,
                "timeout": settings.timeout,
                "no_delay": True,
                "default_noreply": False,
            }
            if len(settings.servers) == 1:
                self._owned: Any = base.PooledClient(settings.servers[0], **options)
                self._use({node_name(*settings.servers[0]): self._owned})
            else:
                self._owned = hashed.HashClient(list(settings.servers), use_pooling=True, **options)
                self._use(dict(self._owned.clients))
        elif isinstance(client, hashed.HashClient):
            self._owned = None
            self._use(dict(client.clients))
        elif isinstance(client, base.PooledClient | base.Client):
            self._owned = None
            self._use({_server_name(client.server): client})
        else:
            raise ConfigurationError(
                "client= for a sync memcached store is a pymemcache Client, PooledClient or "
                f"HashClient, not {type(client).__name__}"
            )
        for name, server in self._clients.items():
            if isinstance(server, base.Client):  # not thread-safe: one call at a time
                self._locks[name] = threading.Lock()

    def run(self, op: Op[T]) -> T:
        program = calls(op, self._require_ring())
        try:
            call = next(program)  # the argument checks run here, before any I/O
            self._check_open()
            while True:
                call = program.send(self._call(call))
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            program.close()

    def _require_ring(self) -> Any:
        assert self._ring is not None
        return self._ring

    def _call(self, call: Call) -> Any:
        client = self._clients[call.server]
        lock = self._locks.get(call.server)
        try:
            with lock or contextlib.nullcontext():
                return getattr(self, f"_{call.method}")(client, call, *call.args)
        except self._driver_errors as error:
            unavailable = isinstance(error, self._unavailable)
            raise self._error(error, unavailable=unavailable) from error

    # One method per Call.method: the pymemcache call and nothing else.

    def _get(self, client: Any, call: Call, keys: list[str]) -> dict[str, tuple[Any, None]]:
        return {key: (value, None) for key, value in client.get_many(keys).items()}

    def _gets(self, client: Any, call: Call, keys: list[str]) -> dict[str, tuple[Any, Any]]:
        return dict(client.gets_many(keys))

    def _set(self, client: Any, call: Call, key: str, value: bytes, exp: int, _: object) -> bool:
        self._stored(client.set(key, value, expire=exp, noreply=False), call)
        return True

    def _add(self, client: Any, call: Call, key: str, value: bytes, exp: int, _: object) -> bool:
        return client.add(key, value, expire=exp, noreply=False) is True

    def _cas(
        self, client: Any, call: Call, key: str, value: bytes, exp: int, token: object
    ) -> bool:
        return client.cas(key, value, token, expire=exp, noreply=False) is True

    def _set_many(self, client: Any, call: Call, items: list[tuple[str, bytes]], exp: int) -> None:
        if client.set_many(dict(items), expire=exp, noreply=False):
            raise BackendError("memcached did not store every item of a batch")

    def _delete(self, client: Any, call: Call, key: str) -> bool:
        return client.delete(key, noreply=False) is True

    def _touch(self, client: Any, call: Call, key: str, exp: int) -> bool:
        return client.touch(key, expire=exp, noreply=False) is True

    def close(self) -> None:
        self._closed = True
        if self._owned is not None:
            with contextlib.suppress(*self._driver_errors):
                self._owned.close()


def _server_name(server: Any) -> str:
    if isinstance(server, tuple) and len(server) == 2:
        return node_name(str(server[0]), int(server[1]))
    return str(server)
