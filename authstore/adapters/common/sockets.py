"""A check of idle pooled connections, shared by the backends whose servers never
send anything unasked (MySQL, memcached): a stale connection is found before a byte of
a request is sent on it, so nothing is ever sent twice."""

from __future__ import annotations

import select
from typing import Any

__all__ = ["IdlePoll", "socket_readable"]

_MASK = select.POLLIN | select.POLLERR | select.POLLHUP if hasattr(select, "poll") else 0


def socket_readable(sock: Any) -> bool:
    """Whether an idle connection's socket has something to read. MySQL and memcached
    send nothing unasked, so anything on an idle connection (EOF after a KILL, a
    wait_timeout or a restart; MySQL's "disconnected for inactivity" packet) means it
    is unusable. A non-blocking poll: no round trip."""
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class IdlePoll:
    """``socket_readable`` for the connection of one client, its poll object kept while
    the client's socket stays the same (making and registering one is most of the
    check's cost; the poll is one system call)."""

    __slots__ = ("_poller", "sock")

    def __init__(self, sock: Any = None) -> None:
        self.sock: Any = None
        """The socket the poll object is for (None: none yet)."""
        self._poller: Any = None
        if sock is not None and hasattr(select, "poll"):
            self._watch(sock)

    def _watch(self, sock: Any) -> bool:
        """Make the poll object for ``sock``; False when it cannot be polled."""
        try:
            poller = select.poll()
            poller.register(sock, _MASK)
        except (OSError, ValueError):
            return False
        self.sock, self._poller = sock, poller
        return True

    def readable(self, sock: Any) -> bool:
        if sock is not self.sock:
            if not hasattr(select, "poll"):
                return socket_readable(sock)
            if not self._watch(sock):
                return True
        try:
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True
