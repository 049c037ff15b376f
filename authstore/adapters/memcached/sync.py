"""The sync memcached runner: pymemcache, a client per server per thread.

pymemcache's Client is not thread-safe; rather than a pool that every call locks,
each thread gets its own clients (a HashClient's per-server clients when there are
several servers), made on its first call, and made anew in a forked child (two
processes reading one socket would read each other's replies). Keys are routed by ``runner.Ring``, never
by HashClient's failover, which would answer a default value for a failing server or
drop it from the ring (a missing revocation, a rate limit starting over): here a
server that is down makes its keys' operations raise.

A client given as ``client=`` is used as it is: a PooledClient, a HashClient (its
per-server clients), or a plain Client under a lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op, drive
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
from authstore.adapters.memcached.runner import (
    METHODS,
    READS,
    Call,
    MemcachedRunnerBase,
    Ring,
)
from authstore.adapters.memcached.settings import MemcachedSettings, node_name
from authstore.contracts.errors import BackendError, ConfigurationError
from authstore.registry import require_module

__all__ = ["SyncMemcachedRunner", "meta_get", "swap"]

T = TypeVar("T")

_forks = [0]
"""How many times this process is a forked child: a thread's clients made before the
last fork are its parent's (cheaper to compare per call than ``os.getpid()``, a system
call)."""


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


class SyncMemcachedRunner(MemcachedRunnerBase[Any]):
    lock_factory = threading.Lock

    def __init__(self, settings: MemcachedSettings) -> None:
        super().__init__(settings)
        pymemcache = require_module("pymemcache", "memcached", "memcached")
        self._base = require_module("pymemcache.client.base", "memcached", "memcached")
        self._hash = require_module("pymemcache.client.hash", "memcached", "memcached")
        self._unavailable: tuple[type[BaseException], ...] = (
            OSError,
            pymemcache.MemcacheUnexpectedCloseError,
        )
        self._driver_errors = (*self._unavailable, pymemcache.MemcacheError)
        self._locks: dict[str, threading.Lock] = {}
        self._local = threading.local()
        self._made: weakref.WeakSet[_ThreadClients] = weakref.WeakSet()  # closed with the runner
        self._made_lock = threading.Lock()
        self._closed_errors: tuple[type[BaseException], ...] = (
            ConnectionError,
            pymemcache.MemcacheUnexpectedCloseError,
        )
        """What a connection the server closed raises (EOF, reset, broken pipe): a
        read on one is sent again (``_invoke``); a timeout is not one of them."""
        self._own_timeouts = settings.client is None and _KERNEL_TIMEOUTS
        """Whether connections get their timeouts from the kernel (``_kernel_timeouts``):
        the runner's own, not those of a client given as ``client=``."""
        client = settings.client
        if client is None:
            self._ring = Ring(node_name(host, port) for host, port in settings.servers)
        elif isinstance(client, self._hash.HashClient):
            self._use(dict(client.clients))
        elif isinstance(client, self._base.PooledClient | self._base.Client):
            self._use({_server_name(client.server): client})
        else:
            raise ConfigurationError(
                "client= for a sync memcached store is a pymemcache Client, PooledClient or "
                f"HashClient, not {type(client).__name__}"
            )
        for name, server in self._clients.items():
            if isinstance(server, self._base.Client):  # not thread-safe: one call at a time
                self._locks[name] = threading.Lock()
        self._methods: dict[str, Callable[..., Any]] = {
            name: getattr(self, f"_{name}") for name in METHODS
        }
        """``Call.method`` -> what performs it on a client."""
        pooled = self._base.PooledClient
        if not any(isinstance(given, pooled) for given in self._clients.values()):
            # Clients only (a PooledClient's calls take one of its clients first)
            self._methods.update(mget=meta_get, swap=swap)

    def _thread_clients(self) -> dict[str, Any]:
        """This thread's clients (server name -> pymemcache Client), made on first use."""
        held: _ThreadClients | None = getattr(self._local, "held", None)
        if held is None or held.forks != _forks[0]:
            # none yet, or this is a forked child: the parent's sockets are not ours
            settings = self.settings
            options: dict[str, Any] = {
                "connect_timeout": settings.connect_timeout,
                "timeout": settings.timeout,
                "no_delay": True,
                "default_noreply": False,
            }
            if len(settings.servers) == 1:
                made = self._base.Client(settings.servers[0], **options)
                clients = {node_name(*settings.servers[0]): made}
            else:
                made = self._hash.HashClient(list(settings.servers), **options)
                clients = dict(made.clients)
            held = _ThreadClients(made, clients, self._driver_errors)
            with self._made_lock:
                self._check_open()
                self._made.add(held)
            self._local.held = held
        return held.clients

    def run(self, op: Op[T]) -> T:
        return drive(self.program(op), self._call)

    def _call(self, call: Call) -> Any:
        server = call.server
        if not server:  # LOCAL: a turn or a pause, no client
            return self._methods[call.method](None, *call.args)
        clients = self._clients or self._thread_clients()
        lock = self._locks.get(server) if self._locks else None
        if lock is None:
            return self._invoke(clients[server], call)
        with lock:  # the check too: another thread's reply may be on its way
            return self._invoke(clients[server], call)

    def _translated(self, error: BaseException) -> BackendError:
        if isinstance(error, BlockingIOError):  # a kernel timeout (``_kernel_timeouts``)
            late = TimeoutError(f"no answer within {self.settings.timeout:g} s")
            return self._error(late, unavailable=True)
        return super()._translated(error)

    def _invoke(self, client: Any, call: Call) -> Any:
        """The call, on a connection checked first when it has been used before: an
        idle memcached connection is never sent anything, so one the server closed (a
        restart, an idle timeout) fails the call that uses it next. A write is never
        sent on it: its socket is polled first, and one with something to read (EOF) is
        closed and the write goes out on a new one that pymemcache makes. Nothing was
        sent on the stale one, so even a write is sent once: never retried after a
        failure, when it may have been applied (a CAS of a rate limit sent twice would
        count twice). A read (``READS``) needs no poll: changing nothing, it is sent
        again, once, on a new connection when the one it used turns out closed (EOF or
        reset, never a timeout). A call cut short by a BaseException (a
        KeyboardInterrupt) closes the connection, as pymemcache does on an Exception:
        no later call may read the reply it left on its way. A pymemcache PooledClient
        given as ``client=`` has no single socket to check."""
        method = call.method
        sock = getattr(client, "sock", None)
        if sock is not None:  # used before: it may have been closed since
            idle: IdlePoll | None = getattr(client, "_authstore_idle", None)
            if idle is None or idle.sock is not sock:  # a connection not seen yet
                idle = client._authstore_idle = IdlePoll(sock)
                if self._own_timeouts:
                    _kernel_timeouts(sock, self.settings.timeout)
            if method not in READS:
                if idle.readable(sock):
                    client.close()
                sock = None  # (not sent again)
        try:
            return self._methods[method](client, *call.args)
        except self._closed_errors:
            if sock is None:
                raise
        except Exception:
            raise  # pymemcache, and ``_exchange``, closed a connection left half read
        except BaseException:
            client.close()
            raise
        # a read on a connection the server closed while it was idle: once more, anew
        client.close()
        return self._methods[method](client, *call.args)

    # One method per Call.method: the pymemcache call and nothing else.

    def _get(self, client: Any, keys: list[str]) -> dict[str, tuple[Any, None]]:
        return {key: (value, None) for key, value in client.get_many(keys).items()}

    def _gets(self, client: Any, keys: list[str]) -> dict[str, tuple[Any, Any]]:
        return dict(client.gets_many(keys))

    def _set(self, client: Any, key: str, value: bytes, exp: int, _: object) -> bool:
        self._stored(client.set(key, value, expire=exp, noreply=False), "set")
        return True

    def _add(self, client: Any, key: str, value: bytes, exp: int, _: object) -> bool:
        return client.add(key, value, expire=exp, noreply=False) is True

    def _cas(self, client: Any, key: str, value: bytes, exp: int, token: object) -> bool:
        return client.cas(key, value, token, expire=exp, noreply=False) is True

    def _swap(self, client: Any, request: Swap) -> Any:
        """A Swap on a PooledClient's client, or a Client's (``swap``, which ``_methods``
        calls directly where no client is pooled)."""
        if isinstance(client, self._base.PooledClient):
            with client.client_pool.get_and_release(destroy_on_fail=True) as pooled:
                return swap(pooled, request)
        return swap(client, request)

    def _mget(self, client: Any, key: str) -> Any:
        """A meta get on a PooledClient's client, or a Client's (``meta_get``, as
        ``_swap``)."""
        if isinstance(client, self._base.PooledClient):
            with client.client_pool.get_and_release(destroy_on_fail=True) as pooled:
                return meta_get(pooled, key)
        return meta_get(client, key)

    def _set_many(self, client: Any, items: list[tuple[str, bytes]], exp: int) -> None:
        if client.set_many(dict(items), expire=exp, noreply=False):
            raise BackendError("memcached did not store every item of a batch")

    def _delete(self, client: Any, key: str) -> bool:
        return client.delete(key, noreply=False) is True

    def _touch(self, client: Any, key: str, exp: int) -> bool:
        return client.touch(key, expire=exp, noreply=False) is True

    def _version(self, client: Any) -> None:
        client.version()

    def _turn(self, _: None, turn: Turn) -> bool:
        return bool(turn.lock.acquire(timeout=max(0.0, turn.seconds)))

    def _pause(self, _: None, pause: Pause) -> None:
        time.sleep(pause.seconds)

    def close(self) -> None:
        with self._made_lock:
            self._closed = True
            made = list(self._made)
        for held in made:  # another thread's client may be mid-call: it fails, closed
            held.close()


_KERNEL_TIMEOUTS = sys.platform.startswith("linux")
"""Linux's timeval is two longs: what ``_kernel_timeouts`` packs."""


def _kernel_timeouts(sock: Any, seconds: float) -> None:
    """``seconds`` as the kernel's send and receive timeouts of a connected socket
    (SO_SNDTIMEO, SO_RCVTIMEO), and the socket blocking. Python's own timeout polls the
    socket before every send and receive: two more system calls a round trip. A send or
    receive the kernel cuts short raises BlockingIOError, an OSError like Python's
    timeout: the connection is closed and the call fails, unavailable. Each send or
    receive is bounded, not their sum: a reply trickling in can take longer."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.settimeout(None)
    except (OSError, ValueError):
        return  # Python's timeout stays


@functools.cache
def _pymemcache_base() -> Any:
    return require_module("pymemcache.client.base", "memcached", "memcached")


def swap(client: Any, request: Swap) -> tuple[bytes | None, tuple[bytes, bytes] | None]:
    """A ``Swap`` on a pymemcache ``Client``: its meta set and meta get in one write,
    their replies read after (pymemcache has no meta commands). A reply left half read
    closes the connection."""
    ((status, _), (header, value)) = _exchange(client, swap_request(request), 2, b"ms")
    return swap_answer(status, header, value)


def meta_get(client: Any, key: str) -> dict[str, tuple[bytes, bytes]]:
    """A ``Get`` of one key with its CAS token, as a meta get (``meta_get_request``) on a
    pymemcache ``Client``: ``{key: (raw value, token)}``, or ``{}``. A reply left half
    read closes the connection."""
    ((header, value),) = _exchange(client, meta_get_request(key), 1, b"mg")
    if value is None:
        value_size(header)  # EN, or raises
        return {}
    return {key: (value, header.rpartition(b" c")[2])}


RECV_SIZE = 4096
"""What one receive asks for (pymemcache's own size): a reply's first receive."""


def _exchange(client: Any, request: bytes, count: int, name: bytes) -> Replies:
    """Send ``request`` on ``client``'s connection and read its ``count`` meta replies
    (``meta_replies``), one receive for a short reply: an error reply raises pymemcache's
    error, as its own commands do, and a connection closed mid-reply
    MemcacheUnexpectedCloseError. A reply left half read closes the connection."""
    sock = client.sock
    if sock is None:
        client._connect()
        sock = client.sock
    try:
        sock.sendall(request)
        buf = sock.recv(RECV_SIZE)
        while True:
            replies = meta_replies(buf, count)
            if not isinstance(replies, int):
                break
            more = _receive(sock, replies)
            if not more:
                raise _pymemcache_base().MemcacheUnexpectedCloseError()
            buf += more
        if replies[-1][0].startswith(ERROR_LINES):
            client._raise_errors(replies[-1][0], name)
    except BaseException:
        client.close()
        raise
    return replies


def _receive(sock: Any, size: int) -> bytes:
    """At least ``size`` more bytes when they are a value's (joined once, not the reply
    copied at every receive), else what one receive gives; b'' when the server closed."""
    if size <= 1:
        return sock.recv(RECV_SIZE)  # type: ignore[no-any-return]
    chunks = []
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            return b""
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _ThreadClients:
    """One thread's clients; closed when the thread ends (its locals go) or the runner closes."""

    def __init__(self, made: Any, clients: dict[str, Any], errors: tuple[type[BaseException], ...]):
        self.made = made
        self.clients = clients
        self.pid = os.getpid()
        self.forks = _forks[0]
        self._errors = errors

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # the parent's clients, inherited by a fork: the parent closes them
        with contextlib.suppress(*self._errors):
            self.made.close()

    def __del__(self) -> None:
        self.close()


def _server_name(server: Any) -> str:
    if isinstance(server, tuple) and len(server) == 2:
        return node_name(str(server[0]), int(server[1]))
    return str(server)
