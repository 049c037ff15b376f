"""What ``durability=replicated`` costs a security write on Redis: the same operations
with and without ``WAIT 1``, on a private master and replica on loopback (started here,
killed at the end; never the shared servers).

``python -m benchmarks.suite.durability [--quick|--smoke] [--lag MS]``

The two stores take turns in alternating slices (``measure``), so load from other
processes hits both alike; the ratio is the number to read, the absolute times depend on
the machine. ``--lag MS`` sends the replica's stream through a relay that delays it by
MS milliseconds (the test's ``LaggingLink``): what a replica on another machine costs.
A write that waits is one round trip to the replica longer, at least.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from authstore import open_cache, open_magic_links, open_sessions
from benchmarks.suite import measure
from benchmarks.suite.measure import Contender, Measurement

OPS = ("add_to_blacklist", "revoke_user_tokens", "session revoke", "link consume", "is_blacklisted")


def _calls(url: str, label: str) -> tuple[dict[str, tuple[Any, Any]], list[Any]]:
    """Each op's (call, prepare) on stores opened by ``url``, and the stores."""
    namespace = "bd" + uuid.uuid4().hex[:8]
    cache = open_cache(url, namespace=namespace)
    sessions = open_sessions(url, namespace=namespace)
    links = open_magic_links(url, namespace=namespace)
    tokens: dict[str, list[str]] = {"session": [], "link": []}

    def fresh_sessions(n: int) -> None:
        tokens["session"] = [sessions.create("u", ttl=600).token for _ in range(n)]

    def fresh_links(n: int) -> None:
        tokens["link"] = [
            links.issue("u", "a@example.com", ttl=600, revoke_previous=False).token
            for _ in range(n)
        ]

    calls: dict[str, tuple[Callable[[int], Any], Callable[[int], Any] | None]] = {
        "add_to_blacklist": (lambda i: cache.add_to_blacklist(f"{label}{i}", 600), None),
        "revoke_user_tokens": (lambda i: cache.revoke_user_tokens(f"{label}{i}"), None),
        "session revoke": (lambda i: sessions.revoke(tokens["session"].pop()), fresh_sessions),
        "link consume": (lambda i: links.consume(tokens["link"].pop()), fresh_links),
        "is_blacklisted": (lambda i: cache.is_blacklisted(f"{label}{i}"), None),
    }
    return calls, [cache, sessions, links]


@contextlib.contextmanager
def _topology(lag_ms: float) -> Iterator[str]:
    """A private master and replica (and sentinel); the master's URL."""
    from tests.servers.redis_topology import HOST, private_sentinel

    with private_sentinel(failover_timeout_ms=600_000, down_after_ms=60_000) as topology:
        link = None
        if lag_ms:
            from tests.redis.test_redis_failover_durability import LaggingLink

            link = LaggingLink(topology.master.port, lag_ms / 1000)
            topology.replica.execute("REPLICAOF", HOST, link.port)
            topology.sync_replica()
        try:
            yield topology.master.url
        finally:
            if link is not None:
                link.cut()


def run(budget: measure.Budget, lag_ms: float = 0.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with _topology(lag_ms) as url:
        primary, opened = _calls(url, "p")
        replicated, more = _calls(f"{url}?durability=replicated", "r")
        try:
            for name in OPS:
                contenders = [
                    Contender("durability=primary", "authstore", *primary[name]),
                    Contender("durability=replicated", "authstore", *replicated[name]),
                ]
                one, other = measure.measure_sync(contenders, budget)
                rows.append(_row(name, one, other))
                print(_line(rows[-1]), flush=True)
        finally:
            for store in opened + more:
                store.close()
    return rows


def _row(name: str, primary: Measurement, replicated: Measurement) -> dict[str, Any]:
    return {
        "op": name,
        "primary_us": primary.seconds_per_op * 1e6,
        "primary_p99_us": primary.p99 * 1e6,
        "replicated_us": replicated.seconds_per_op * 1e6,
        "replicated_p99_us": replicated.p99 * 1e6,
        "ratio": replicated.seconds_per_op / primary.seconds_per_op
        if primary.seconds_per_op
        else 0.0,
        "error": primary.error or replicated.error,
    }


def _line(row: dict[str, Any]) -> str:
    if row["error"]:
        return f"{row['op']:<20} error: {row['error']}"
    return (
        f"{row['op']:<20} primary {row['primary_us']:7.0f} us (p99 {row['primary_p99_us']:6.0f})"
        f"   replicated {row['replicated_us']:7.0f} us (p99 {row['replicated_p99_us']:6.0f})"
        f"   x{row['ratio']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite.durability")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true")
    speed.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--lag", type=float, default=0.0, help="ms the replica's stream is delayed by (0: none)"
    )
    options = parser.parse_args(argv)
    budget = measure.SMOKE if options.smoke else measure.QUICK if options.quick else measure.FULL
    print(
        f"Redis security writes, sync, one caller, a private master and replica on loopback"
        f"{f' (replica stream {options.lag:g} ms late)' if options.lag else ''}:"
    )
    rows = run(budget, options.lag)
    return 1 if any(row["error"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
