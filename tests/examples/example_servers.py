"""Run an example app the way examples/README.md says: a real server process on loopback.

``serve(app, url)`` starts uvicorn (the FastAPI app, or Django's ASGI application) or
Django's ``manage.py runserver`` as a child process on a free 127.0.0.1 port with the
README's environment (console mail, ``AUTH_COOKIE_SECURE=0``), waits until ``GET /``
answers, collects everything the process prints, and stops it afterwards. The sign-in
link is read from that output, as a developer reads it from the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from example_keys import JWT_SECRET, TOTP_KEYS

from tests.outages import end_process, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LINK = re.compile(r"(https?://\S+#token=[A-Za-z0-9_-]+)")
STARTUP_SECONDS = 30

COMMANDS = {
    "fastapi": ["-m", "uvicorn", "fastapi_app.app:create_app", "--factory", "--host", "127.0.0.1"],
    "django-asgi": ["-m", "uvicorn", "django_app.asgi:application", "--host", "127.0.0.1"],
    "django-runserver": ["manage.py", "runserver", "--noreload"],
}
"""The README's run commands (from ``examples/``), with ``--port``/address added by ``serve``."""


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    taken: int = 0
    """Output lines already searched for links."""

    def output(self) -> str:
        return "".join(self.lines)

    def link(self, email: str, timeout: float = 10) -> str:
        """The newest sign-in link mailed to ``email`` since the last call (from the console)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recipient, found, end = None, None, len(self.lines)
            for line in self.lines[self.taken : end]:
                if line.startswith("To: "):
                    recipient = line[4:].strip()
                match = LINK.search(line)
                if match and recipient == email:
                    found = match[1]
            if found is not None:
                self.taken = end
                return found
            time.sleep(0.05)
        raise AssertionError(f"no sign-in link for {email} in the output:\n{self.output()}")


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@contextmanager
def serve(app: str, store_url: str, **env: str) -> Iterator[Server]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, *COMMANDS[app]]
    command += [f"127.0.0.1:{port}"] if app == "django-runserver" else ["--port", str(port)]
    environment = {
        **os.environ,
        "AUTHSTORE_URL": store_url,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "AUTH_TOTP_KEYS": TOTP_KEYS,
        "AUTH_COOKIE_SECURE": "0",
        "AUTH_LINK_URL": f"{base_url}/sign-in",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py and asgi.py set their own
    process = subprocess.Popen(
        command,
        cwd=EXAMPLES,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(base_url, process)
    reader = threading.Thread(target=_collect, args=(process, server.lines), daemon=True)
    reader.start()
    try:
        _wait_until_up(server)
        yield server
    finally:
        end_process(process)
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()  # the pipe is ours to close (ResourceWarning otherwise)


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited at startup:\n{server.output()}")
        try:
            if httpx.get(f"{server.base_url}/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer in {STARTUP_SECONDS} s:\n{server.output()}")
