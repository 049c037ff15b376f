"""Processes and wire-level checks for the test servers, standard library only.

A server the server command starts must outlive it: it runs in its own session, with
stdin from /dev/null, its output in a log file and no other inherited descriptor (a
``$(...)`` or a CI log reader would otherwise wait for it), its pid in a file. Readiness
is asked in each server's own protocol (RESP for Redis, ``version`` for memcached), so
the command needs no driver installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "RespError",
    "alive",
    "ask_memcached_version",
    "ask_redis",
    "owned_pid",
    "port_open",
    "spawn",
    "stop_owned",
    "wait_until",
]

HOST = "127.0.0.1"
ASK_TIMEOUT = 3.0


def port_open(port: int, host: str = HOST) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=ASK_TIMEOUT):
            return True
    except OSError:
        return False


class RespError(Exception):
    """A Redis error reply (``-ERR ...``)."""


RespValue = str | int | list["RespValue"] | None


def _encode(command: Sequence[object]) -> bytes:
    parts = [f"*{len(command)}\r\n".encode()]
    for item in command:
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(reader: BinaryIO) -> RespValue:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed in the middle of a reply")
    kind, body = line[:1], line[1:-2].decode()
    if kind == b"+":
        return body
    if kind == b"-":
        raise RespError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        if int(body) < 0:
            return None
        data = reader.read(int(body) + 2)
        return bytes(data[:-2]).decode(errors="replace")
    if kind == b"*":
        if int(body) < 0:
            return None
        return [_read_reply(reader) for _ in range(int(body))]
    raise ConnectionError(f"not a RESP reply: {line[:40]!r}")


def ask_redis(
    *command: object,
    port: int = 0,
    host: str = HOST,
    unix_socket: Path | None = None,
    tls_ca: Path | None = None,
    timeout: float = ASK_TIMEOUT,
) -> RespValue:
    """One command on a short-lived connection, its reply decoded (RESP2). Over TLS the
    server certificate and host name are verified against ``tls_ca``."""
    if unix_socket is not None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        try:
            raw.connect(str(unix_socket))
        except OSError:
            raw.close()
            raise
    else:
        raw = socket.create_connection((host, port), timeout=timeout)
    sock: socket.socket = raw
    try:
        if tls_ca is not None:
            context = ssl.create_default_context(cafile=str(tls_ca))
            sock = context.wrap_socket(raw, server_hostname=host)
        sock.sendall(_encode(command))
        with sock.makefile("rb") as stream:
            return _read_reply(stream)
    finally:
        sock.close()
        raw.close()


def ask_memcached_version(port: int, host: str = HOST) -> str:
    """The server's answer to ``version`` (``VERSION 1.6.x``)."""
    with socket.create_connection((host, port), timeout=ASK_TIMEOUT) as sock:
        sock.sendall(b"version\r\n")
        with sock.makefile("rb") as stream:
            return bytes(stream.readline()).decode(errors="replace").strip()


def alive(pid: int | None) -> bool:
    """``pid`` runs (a zombie left for a slow init to reap does not count)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def owned_pid(pid_file: Path, word: str) -> int | None:
    """The pid in ``pid_file`` when that process runs and its command line has ``word``
    (a pid reused by another program is not ours)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and word in _command_line(pid) else None


def spawn(
    command: Sequence[str],
    log: Path,
    *,
    pid_file: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    **options: Any,
) -> int:
    """Start ``command`` in the background, detached (see the module docstring);
    ``options`` go to Popen (``user=``, ``group=``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"=== {time.strftime('%F %T')}: starting {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
            cwd=cwd,
            env=env,
            **options,
        )
    if pid_file is not None:
        pid_file.write_text(f"{process.pid}\n")
    return process.pid


def wait_until(
    check: Callable[[], bool], seconds: float, pids: Sequence[int] = (), interval: float = 0.2
) -> str | None:
    """Poll ``check`` until it passes (None), one of ``pids`` exits or time runs out
    (the reason)."""
    deadline = time.monotonic() + seconds
    while True:
        if _passes(check):
            return None
        for pid in pids:
            if not alive(pid):
                return None if _passes(check) else f"its process (pid {pid}) exited"
        if time.monotonic() >= deadline:
            return None if _passes(check) else f"no answer after {seconds:.0f}s"
        time.sleep(interval)


def _passes(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (OSError, RespError, ValueError, subprocess.SubprocessError):
        return False


def stop_owned(
    pid_files: Sequence[Path],
    word: str,
    grace: float = 10.0,
    sig: signal.Signals = signal.SIGTERM,
) -> list[int]:
    """Send ``sig`` to every live process named in ``pid_files`` whose command line has
    ``word``, SIGKILL what remains after ``grace`` seconds; removes the pid files.
    Returns the pids it stopped."""
    pids = [pid for pid in (owned_pid(path, word) for path in pid_files) if pid is not None]
    for path in pid_files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids
