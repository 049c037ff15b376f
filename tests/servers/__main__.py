"""python -m tests.servers: the servers authstore's integration tests talk to.

  python -m tests.servers [up [NAME...]]      ensure they answer (default: all)
  python -m tests.servers status [NAME...]    say which answer; exit 1 if any does not
  python -m tests.servers env [NAME...]       print the export lines of those that answer
  python -m tests.servers stop [NAME...]      stop what this command started
  python -m tests.servers --packages COMMAND [NAME...]   Debian packages it would need

``scripts/services`` installs those packages (apt-get) then runs this; use either.
Typical use:  eval "$(scripts/services up)"   or   eval "$(scripts/services env)".

NAMEs: postgres mariadb redis memcached mongodb, and for the Redis backend's topologies
and memcached's multi-server client: redis-cluster (3 masters, no replicas),
redis-sentinel (master, replica, one sentinel, service "authstore"), redis-tls (TLS only;
CA and certificate made at first start in $AUTHSTORE_SERVICES_HOME/tls), redis-unix (a
unix socket only, $AUTHSTORE_SERVICES_HOME/redis.sock), memcached-multi (a second
memcached; the URL names both). Addresses: tests/servers/defaults.py. The Redis servers
run in memory only (no RDB, no AOF, maxmemory-policy noeviction); MongoDB is secantusdb
(a wire-compatible server, pip-installed into $AUTHSTORE_SERVICES_HOME/venv), started
empty every time.

A server whose port already answers is reused as it is (only the test database is
created in it when missing). If AUTHSTORE_TEST_<NAME>_URL is set, that server is left
alone and the variable is echoed back. Progress goes to stderr, export lines to stdout.
Exit status: 0 when all the requested servers answer, 1 when one or more do not, 2 on a
usage error.

Settings (environment): AUTHSTORE_SERVICES_HOME (state folder, default
~/.cache/authstore-services), AUTHSTORE_SERVICES_PORT_OFFSET (added to every port: a
second set of servers beside the first; also --port-offset), AUTHSTORE_SERVICES_WAIT
(seconds to wait for a started server, default 30), AUTHSTORE_SECANTUSDB_SPEC (pip
requirement of the MongoDB stand-in), AUTHSTORE_SERVICES_PYTHON (python used for its venv).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.servers.defaults import NAMES, Layout, env_var
from tests.servers.services import SERVICES, Run, log

COMMANDS = ("up", "status", "env", "stop")


def _usage(full: bool = True) -> None:
    text = __doc__ or ""
    print(text if full else text.split("\n\n")[1], file=sys.stderr)


@contextmanager
def _locked(home: Path, seconds: float = 600.0) -> Iterator[bool]:
    """One ``up`` or ``stop`` at a time per services home."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as lock:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.2)
        yield True


def _export(run: Run, name: str) -> str:
    url = os.environ.get(env_var(name)) or run.layout.url(name)
    return f"export {env_var(name)}={shlex.quote(url)}"


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    try:
        layout = Layout.from_env()
    except ValueError:
        log("AUTHSTORE_SERVICES_PORT_OFFSET must be a number")
        return 2
    if "--port-offset" in args:
        index = args.index("--port-offset")
        try:
            layout = Layout(layout.home, int(args[index + 1]))
        except (IndexError, ValueError):
            log("--port-offset needs a number")
            return 2
        del args[index : index + 2]
    packages_only = "--packages" in args
    if packages_only:
        args.remove("--packages")
    command = args.pop(0) if args else "up"
    if command in ("-h", "--help", "help"):
        _usage()
        return 0
    if command not in COMMANDS:
        log(f"unknown command: {command}")
        _usage(full=False)
        return 2
    unknown = [name for name in args if name not in SERVICES]
    if unknown:
        log(f"unknown service: {' '.join(unknown)} (known: {' '.join(NAMES)})")
        return 2
    names = args or list(NAMES)
    run = Run(layout, wait=float(os.environ.get("AUTHSTORE_SERVICES_WAIT") or 30))
    overridden = {name for name in names if os.environ.get(env_var(name))}

    if packages_only:  # what scripts/services installs with apt-get before `up`
        needed: list[str] = []
        for name in names if command == "up" else ():
            if name not in overridden:
                needed += [p for p in SERVICES[name].missing_packages(run) if p not in needed]
        print(" ".join(needed))
        return 0
    if command == "env":
        for name in names:
            if name in overridden or SERVICES[name].is_answering(run):
                print(_export(run, name))
        return 0
    if command == "status":
        status = 0
        for name in names:
            if name in overridden:
                log(f"{name}: {env_var(name)} set in the environment (not checked)")
            elif SERVICES[name].is_ready(run):
                log(f"{name}: answering on {layout.where(name)}")
            else:
                log(f"{name}: NOT answering on {layout.where(name)}")
                status = 1
        return status
    with _locked(layout.home) as locked:
        if not locked:
            log(f"another run holds {layout.home / 'lock'}")
            return 1
        if command == "stop":
            for name in names:
                if SERVICES[name].stop(run):
                    log(f"{name}: stopped")
                elif SERVICES[name].is_answering(run):
                    log(
                        f"{name}: running on {layout.where(name)} but not started by this "
                        "command: left alone"
                    )
                else:
                    log(f"{name}: not running")
            return 0
        for name in names:
            if name in overridden:
                log(f"{name}: using {env_var(name)} from the environment")
            else:
                SERVICES[name].up(run)
        for name in names:
            if name not in run.failed:
                print(_export(run, name), flush=True)
        if run.failed:
            log(f"could not bring up: {' '.join(run.failed)}")
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
