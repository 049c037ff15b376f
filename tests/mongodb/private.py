"""A private secantusd-py (the wire-compatible test server) for tests that freeze, kill,
restart or otherwise abuse a server, and for a test session's own fresh server
(tests/conftest.py): never the shared one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest

from tests.outages import free_port, stopped

__all__ = ["PrivateServer", "secantusd"]


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


class PrivateServer:
    """secantusd-py in a subprocess on a free port, with in-memory storage."""

    def __init__(self) -> None:
        executable = secantusd()
        if executable is None:
            pytest.fail("no secantusd-py: run scripts/services up mongodb", pytrace=False)
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/authstore_test"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
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
