"""How the redis-py clients of both runners are built and closed (``redis`` and
``redis.asyncio`` mirror each other: one function builds either). Apart from
``runner``: none of it runs operations, and tests build admin clients with it too."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import queue
import threading
import time
from typing import Any

from authstore.adapters.common.sockets import socket_readable
from authstore.adapters.redis.settings import RedisSettings
from authstore.contracts.errors import ConfigurationError

__all__ = ["closing_calls", "drop_connections", "first_live", "major_version", "make_client"]


def major_version() -> int:
    """redis-py's major version (0 when unknown)."""
    version = str(getattr(importlib.import_module("redis"), "__version__", "0"))
    first = version.split(".", 1)[0]
    return int(first) if first.isdigit() else 0


def connection_options(settings: RedisSettings, *, asynchronous: bool) -> dict[str, Any]:
    """What every connection to a Redis node takes (credentials, timeouts, no driver
    retries, the client name, TLS): the clients ``make_client`` builds and the probes
    that find a live cluster node."""
    retry = importlib.import_module("redis.asyncio.retry" if asynchronous else "redis.retry")
    no_backoff = importlib.import_module("redis.backoff").NoBackoff
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": retry.Retry(no_backoff(), 0),
        "client_name": settings.client_name,
    }
    if settings.tls and settings.topology != "single":
        options.update(ssl=True, **dict(settings.ssl))
    return options


def make_client(
    module: Any, settings: RedisSettings, *, asynchronous: bool, live: tuple[str, int] | None = None
) -> Any:
    """A client for the URL's topology; ``module`` is ``redis`` or ``redis.asyncio``.

    Commands are never retried by the driver: a rate-limit hit or an increment sent
    twice after a timeout would count twice. A cluster client still follows MOVED.
    ``pool_size`` caps the connections of every pool: one server's, a Sentinel master's,
    each cluster node's (the runners wait for a free one within ``timeout``). ``live``:
    a cluster node that just answered, asked first (``cluster_class``). Async
    connections replace themselves when stale (``fresh_connection_class``).
    """
    options = connection_options(settings, asynchronous=asynchronous)
    tls = dict(settings.ssl)
    if settings.topology == "cluster":
        if major_version() < 6:
            # before 6, a cluster client retried a command after a timeout or a dropped
            # connection on its own (3 times), whatever ``retry`` said: an increment
            # sent 4 times would count 4 times
            options["cluster_error_retry_attempts"] = 0
        hosts = [live] if live is not None else list(settings.hosts)
        client = cluster_class(module.cluster)(
            startup_nodes=[module.cluster.ClusterNode(host, port) for host, port in hosts],
            max_connections=settings.pool_size,
            live=live,
            **options,
        )
        if asynchronous:  # the nodes it learns take their connection class from here
            kwargs = client.nodes_manager.connection_kwargs
            kwargs["connection_class"] = fresh_connection_class(kwargs["connection_class"])
        return client
    if asynchronous:
        # The async runner bounds each operation as a whole (``Deadlines``), and a
        # cancelled read drops its connection; a socket timeout on top would cost a task
        # (``wait_for``) per write and a second timer per read.
        options["socket_timeout"] = None
    if settings.topology == "sentinel":
        sentinel_options = {
            "password": settings.sentinel_password,
            "socket_timeout": settings.timeout,
            "socket_connect_timeout": settings.connect_timeout,
            "client_name": settings.client_name,
            # each new master connection asks a sentinel where the master is: as many
            # at once as operations in flight (redis-py's own cap, 100, failed them)
            "max_connections": settings.pool_size,
            **({"ssl": True, **tls} if settings.tls else {}),
        }
        sentinel = module.sentinel.Sentinel(
            list(settings.hosts), sentinel_kwargs=sentinel_options, **options
        )
        master: dict[str, Any] = {"db": settings.db, "max_connections": settings.pool_size}
        if asynchronous:
            managed = (
                "SentinelManagedSSLConnection" if settings.tls else "SentinelManagedConnection"
            )
            master["connection_class"] = fresh_connection_class(getattr(module.sentinel, managed))
        return sentinel.master_for(settings.service, **master)
    options["db"] = settings.db
    if settings.unix_socket is not None:
        options.update(
            connection_class=module.UnixDomainSocketConnection, path=settings.unix_socket
        )
    else:
        (host, port), *more = settings.hosts
        if more:
            raise ConfigurationError(
                "a redis:// URL names one server; use redis+cluster:// or redis+sentinel://"
            )
        options.update(host=host, port=port)
        if settings.tls:
            options.update(connection_class=module.SSLConnection, **tls)
    size = settings.pool_size
    if asynchronous:
        options["connection_class"] = fresh_connection_class(
            options.get("connection_class", module.Connection)
        )
        # The async runner bounds its connections with a semaphore: redis.asyncio's
        # blocking pool takes a condition and a timer per command (tens of microseconds).
        pool = module.ConnectionPool(max_connections=size, **options)
    else:
        pool = module.BlockingConnectionPool(
            max_connections=size, timeout=settings.timeout, **options
        )
    # from_pool: the client owns its pool, so closing the client closes its connections
    return module.Redis.from_pool(pool)


@functools.cache
def cluster_class(cluster: Any) -> Any:
    """``RedisCluster`` of ``redis.cluster`` or ``redis.asyncio.cluster``, made to read
    its command table from a node known to answer.

    redis-py reads the table (COMMAND) once, from its default node: the master of slot 0,
    whichever that is. When that one master is frozen or down, no new client could start,
    even for keys on healthy masters. Given ``live=(host, port)``, a node that just
    answered, the table comes from that node instead (sync: ``command()``, which the
    constructor's commands parser calls; async: the parser's ``initialize``).
    """
    base = cluster.RedisCluster

    def __init__(self: Any, *args: Any, live: tuple[str, int] | None = None, **kwargs: Any) -> None:
        self._authstore_live = live
        base.__init__(self, *args, **kwargs)
        parser_initialize = getattr(self.commands_parser, "initialize", None)
        if live is not None and inspect.iscoroutinefunction(parser_initialize):

            async def from_live(node: Any = None) -> None:
                await parser_initialize(self.get_node(host=live[0], port=live[1]) or node)

            self.commands_parser.initialize = from_live

    def command(self: Any, **kwargs: Any) -> Any:
        live = self._authstore_live
        node = None if live is None else self.get_node(host=live[0], port=live[1])
        if node is None:
            return base.command(self, **kwargs)
        return self.execute_command("COMMAND", target_nodes=node, **kwargs)

    members: dict[str, Any] = {"__init__": __init__}
    if not cluster.__name__.startswith("redis.asyncio"):
        members["command"] = command
    return type("AuthstoreRedisCluster", (base,), members)


@functools.cache
def fresh_connection_class(base: Any) -> Any:
    """An async connection class that replaces a stale connection with a new one before
    it sends a command, so no command is ever sent twice. Without it, after a server
    restart each pooled connection failed its next command before the pool dropped it.

    Stale: the socket is closing or has something to read (EOF, a reset, bytes no
    command asked for), seen with a zero-timeout poll, since the event loop may not have
    run since the server went away. Only a connection with no reply due is checked: its
    handshake sends several commands before it reads their replies. ``_authstore_due``
    counts sends minus replies read, never below zero (a pipeline is one send and
    several replies); a disconnect resets it.
    """

    async def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        if writer is not None and self._authstore_due <= 0:
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if transport.is_closing() or (sock is not None and socket_readable(sock)):
                await self.disconnect()
        self._authstore_due += 1
        return await base.send_packed_command(self, *args, **kwargs)

    async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await base.read_response(self, *args, **kwargs)
        finally:  # a read that fails has disconnected (zero) before it gets here
            self._authstore_due = max(0, self._authstore_due - 1)

    async def disconnect(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._authstore_due = 0
        return await base.disconnect(self, *args, **kwargs)

    members = {
        "_authstore_due": 0,
        "send_packed_command": send_packed_command,
        "read_response": read_response,
        "disconnect": disconnect,
    }
    return type(f"Fresh{base.__name__}", (base,), members)


def closing_calls(client: Any, *, asynchronous: bool) -> list[Any]:
    """What closes a client authstore made, in order: the client, then its pool (a client
    given its pool leaves the pool's connections open when closed), then a Sentinel
    master's sentinel clients. Each call returns None (sync) or an awaitable (async)."""
    calls = [client.aclose if asynchronous else client.close]
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        calls.append(pool.disconnect)
        manager = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            calls.append(sentinel.aclose if asynchronous else sentinel.close)
    return calls


def drop_connections(client: Any) -> None:
    """Close an async client's sockets without its event loop (closed, or not running):
    what its own ``aclose`` would do, which that loop can no longer run. Reaches into
    redis-py's pools and asyncio's transports; only for clients left behind by a store
    that moved to another loop, or that failed to start."""
    pool = getattr(client, "connection_pool", None)
    pools = [pool] if pool is not None else []
    manager = getattr(pool, "sentinel_manager", None)
    pools += [sentinel.connection_pool for sentinel in getattr(manager, "sentinels", ())]
    connections: list[Any] = []
    for each in pools:
        connections += getattr(each, "_available_connections", [])
        connections += getattr(each, "_in_use_connections", [])
    for node in getattr(getattr(client, "nodes_manager", None), "nodes_cache", {}).values():
        connections += getattr(node, "_connections", [])
    for connection in connections:
        writer = getattr(connection, "_writer", None)
        if writer is None:
            continue
        transport = writer.transport
        with contextlib.suppress(RuntimeError):  # a closed loop cannot schedule the rest
            transport.abort()
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            transport._sock = None
        connection._reader = connection._writer = None


def first_live(settings: RedisSettings) -> tuple[str, int] | None:
    """The first cluster startup node to answer PING, all asked at once (one thread
    each), within ``timeout``; None when none does (the client then reports why). A
    client asks them one after the other, each one that does not answer costing a
    whole ``timeout``; ``make_client`` starts from the node this finds."""
    redis = importlib.import_module("redis")
    hosts = list(settings.hosts)
    if len(hosts) < 2:
        return hosts[0] if hosts else None
    options = connection_options(settings, asynchronous=False)
    answers: queue.SimpleQueue[tuple[str, int] | None] = queue.SimpleQueue()

    def ping(host: str, port: int) -> None:
        try:
            with redis.Redis(host=host, port=port, **options) as client:
                client.ping()
            answers.put((host, port))
        except Exception:  # any failure: not this one
            answers.put(None)

    for host, port in hosts:
        threading.Thread(target=ping, args=(host, port), daemon=True).start()
    deadline = time.monotonic() + settings.timeout
    for _ in hosts:
        try:
            answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if answer is not None:
            return answer
    return None
