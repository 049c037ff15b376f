"""The idle-connection check (``common.sockets``): anything to read on an idle
connection, or its end, means the server closed it."""

from __future__ import annotations

import socket

from authstore.adapters.common.sockets import IdlePoll, socket_readable


def test_idle_poll_follows_the_clients_socket() -> None:
    """The poll object is kept for one socket and made anew for the next: a client
    that reconnected is checked on its new socket, never on the old one."""
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    idle = IdlePoll()
    try:
        assert not idle.readable(first)
        first_peer.sendall(b"x")  # memcached never sends unasked: the connection is unusable
        assert idle.readable(first) and socket_readable(first)
        assert not idle.readable(second), "checked the old socket, not the client's new one"
        second_peer.close()  # the server closed it: EOF
        assert idle.readable(second) and socket_readable(second)
    finally:
        for end in (first, first_peer, second, second_peer):
            end.close()
