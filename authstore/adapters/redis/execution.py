"""How both Redis runners execute an operation, and what they share.

A runner drives an operation itself: ``request`` turns a command into what the
driver is sent, one command's arguments or a list of them for a pipeline. A script
goes as EVALSHA; when the server has not seen it (NOSCRIPT: a restart, a failover,
SCRIPT FLUSH) the same call goes again as EVAL, which also loads it. The sync and
async runners differ only in calling the driver with or without ``await``; the clients are built by one
function from the ``redis`` or the ``redis.asyncio`` module, whose APIs mirror
each other.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import select
from typing import Any

from authstore.adapters.common.refusals import AUTHENTICATION, TLS, refused, tls_failure
from authstore.adapters.redis.commands import Batch, Call
from authstore.adapters.redis.settings import RedisSettings
from authstore.contracts.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    StoreClosedError,
)

__all__ = [
    "Request",
    "RedisRunnerBase",
    "ScriptMissing",
    "closing_calls",
    "cluster_class",
    "connection_options",
    "direct_pool",
    "fresh_connection_class",
    "get_connection_args",
    "drop_connections",
    "major_version",
    "make_client",
    "pack",
    "request",
]


Request = tuple[Any, ...] | list[tuple[Any, ...]]
"""One command's arguments, or a pipeline's commands."""

_UNAVAILABLE_REPLIES = ("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS")
"""Error replies that mean "not now" (a failover, a restart) rather than "wrong"."""


class ScriptMissing(BackendError):
    """NOSCRIPT: the server does not have the script yet; it is sent with EVAL."""


def request(command: Call | Batch) -> Request:
    """What the driver is sent for a command that is not a script."""
    if type(command) is Call:
        return command.args
    if type(command) is Batch:
        return [call.args for call in command.calls]
    raise TypeError(f"a Redis operation yielded {command!r}")


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (RESP), as redis-py's encoder writes it: text as
    UTF-8, numbers as their repr; one buffer, sent with one write."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            data = arg.encode()
        elif kind is bytes:
            data = arg
        elif kind is int or kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, str):
            data = str(arg).encode()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(float(arg) if isinstance(arg, float) else int(arg)).encode()
        else:
            raise TypeError(f"a Redis command argument is {kind.__name__}: {arg!r}")
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def direct_pool(client: Any, redis_class: Any) -> Any:
    """The connection pool a runner may drive itself, or None.

    For a plain client (one server, or a Sentinel's master) a runner takes a connection
    from the client's own pool, writes the packed command, reads the reply and gives the
    connection back: what ``execute_command`` does, without its per-call retry closure,
    metrics hooks and argument re-encoding (tens of microseconds). The connection still
    applies its socket timeout and drops itself on any error mid-command, the pool still
    bounds and checks connections, and replies go through the client's own response
    callbacks. A cluster client, a single-connection client or one with a client-side
    cache keeps ``execute_command``.
    """
    if not isinstance(client, redis_class) or getattr(client, "connection", None) is not None:
        return None
    pool = client.connection_pool
    if getattr(pool, "cache", None) is not None:
        return None
    return pool


def get_connection_args(pool: Any) -> tuple[str, ...]:
    """What a runner passes to ``pool.get_connection()``, found once per pool.

    redis-py before 5.3 requires a command name (its pools ignore it); 5.3 made it
    optional and later releases warn when one is passed. Nothing otherwise.
    """
    if pool is None:
        return ()
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return ("",)
    return ()


def closing_calls(client: Any, *, asynchronous: bool) -> list[Any]:
    """What closes a client authstore made, in order: the client, then its pool (a client
    given its pool, as ``make_client`` makes them, leaves the pool's connections open
    when closed), then a Sentinel master's sentinel clients. Each call returns None
    (sync) or an awaitable (async)."""
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
    that moved to another loop."""
    pool = getattr(client, "connection_pool", None)
    pools = [pool] if pool is not None else []
    manager = getattr(pool, "sentinel_manager", None)
    pools += [sentinel.connection_pool for sentinel in getattr(manager, "sentinels", ())]
    connections: list[Any] = []
    for each in pools:
        connections += getattr(each, "_available_connections", [])
        connections += getattr(each, "_in_use_connections", [])
    nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", {})
    for node in nodes.values():
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


def connection_options(settings: RedisSettings, *, asynchronous: bool) -> dict[str, Any]:
    """What every connection authstore opens to a Redis node takes (credentials, timeouts,
    no driver retries, the client name, TLS): the clients ``make_client`` builds and the
    probes that find a live cluster node."""
    retry_class = importlib.import_module("redis.asyncio.retry" if asynchronous else "redis.retry")
    no_backoff = importlib.import_module("redis.backoff").NoBackoff
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": retry_class.Retry(no_backoff(), 0),
        "client_name": settings.client_name,
    }
    if settings.tls and settings.topology != "single":
        options.update(ssl=True, **dict(settings.ssl))
    return options


def cluster_class(cluster: Any) -> Any:
    """``RedisCluster`` of the ``redis.cluster`` or ``redis.asyncio.cluster`` module, made
    to read its command table from a node known to answer.

    redis-py reads the table (COMMAND) once, from its default node: the master of slot 0,
    whichever that is. When that one master is frozen or down, no new client could start,
    even for keys on healthy masters. Given ``live=(host, port)``, a node that just
    answered, the table comes from that node instead (sync: ``command()``, which the
    constructor's commands parser calls; async: the parser's ``initialize``).
    """
    base = cluster.RedisCluster
    found = _CLUSTER_CLASSES.get(base)
    if found is not None:
        return found

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
    made = type("AuthstoreRedisCluster", (base,), members)
    _CLUSTER_CLASSES[base] = made
    return made


_CLUSTER_CLASSES: dict[Any, Any] = {}


def stale(writer: Any) -> bool:
    """Whether an idle async connection's socket has something to read: the server
    closed it (a restart: EOF, or a reset) or left bytes no command asked for. Either
    way it cannot carry the next command. One ``select`` with a zero timeout: the event
    loop may not have run since the server went away, so the connection's own state
    (what redis-py checks) does not show it yet."""
    transport = writer.transport
    if transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def fresh_connection_class(base: Any) -> Any:
    """An async connection class that replaces a stale connection (``stale``) with a new
    one before it sends a command: before anything is sent, so no command is ever sent
    twice. Without it, after a server restart each pooled connection failed its next
    command (BackendUnavailableError) before the pool dropped it.

    Only a connection with no reply due is checked: its handshake sends several commands
    before it reads their replies (a reply already there is no sign of a stale socket).
    ``_authstore_due`` counts sends minus replies read, never below zero (a pipeline is
    one send and several replies); a disconnect resets it.
    """
    found = _FRESH_CLASSES.get(base)
    if found is not None:
        return found

    async def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        if writer is not None and self._authstore_due <= 0 and stale(writer):
            await self.disconnect()
        self._authstore_due += 1
        return await base.send_packed_command(self, *args, **kwargs)

    async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await base.read_response(self, *args, **kwargs)
        finally:
            # never below zero: a pipeline reads more replies than it sends commands,
            # and a read that fails has disconnected (zero) before it gets here
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
    made = type(f"Fresh{base.__name__}", (base,), members)
    _FRESH_CLASSES[base] = made
    return made


_FRESH_CLASSES: dict[Any, Any] = {}


def major_version() -> int:
    """redis-py's major version (0 when unknown)."""
    version = str(getattr(importlib.import_module("redis"), "__version__", "0"))
    first = version.split(".", 1)[0]
    return int(first) if first.isdigit() else 0


def make_client(
    module: Any,
    settings: RedisSettings,
    *,
    asynchronous: bool,
    live: tuple[str, int] | None = None,
) -> Any:
    """A client for the URL's topology; ``module`` is ``redis`` or ``redis.asyncio``.

    Commands are never retried by the driver: a rate-limit hit or an increment sent
    twice after a timeout would count twice. A cluster client still follows MOVED.
    ``pool_size`` caps the connections of every pool: one server's, a Sentinel master's,
    each cluster node's (the runners wait for a free one within ``timeout``). ``live``:
    a cluster node that just answered, asked first (``cluster_class``).
    """
    common = connection_options(settings, asynchronous=asynchronous)
    if asynchronous and settings.topology != "cluster":
        # The async runner bounds each operation as a whole (``asyncio.timeout``), and a
        # cancelled read drops its connection; a socket timeout on top would cost a task
        # (``wait_for``) per write and a second timer per read.
        common["socket_timeout"] = None
    tls = dict(settings.ssl)
    if settings.topology == "cluster":
        cluster = module.cluster
        hosts = [live] if live is not None else list(settings.hosts)
        nodes = [cluster.ClusterNode(host, port) for host, port in hosts]
        if major_version() < 6:
            # before 6, a cluster client retried a command after a timeout or a dropped
            # connection on its own (3 times), whatever ``retry`` said: an increment
            # sent 4 times would count 4 times
            common["cluster_error_retry_attempts"] = 0
        client = cluster_class(cluster)(
            startup_nodes=nodes, max_connections=settings.pool_size, live=live, **common
        )
        if asynchronous:  # the nodes it learns take their connection class from here
            kwargs = client.nodes_manager.connection_kwargs
            kwargs["connection_class"] = fresh_connection_class(kwargs["connection_class"])
        return client
    if settings.topology == "sentinel":
        sentinel_kwargs = {
            "password": settings.sentinel_password,
            "socket_timeout": settings.timeout,
            "socket_connect_timeout": settings.connect_timeout,
            "client_name": settings.client_name,
            # each new master connection asks a sentinel where the master is: as many
            # at once as operations in flight (redis-py's own cap, 100, failed them)
            "max_connections": settings.pool_size,
        }
        if settings.tls:
            sentinel_kwargs.update(ssl=True, **tls)
        sentinel = module.sentinel.Sentinel(
            list(settings.hosts), sentinel_kwargs=sentinel_kwargs, **common
        )
        sentinel_classes: dict[str, Any] = {}
        if asynchronous:
            managed = module.sentinel.SentinelManagedConnection
            if settings.tls:
                managed = module.sentinel.SentinelManagedSSLConnection
            sentinel_classes["connection_class"] = fresh_connection_class(managed)
        return sentinel.master_for(
            settings.service,
            db=settings.db,
            max_connections=settings.pool_size,
            **sentinel_classes,
        )
    connection: dict[str, Any] = {**common, "db": settings.db}
    if settings.unix_socket is not None:
        connection.update(connection_class=module.UnixDomainSocketConnection)
        connection.update(path=settings.unix_socket)
    else:
        (host, port), *more = settings.hosts
        if more:
            raise ConfigurationError(
                "a redis:// URL names one server; use redis+cluster:// or redis+sentinel://"
            )
        connection.update(host=host, port=port)
        if settings.tls:
            connection.update(connection_class=module.SSLConnection, **tls)
    if asynchronous:
        base = connection.get("connection_class", module.Connection)
        connection["connection_class"] = fresh_connection_class(base)
        # The async runner bounds its connections with a semaphore: redis.asyncio's
        # blocking pool takes a condition and a timer per command (tens of microseconds).
        pool = module.ConnectionPool(max_connections=settings.pool_size, **connection)
    else:
        pool = module.BlockingConnectionPool(
            max_connections=settings.pool_size, timeout=settings.timeout, **connection
        )
    # from_pool: the client owns its pool, so closing the client closes its connections
    return module.Redis.from_pool(pool)


def maxmemory_policies(info: Any) -> set[str]:
    """The maxmemory-policy in an INFO memory answer (a cluster answers per node)."""
    if not isinstance(info, dict):
        return set()
    if "maxmemory_policy" in info:
        return {str(info["maxmemory_policy"])}
    return {
        str(i["maxmemory_policy"])
        for i in info.values()
        if isinstance(i, dict) and "maxmemory_policy" in i
    }


def driver_errors(errors: Any) -> tuple[type[Exception], ...]:
    """What the runners catch and translate: RedisError, and every other exception class
    of ``redis.exceptions`` that is not one (RedisClusterException: "cannot be connected";
    ChildDeadlockedError: a pool used across fork(); IncorrectPolicyType, ...)."""
    found = _DRIVER_ERRORS.get(errors)
    if found is None:
        modules = [errors]
        for extra in _OTHER_ERROR_MODULES:  # newer redis-py only
            with contextlib.suppress(ImportError):
                modules.append(importlib.import_module(extra))
        found = tuple(
            dict.fromkeys(
                kind
                for module in modules
                for kind in vars(module).values()
                if isinstance(kind, type)
                and issubclass(kind, Exception)
                and kind.__module__.startswith("redis")
                and (kind is errors.RedisError or not issubclass(kind, errors.RedisError))
            )
        )
        _DRIVER_ERRORS[errors] = found
    return found


_OTHER_ERROR_MODULES = ("redis.event", "redis.auth.err")
"""Where redis-py defines errors outside ``redis.exceptions`` that are no RedisError: an
event listener's failure, token credentials (a credential provider raises them)."""


_DRIVER_ERRORS: dict[Any, tuple[type[Exception], ...]] = {}


class RedisRunnerBase:
    """What both runners share: settings, the driver's errors and how they become ours."""

    def __init__(self, settings: RedisSettings, errors: Any) -> None:
        self.settings = settings
        self.errors = errors
        """``redis.exceptions``: the driver's errors (shared by its sync and async APIs)."""
        self.driver_errors = driver_errors(errors)
        self.cluster = settings.topology == "cluster"
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings.display} db={self.settings.db}>"

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this Redis store is closed")

    def _inspect(self, info: Any) -> None:
        """At first use: warn when the server may evict security state under memory
        pressure (an evicted blacklist entry or limiter is a security hole)."""
        from authstore.adapters.redis.backend import warn_if_evicting

        for policy in maxmemory_policies(info):
            warn_if_evicting(policy, self.settings.display)

    def _is_cluster_client(self, client: Any) -> bool:
        return any(kind.__name__ == "RedisCluster" for kind in type(client).__mro__)

    def _translate(self, error: BaseException) -> BackendError:
        errors = self.errors
        if isinstance(error, errors.NoScriptError):
            return ScriptMissing("NOSCRIPT")
        text = str(error).strip() or type(error).__name__
        for secret in self.settings.secrets:
            text = text.replace(secret, "***")
        message = f"redis ({self.settings.display}): {text}"
        unavailable = (
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ReadOnlyError,
            errors.ClusterError,
            errors.MasterDownError,
            errors.TryAgainError,
            errors.SlotNotCoveredError,
        )
        if isinstance(error, errors.AuthenticationError | errors.NoPermissionError):
            return refused(AUTHENTICATION, "redis", self.settings.display, text)
        if isinstance(error, errors.ConnectionError) and tls_failure(error):
            return refused(TLS, "redis", self.settings.display, text)
        unreachable_cluster = isinstance(error, errors.RedisClusterException) and (
            "cannot be connected" in text
        )
        if (
            isinstance(error, (*unavailable, TimeoutError, ConnectionError))
            or text.startswith(_UNAVAILABLE_REPLIES)
            or unreachable_cluster
        ):
            return BackendUnavailableError(message)
        return BackendError(message)
