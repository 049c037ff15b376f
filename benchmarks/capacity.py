"""``python -m benchmarks.capacity [backend ...] [--seconds S] [--out DIR]``: what one server
node costs per operation and per authenticated request, for sizing a deployment.

A typical authenticated request of an auth core is one session read, one blacklist
read and one rate-limit hit. For each network backend this measures, on the server the
tests use:

- the server's CPU time per operation and per request, read from ``/proc`` (the server's
  process and its children: PostgreSQL runs a process per connection), which is what a
  node spends whatever the client;
- the requests per second one client process reaches with 100 async callers, and the
  client's own CPU time per request (here the client and the server share 2 cores, so
  this throughput is a floor, not the server's ceiling).

A server core that did nothing else would serve about 1e6 / (server µs per request)
requests per second; docs/scaling.md turns that into node counts. Writes
``capacity.md`` and ``capacity.json`` to ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import authstore
from benchmarks.suite.targets import NETWORK, Target, discover

__all__ = ["main", "server_pids"]

RESULTS = Path(__file__).parent / "results"
CALLERS = 100
USERS = 1000
BIG = 10**9
IDLE = 1.0
"""Seconds the server's idle CPU is read for before each measurement (then subtracted)."""
TICKS = os.sysconf("SC_CLK_TCK")
MIX = ("session get", "is_blacklisted", "rate-limit hit")
"""The three calls of one typical authenticated request, in the order a core makes them."""


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # the command name is in parentheses and may hold spaces
            yield int(entry), stat.rsplit(")", 1)[1].split()


def server_pids(port: int) -> list[int]:
    """The process listening on ``port`` and all its descendants (PostgreSQL's backends)."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    root = None
    for pid, _ in _processes():
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if links & inodes:
            root = pid
            break
    if root is None:
        raise RuntimeError(f"no process of this machine listens on port {port}")
    parents = {pid: int(fields[1]) for pid, fields in _processes()}
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    return sorted(family)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _addresses(target: Target) -> list[tuple[str, int]]:
    """Every host of the URL: a Redis Cluster's masters are summed."""
    netloc = urllib.parse.urlsplit(target.server).netloc.rsplit("@", 1)[-1]
    found = []
    for host in netloc.split(","):
        name, _, port = host.rpartition(":")
        found.append((name.strip("[]") or "127.0.0.1", int(port)))
    return found


def _server_cpu(target: Target) -> Callable[[], float]:
    addresses = _addresses(target)
    for host, _ in addresses:
        if socket.gethostbyname(host) not in ("127.0.0.1", "::1"):
            raise RuntimeError(f"{target.name}: {host} is not this machine; its CPU is unseen")

    def read() -> float:
        # PostgreSQL forks a backend per new connection: look the family up each time
        return sum(cpu_seconds(server_pids(port)) for _, port in addresses)

    return read


async def _measure(target: Target, seconds: float) -> dict[str, dict[str, float]]:
    cache = authstore.open_async_cache(target.url)
    sessions = authstore.open_async_sessions(target.url)
    try:
        tokens = []
        for user in range(USERS):
            created = await sessions.create(f"user{user}", ttl=3600)
            tokens.append(created.token)
            await cache.add_to_blacklist(f"jti{user}", 3600)
        calls: dict[str, Callable[[int], Any]] = {
            "session get": lambda i: sessions.get(tokens[i % USERS]),
            "is_blacklisted": lambda i: cache.is_blacklisted(f"jti{i % USERS}"),
            "rate-limit hit": lambda i: cache.check_rate_limit(f"ip{i % USERS}", BIG, 60),
        }

        async def request(i: int) -> None:
            for name in MIX:
                await calls[name](i)

        plans: dict[str, Callable[[int], Any]] = {**calls, "request": request}
        server = _server_cpu(target)
        rows: dict[str, dict[str, float]] = {}
        for name, call in plans.items():
            rows[name] = await _timed(call, seconds, server)
            row = rows[name]
            progress(
                f"  {target.name:<10} {name:<15} {row['per_second']:>9,.0f}/s"
                f"  server {row['server_us']:7.1f} µs  client {row['client_us']:7.1f} µs"
                + (f"  {row['errors']:.0f} timed out" if row["errors"] else "")
            )
        return rows
    finally:
        await sessions.aclose()
        await cache.aclose()


async def _timed(
    call: Callable[[int], Any], seconds: float, server: Callable[[], float]
) -> dict[str, float]:
    """``CALLERS`` tasks calling ``call`` for ``seconds``: throughput and CPU per call."""
    for i in range(CALLERS):  # every pooled connection open before the clock starts
        await call(i)
    done = errors = 0
    stop = 0.0

    async def caller(first: int) -> None:
        nonlocal done, errors
        i = first
        while time.perf_counter() < stop:
            try:
                await call(i)
            except authstore.BackendUnavailableError:
                errors += 1  # counted and reported: a timeout is not a served call
            else:
                done += 1
            i += CALLERS

    # what the server spends doing nothing (a cluster's bus, housekeeping) is not a call's
    idle_before, idle_started = server(), time.perf_counter()
    await asyncio.sleep(IDLE)
    idle = (server() - idle_before) / (time.perf_counter() - idle_started)
    server_before, client_before = server(), time.process_time()
    started = time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(caller(n) for n in range(CALLERS)))
    wall = time.perf_counter() - started
    server_cpu = max(0.0, server() - server_before - idle * wall)
    client_cpu = time.process_time() - client_before
    served = max(done, 1)
    return {
        "count": done,
        "errors": errors,
        "per_second": done / wall,
        "server_us": server_cpu / served * 1e6,
        "client_us": client_cpu / served * 1e6,
    }


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _report(results: dict[str, Any]) -> str:
    lines = [
        "# authstore capacity: server cost per operation and per request",
        "",
        f"Generated by `python -m benchmarks.capacity` ({results['seconds']:.0f} s per measurement)"
        f" on {results['when']}; {results['machine']}.",
        "",
        "One client process, 100 async callers, default store settings, 1,000 users. "
        "*server µs* is the server's CPU time (all its processes and threads) per call, "
        "read from /proc, less what it spent idle just before: what a node spends whatever the client. *client µs* is this "
        "client process's CPU time per call. Client and server share this machine's 2 cores, "
        "so *ops/s* is what one Python process reached here, not the server's ceiling. "
        "*1 core serves* is 1e6 / server µs: the calls one server core would answer if "
        "it did nothing else. A request is one session get, one is_blacklisted and one "
        "rate-limit hit (the default algorithm), run in sequence.",
        "",
        "| backend | call | ops/s (1 client) | server µs | client µs | 1 server core serves | failed calls |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in results["backends"].items():
        if isinstance(rows, str):
            lines.append(f"| {backend} | failed: {rows} | | | | | |")
            continue
        for name, row in rows.items():
            serves = 1e6 / row["server_us"] if row["server_us"] > 0 else float("inf")
            label = f"**{name}**" if name == "request" else name
            lines.append(
                f"| {backend} | {label} | {row['per_second']:,.0f} | {row['server_us']:.1f}"
                f" | {row['client_us']:.1f} | {serves:,.0f}/s | {row['errors']:,} |"
            )
    lines += [
        "",
        "The MongoDB numbers come from this machine's test server, a Python stand-in that "
        "speaks the MongoDB wire protocol: they say nothing of a real mongod's capacity.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"backends ({', '.join(NETWORK)}) or URLs")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    wanted = options.targets or [name for name in NETWORK if name != "memcached"]
    targets, skipped = discover(wanted)
    for line in skipped:
        progress(f"skipped {line}")
    results: dict[str, Any] = {
        "seconds": options.seconds,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "backends": {},
    }
    failed = False
    for target in targets:
        if "sessions" not in target.stores:
            progress(f"skipped {target.name}: no session store")
            continue
        try:
            label = (
                target.name
                if target.server.count(",") == 0
                else f"{target.name} ({target.server.split('://')[0]})"
            )
            results["backends"][label] = asyncio.run(_measure(target, options.seconds))
        except Exception as error:
            failed = True
            results["backends"][label] = f"{error!r:.200}"
            progress(f"  {target.name} FAILED: {error!r:.200}")
        finally:
            target.cleanup()
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.out / "capacity.md").write_text(_report(results))
    progress(f"report: {options.out / 'capacity.md'}")
    return 1 if failed or not results["backends"] else 0


if __name__ == "__main__":
    sys.exit(main())
