"""A TCP relay on loopback for tests that must see or shape what crosses the wire: the
round-trip counter, the benchmark-replay recorder and the lagging replication link are
each a few lines on top of it.

One thread per direction per connection, blocking sockets: the bytes a test sees are
the bytes the peer sent, in order, with nothing of an event loop in between.
``TCP_NODELAY`` on both sides, as the servers' and drivers' own sockets: Nagle would
hold a small write for 40 ms.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class Relay:
    """Listens on a free port of ``host`` and joins each connection to ``target``.

    Subclasses see the traffic in ``from_client``/``from_server`` (called on the pump
    thread of that direction; the default forwards at once) and may replace
    ``connected`` to start more threads per connection."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.listener = socket.create_server((host, 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.closed = threading.Event()
        self._sockets: list[socket.socket] = [self.listener]
        self.spawn(self._accept)

    @staticmethod
    def spawn(target: Any, *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self._sockets += [client, server]
                self.connections += 1
                number = self.connections
            self.connected(number, client, server)

    def connected(self, number: int, client: socket.socket, server: socket.socket) -> None:
        """Start the connection's pumps (``number`` counts connections from 1)."""
        self.spawn(self.pump, client, server, lambda data: self.from_client(number, data, server))
        self.spawn(self.pump, server, client, lambda data: self.from_server(number, data, client))

    def from_client(self, number: int, data: bytes, server: socket.socket) -> None:
        server.sendall(data)

    def from_server(self, number: int, data: bytes, client: socket.socket) -> None:
        client.sendall(data)

    def pump(self, source: socket.socket, sink: socket.socket, handle: Any) -> None:
        """Hand what ``source`` sends to ``handle`` until it closes, then close ``sink``
        for writing (the other side sees the end); nothing moves once the relay closed."""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.closed.is_set():
                    return
                handle(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Drop every connection at once, what is in flight included (as the death of a
        machine would), and stop listening."""
        self.closed.set()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
