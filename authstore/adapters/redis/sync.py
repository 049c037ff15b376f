"""The sync Redis runner: redis-py, thread-safe (a blocking pool of connections).

One server's pool waits for a free connection itself (``BlockingConnectionPool``).
Sentinel and Cluster pools do not (above their size they fail at once with "Too many
connections"), so on those topologies at most ``pool_size`` operations are in flight
and the others wait for a slot, within ``timeout``.

A cluster client does I/O of its own besides the command: at start it asks startup
nodes for the slot map one after the other, and after an error it asks again; each
node that does not answer costs a whole ``timeout``. So a cluster store finds a live
startup node first, asking all of them at once (``first_live``), and before its first
success and after an availability error, until an operation succeeds again, runs its
operations on a worker thread and waits for them only until their deadline
(``_bounded``). (A Sentinel client asks its sentinels for the master one after the
other too; Sentinel stores are not bounded this way yet.)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op, drive
from authstore.adapters.redis.client import closing_calls, first_live, make_client
from authstore.adapters.redis.runner import (
    RedisRunner,
    Request,
    Waited,
    is_cluster_client,
    pack,
)
from authstore.adapters.redis.settings import RedisSettings
from authstore.contracts.errors import BackendUnavailableError

__all__ = ["SyncRedisRunner"]

T = TypeVar("T")


class SyncRedisRunner(RedisRunner):
    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(settings, "redis")
        self._lock = threading.Lock()
        self._slots = None
        if settings.topology != "single" and self.owns_client:
            self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._suspect = self.cluster and self._slots is not None
        """A cluster store before its first success or after an availability error: its
        operations run bounded (``_bounded``)."""
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The redis-py client, made at first use."""
        self._check_open()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client, live = self.settings.client, None
                    if client is None:
                        live = first_live(self.settings) if self.cluster else None
                        client = make_client(
                            self._redis, self.settings, asynchronous=False, live=live
                        )
                    # INFO may be disabled, or the server down: the operation will say so.
                    # On a cluster, only the node that answered (another may be frozen).
                    target = {} if live is None else {"target_nodes": client.get_node(*live)}
                    with contextlib.suppress(*self.driver_errors):
                        self._inspect(client.info("memory", **target))
                    self._adopt(client)
        return self._client

    def run(self, op: Op[T]) -> T:
        slots = self._slots
        if slots is None:
            return self._drive(op, self._execute)
        if not slots.acquire(timeout=self.settings.timeout):
            raise BackendUnavailableError(
                f"redis ({self.settings.display}): no connection free within "
                f"{self.settings.timeout:g} s (pool_size={self.settings.pool_size})"
            )
        handed_over = False
        try:
            if not self._suspect:
                return self._drive(op, self._execute)
            handed_over = True
            return self._bounded(op, slots)
        except BackendUnavailableError:
            self._suspect = self.cluster
            raise
        finally:
            if not handed_over:
                slots.release()

    def _drive(self, op: Op[T], execute: Callable[[Request], Any]) -> T:
        return drive(self.program(op), execute)

    def _bounded(self, op: Op[T], slots: threading.BoundedSemaphore) -> T:
        """Run ``op`` on a worker thread, which gives its slot back when done; wait for it
        until the deadline. Past it, the caller gets BackendUnavailableError and the op
        sends no further command (one already sent may still have been applied, as after
        any timeout)."""
        with self._workers_lock:
            self._check_open()
            if self._workers is None:
                self._workers = concurrent.futures.ThreadPoolExecutor(
                    self.settings.pool_size, thread_name_prefix="authstore-redis"
                )
            workers = self._workers
        late = threading.Event()

        def execute_in_time(request: Request) -> Any:
            if late.is_set():  # the caller has given up: what is not sent yet never is
                raise self._late()
            return self._execute(request)

        def work() -> T:
            try:
                value = self._drive(op, execute_in_time)
                self._suspect = False
                return value
            finally:
                slots.release()

        try:
            future = workers.submit(work)
        except RuntimeError:  # closed meanwhile
            slots.release()
            self._check_open()
            raise
        try:
            return future.result(timeout=self.settings.timeout)
        except concurrent.futures.TimeoutError:
            late.set()
            if future.cancel():  # never started: nothing was sent
                slots.release()
            raise self._late() from None

    def _execute(self, request: Request) -> Any:
        client = self.client  # a cluster client connects here: it can be down
        if type(request) is Waited:
            pipe, node = self.waited_pipeline(client, request)
            return self.waited_replies(client, request, node, pipe.execute(raise_on_error=False))
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
        pipe = client.pipeline(transaction=not is_cluster_client(client))
        for args in request:
            pipe.execute_command(*args)
        return pipe.execute()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client, self._pool = self._client, None, None
        with self._workers_lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)
        if client is not None and self.owns_client:
            for close in closing_calls(client, asynchronous=False):
                close()
