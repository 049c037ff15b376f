"""A private secantusd-py (the wire-compatible test server) for tests that freeze, kill,
restart or otherwise abuse a server, and for a test session's own fresh server
(tests/conftest.py): never the shared one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymongo
import pytest

from tests.outages import free_port, stopped

__all__ = ["FRESH", "PrivateServer", "SessionServer", "secantusd"]


def secantusd() -> str | None:
    """The secantusd-py that scripts/services installed, else one on PATH."""
    home = os.environ.get("AUTHSTORE_SERVICES_HOME") or os.path.expanduser(
        "~/.cache/authstore-services"
    )
    found = os.path.join(home, "venv", "bin", "secantusd-py")
    if os.path.exists(found):
        return found
    beside = Path(sys.executable).with_name("secantusd-py")
    return shutil.which("secantusd-py") or (str(beside) if beside.exists() else None)


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGKILL when the test process dies, so a
    killed or crashed run leaves no server behind (elsewhere, nothing happens)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PrivateServer:
    """secantusd-py in a subprocess on a free port, with in-memory storage."""

    def __init__(self) -> None:
        executable = secantusd()
        if executable is None:
            pytest.fail("no secantusd-py: run scripts/services up mongodb", pytrace=False)
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = tempfile.mkdtemp(prefix="authstore-secantusd-")
        """Its working folder and TMPDIR (the :memory: storage lives there)."""
        self.config = os.path.join(self.folder, "secantusd.toml")
        Path(self.config).write_text("")  # no secantusd.toml from ~/.secantus or /etc

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/authstore_test"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--config",
                self.config,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                ":memory:",
                "--log-level",
                "ERROR",
                "--enable-test-commands",  # configureFailPoint
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            env={**os.environ, "TMPDIR": self.folder},
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 30
        while True:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                self.url, serverSelectionTimeoutMS=500
            )
            try:
                client.admin.command("ping")
                # the answer came from our process, not from another server that
                # took the port while ours failed to bind it
                assert self.process.poll() is None, "the private server exited"
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.2)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def close(self) -> None:
        """Gone for good: killed (a clean shutdown takes secantusd seconds, and there is
        nothing to keep) and its folder deleted."""
        if self.process is not None:
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def freeze(self) -> None:
        """SIGSTOP, and wait until every thread of the server has stopped."""
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not self._stopped() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self._stopped(), "the server did not stop"

    def _stopped(self) -> bool:
        assert self.process is not None
        return stopped(self.process.pid)

    def kill(self) -> None:
        """SIGKILL, as a crash: connections are reset, nothing is shut down cleanly."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        os.kill(self.process.pid, signal.SIGCONT)
        self.process.wait(10)
        self.process = None

    def admin(self) -> pymongo.MongoClient[dict[str, object]]:
        """A plain client of this server (close it)."""
        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=5000)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


FRESH = "AUTHSTORE_TEST_MONGODB_FRESH"
"""1: every test session starts its own fresh secantusd; 0: it uses
AUTHSTORE_TEST_MONGODB_URL as it is; unset: fresh when that URL is unset or names a
secantusdb (the shared stand-in scripts/services starts), and secantusd-py is here."""


class SessionServer:
    """The MongoDB server of one test session (tests/conftest.py): a private secantusd
    started on first use, so every run starts from an empty server in a known state.

    The shared stand-in slows down over a long life and wedges under abandoned
    transactions, and other runs may be using it at the same time: neither dropping its
    databases nor restarting it is safe then. A private server costs under a second to
    start and nothing to stop (SIGKILL: it is in memory). A real MongoDB named by
    AUTHSTORE_TEST_MONGODB_URL is used as it is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decided = False
        self._server: PrivateServer | None = None

    def url(self, configured: str | None) -> str | None:
        """The fresh server's URL, or None: use ``configured``."""
        with self._lock:
            if not self._decided:
                self._decided = True
                if _fresh_wanted(configured):
                    server = PrivateServer()
                    server.start()
                    self._server = server
            return None if self._server is None else self._server.url

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None


def _fresh_wanted(configured: str | None) -> bool:
    setting = os.environ.get(FRESH, "")
    if setting == "0" or secantusd() is None:
        return False
    if setting == "1" or not configured:
        return True
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        configured, serverSelectionTimeoutMS=3000
    )
    try:
        return "secantusVersion" in client.admin.command("buildInfo")
    except pymongo.errors.PyMongoError:
        return False  # its own probe reports it (tests/servers.py)
    finally:
        client.close()
