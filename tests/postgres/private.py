"""A private PostgreSQL server for tests that freeze, kill or restart it.

Never the shared server: ``initdb`` into a temporary folder, ``postgres`` on a free
loopback port; SIGSTOP/SIGCONT go to the postmaster and each of its children. Debian's binaries live under /usr/lib/postgresql/*/bin;
PostgreSQL refuses to run as root, so as root the server runs as the postgres user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psycopg

__all__ = ["PrivatePostgres", "find_binaries", "private_postgres"]


def find_binaries() -> str | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0,
    )
    on_path = shutil.which("postgres")
    if found:
        return os.path.dirname(found[-1])
    return os.path.dirname(on_path) if on_path else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    def __init__(self, bin_dir: str, root: str) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = os.path.join(root, "data")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run(
            [
                os.path.join(self.bin_dir, "initdb"),
                "-D",
                self.data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            **self._as,
        )

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [
                os.path.join(self.bin_dir, "postgres"),
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=40",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._as,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _children(self) -> list[int]:
        assert self.process is not None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(entry))
        return found

    def _signal(self, number: signal.Signals) -> None:
        """The postmaster first, then its children: each backend calls setsid(), so
        the postmaster's process group does not reach them."""
        assert self.process is not None
        os.kill(self.process.pid, number)
        for pid in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connections stay open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash would; ``start`` again
        recovers from the WAL on the same port."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self._signal(signal.SIGKILL)
        self.process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.thaw()
            self.process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self._signal(signal.SIGKILL)
            self.process.wait(5)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running private server, stopped and deleted afterwards; the caller skips
    (or fails under strict) when ``find_binaries()`` is None."""
    bin_dir = find_binaries()
    assert bin_dir is not None, "no PostgreSQL binaries"
    root = tempfile.mkdtemp(prefix="authstore-pg-")
    server = PrivatePostgres(bin_dir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
