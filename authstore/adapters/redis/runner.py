"""What the sync and async Redis runners share: the program, requests, errors, warnings.

An operation yields ``Call``, ``Script`` and ``Batch`` (``commands``). Its program
(``RedisRunner.program``) turns each into a request, one command's arguments or a list
of them for a pipeline; a script goes as EVALSHA and, when the server has not seen it
(NOSCRIPT: a restart, a failover, SCRIPT FLUSH), again as EVAL, which also loads it.
``drive`` runs the program with the runner's ``execute`` (the one thing the two
runners write twice); the program translates a driver error once, by ``translate``,
before the op sees it.

A security write (``Durable``, yielded by an op marked ``security_write``) goes, with
``durability=replicated``, as a ``Waited`` request: the write and ``WAIT <replicas>
<ms>`` pipelined on one connection (one round trip; WAIT counts the replicas that have
that connection's writes, and cannot run inside a script or a MULTI). Fewer replicas
than asked: BackendUnavailableError, the write perhaps applied on the primary.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import warnings
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from authstore.adapters.common.ops import Durable, Op, translated
from authstore.adapters.common.refusals import AUTHENTICATION, TLS, refused, tls_failure
from authstore.adapters.redis.commands import Batch, Call, Script
from authstore.adapters.redis.settings import RedisSettings
from authstore.contracts.errors import BackendError, BackendUnavailableError, StoreClosedError
from authstore.registry import require_module

__all__ = [
    "RedisRunner",
    "Request",
    "Waited",
    "eviction_warning",
    "is_cluster_client",
    "warn_if_evicting",
]

T = TypeVar("T")
log = logging.getLogger("authstore.redis")


class Waited(NamedTuple):
    """A security write and the WAIT behind it, pipelined on one connection (outside
    any MULTI); the reply is the list of both replies, an error reply as its exception.
    ``key`` names the node that takes the write (Redis Cluster: WAIT goes there too)."""

    write: tuple[Any, ...]
    wait: tuple[Any, ...]
    key: Any


Request = tuple[Any, ...] | list[tuple[Any, ...]] | Waited
"""One command's arguments, a pipeline's commands, or a write and its WAIT."""

_UNAVAILABLE_REPLIES = ("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS")
"""Error replies that mean "not now" (a failover, a restart) rather than "wrong"."""

EVICTING_POLICIES = frozenset(
    f"{keys}-{how}" for keys in ("allkeys", "volatile") for how in ("lru", "lfu", "random")
) | {"volatile-ttl"}


def eviction_warning(policy: str | None) -> str | None:
    """What to tell an operator about the server's maxmemory-policy, or None when safe."""
    if policy is None or policy not in EVICTING_POLICIES:
        return None
    return (
        f"Redis maxmemory-policy is {policy}: under memory pressure the server may evict "
        "blacklist entries, rate limiters, sessions or TOTP state (a revoked token would "
        "be accepted again); set maxmemory-policy noeviction"
    )


def warn_if_evicting(policy: str | None, where: str) -> str | None:
    """Warn (warnings and the ``authstore.redis`` logger) when ``policy`` may evict."""
    warning = eviction_warning(policy)
    if warning is not None:
        warning = f"{where}: {warning}"
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
        log.warning(warning)
    return warning


def maxmemory_policies(info: Any) -> set[str]:
    """The maxmemory-policy in an INFO memory answer (a cluster answers per node)."""
    if not isinstance(info, dict):
        return set()
    if "maxmemory_policy" in info:
        return {str(info["maxmemory_policy"])}
    nodes = [node for node in info.values() if isinstance(node, dict)]
    return {str(node["maxmemory_policy"]) for node in nodes if "maxmemory_policy" in node}


def is_cluster_client(client: Any) -> bool:
    return any(kind.__name__ == "RedisCluster" for kind in type(client).__mro__)


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


@functools.cache
def driver_errors(errors: Any) -> tuple[type[Exception], ...]:
    """What the runners translate: RedisError, and every other exception class of
    ``redis.exceptions`` that is not one (RedisClusterException: "cannot be connected";
    ChildDeadlockedError: a pool used across fork(); ...), and those newer redis-py
    defines elsewhere (an event listener's failure, token credentials)."""
    modules = [errors]
    for extra in ("redis.event", "redis.auth.err"):  # newer redis-py only
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(extra))
    kinds = (kind for module in modules for kind in vars(module).values())
    return tuple(
        dict.fromkeys(
            kind
            for kind in kinds
            if isinstance(kind, type)
            and issubclass(kind, Exception)
            and kind.__module__.startswith("redis")
            and (kind is errors.RedisError or not issubclass(kind, errors.RedisError))
        )
    )


class RedisRunner:
    """Settings, the client and how commands go to it, the driver's errors and how they
    become ours. A subclass holds the client and writes ``execute`` and ``run``."""

    def __init__(self, settings: RedisSettings, module: str) -> None:
        self.settings = settings
        self._redis = require_module(module, "Redis", "redis")
        self.errors = require_module("redis.exceptions", "Redis", "redis")
        """``redis.exceptions``: the driver's errors (shared by its sync and async APIs)."""
        self.driver_errors = driver_errors(self.errors)
        self.cluster = settings.topology == "cluster"
        self._closed = False
        self._client: Any = None
        self._pool: Any = None
        """The client's pool when commands go straight to its connections (``_adopt``)."""
        self._pool_args: tuple[str, ...] = ()
        """What ``get_connection`` takes: redis-py before 5.3 requires a command name
        (its pools ignore it); later releases warn when one is passed."""
        self._wait: tuple[str, int, int] | None = None
        """``durability=replicated``: the WAIT sent behind each security write."""
        if settings.replicas:
            milliseconds = max(1, int(settings.replica_timeout * 1000))  # WAIT n 0: forever
            self._wait = ("WAIT", settings.replicas, milliseconds)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings.display} db={self.settings.db}>"

    @property
    def owns_client(self) -> bool:
        return self.settings.client is None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this Redis store is closed")

    def _late(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"redis ({self.settings.display}): no answer within {self.settings.timeout:g} s"
        )

    def _inspect(self, info: Any) -> None:
        """At first use: warn when the server may evict security state under memory
        pressure (an evicted blacklist entry or limiter is a security hole)."""
        for policy in maxmemory_policies(info):
            warn_if_evicting(policy, self.settings.display)

    def _adopt(self, client: Any) -> None:
        """Use ``client``, straight through its pool when it is a plain client (one
        server, or a Sentinel's master): take a connection, write the packed command,
        read the reply, give the connection back. That is ``execute_command`` without
        its per-call retry closure, metrics hooks and argument re-encoding (tens of
        microseconds); the connection still applies its timeout and drops itself on an
        error mid-command, and replies still go through the client's callbacks. A
        cluster client, a single-connection client or one with a client-side cache
        keeps ``execute_command``."""
        pool = None
        if isinstance(client, self._redis.Redis) and getattr(client, "connection", None) is None:
            pool = client.connection_pool
            pool = None if getattr(pool, "cache", None) is not None else pool
        self._pool, self._pool_args = pool, ()
        if pool is not None:
            parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
            if parameter is not None and parameter.default is inspect.Parameter.empty:
                self._pool_args = ("",)
        self._client = client

    def program(self, op: Op[T]) -> Generator[Request, Any, T]:
        """``op`` as requests; a driver error goes back into ``op`` translated (the
        driver's as its cause), save the NOSCRIPT of an EVALSHA, answered by sending the
        script itself."""
        no_script, driver_errors = self.errors.NoScriptError, self.driver_errors
        wait = self._wait
        try:
            command = next(op)
            while True:
                kind = type(command)
                try:
                    if kind is Call:
                        reply = yield command.args
                    elif kind is Script:
                        try:
                            reply = yield command.evalsha()
                        except no_script:
                            reply = yield command.eval()
                    elif kind is Batch:
                        reply = yield [call.args for call in command.calls]
                    elif kind is Durable:  # only ops made durable_ops yield it: wait is set
                        assert wait is not None
                        reply = yield from self._replicated(command, wait)
                    else:
                        raise TypeError(f"a Redis operation yielded {command!r}")
                except GeneratorExit:
                    raise
                except driver_errors as error:
                    command = op.throw(translated(self.translate(error), error))
                except BaseException as error:
                    command = op.throw(error)
                else:
                    command = op.send(reply)
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            op.close()

    def _replicated(
        self, durable: Durable, wait: tuple[str, int, int]
    ) -> Generator[Waited, Any, Any]:
        """A security write followed by WAIT on its connection; its reply once ``wait``'s
        replicas have it (a script the server lacks goes again, as EVAL)."""
        command = durable.command
        key: Any
        if type(command) is Script:
            script, first, key = command, command.evalsha(), command.keys[0]
        elif type(command) is Call:
            script, first, key = None, command.args, command.args[1]
        else:  # a Batch's WAIT would land in its MULTI/EXEC
            raise TypeError(f"a security write yielded {command!r}: a Call or a Script only")
        reply, acked = yield Waited(first, wait, key)
        if script is not None and isinstance(reply, self.errors.NoScriptError):
            reply, acked = yield Waited(script.eval(), wait, key)
        if isinstance(reply, BaseException):
            raise reply  # the write itself failed: WAIT's answer says nothing
        _, replicas, milliseconds = wait
        where = f"redis ({self.settings.display})"
        maybe = "the write may still have happened on the primary and may be lost in a failover"
        if isinstance(acked, BaseException):
            text = self.translate(acked)
            raise BackendUnavailableError(f"{where}: WAIT failed ({text}); {maybe}") from acked
        if acked < replicas:
            raise BackendUnavailableError(
                f"{where}: {acked} of {replicas} replica(s) acknowledged the write within "
                f"{milliseconds} ms (durability=replicated); {maybe}"
            )
        return reply

    def waited_pipeline(self, client: Any, request: Waited) -> tuple[Any, Any]:
        """The pipeline that sends a ``Waited`` (``execute(raise_on_error=False)`` it), and
        on a cluster the node it goes to: on one server or a Sentinel's master, one
        connection outside MULTI; on a cluster, both commands to the node that holds the
        write's key (``target_nodes``: a keyless WAIT would go to every primary), which
        sends them on one connection."""
        write, wait, key = request
        if not is_cluster_client(client):
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*write)
            pipe.execute_command(*wait)
            return pipe, None
        node = client.get_node_from_key(key)
        pipe = client.pipeline()
        pipe.execute_command(*write, target_nodes=node)
        pipe.execute_command(*wait, target_nodes=node)
        return pipe, node

    def waited_replies(self, client: Any, request: Waited, node: Any, replies: Any) -> Any:
        """A ``Waited``'s replies, checked: on a cluster, a write redirected (MOVED, ASK:
        the key's slot moved) while its WAIT stayed on the old node would have counted
        another connection's writes."""
        if node is not None and client.get_node_from_key(request.key) != node:
            raise BackendUnavailableError(
                f"redis ({self.settings.display}): the key's slot moved during a security "
                "write (durability=replicated); the write may still have happened"
            )
        return replies

    def translate(self, error: BaseException) -> BackendError:
        """A driver error (one of ``driver_errors``) as authstore's, the password hidden."""
        errors = self.errors
        text = str(error).strip() or type(error).__name__
        for secret in self.settings.secrets:
            text = text.replace(secret, "***")
        if isinstance(error, errors.AuthenticationError | errors.NoPermissionError):
            return refused(AUTHENTICATION, "redis", self.settings.display, text)
        if isinstance(error, errors.ConnectionError) and tls_failure(error):
            return refused(TLS, "redis", self.settings.display, text)
        unavailable: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
        unavailable += (errors.ConnectionError, errors.TimeoutError, errors.ReadOnlyError)
        unavailable += (errors.ClusterError, errors.MasterDownError, errors.TryAgainError)
        unavailable += (errors.SlotNotCoveredError,)
        message = f"redis ({self.settings.display}): {text}"
        if (
            isinstance(error, unavailable)
            or text.startswith(_UNAVAILABLE_REPLIES)
            or (isinstance(error, errors.RedisClusterException) and "cannot be connected" in text)
        ):
            return BackendUnavailableError(message)
        return BackendError(message)
