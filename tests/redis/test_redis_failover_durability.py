"""Sentinel failovers while writers revoke at full speed: how many acknowledged security
writes does the promoted replica lack?

Redis replicates asynchronously: a write the master acknowledged and had not yet sent to
its replica is gone once the replica is promoted, so a blacklisted token is accepted
again, a consumed magic link works twice. With ``durability=replicated`` a security
write is acknowledged only after ``WAIT`` says the replica has it: none may be lost.

On a private master, replica and sentinel (never the shared ones). Each run: links
issued and the replica in sync; writer threads blacklist tokens, consume links and
revoke users' tokens as fast as they can; the master is killed (SIGKILL); the sentinel
promotes the replica; the stores, opened once by the sentinel URL and never reopened,
answer again; every write that returned is checked on the new master. A write that
raised was not acknowledged and is not counted. Then the killed master comes back as
the new master's replica for the next run.

``AUTHSTORE_FAILOVER_RUNS`` (default 2) failovers per mode; the long profile is 20:
``AUTHSTORE_FAILOVER_RUNS=20 pytest tests/redis/test_redis_failover_durability.py -s``.
Without the option the losses are measured and printed, not asserted (a run can lose
nothing by luck); with it, zero is asserted.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from authstore import (
    BackendError,
    open_cache,
    open_magic_links,
)
from tests.relay import Relay
from tests.servers.redis_topology import HOST, PrivateSentinel, private_sentinel

RUNS = int(os.environ.get("AUTHSTORE_FAILOVER_RUNS", "2"))
WRITERS = 4
LINKS_PER_WRITER = 1000
WRITE_BEFORE_KILL = 1.0
"""Seconds of writes before the master is killed."""
TIMEOUT = 1.0
LAG = float(os.environ.get("AUTHSTORE_FAILOVER_LAG", "0.02"))
"""Seconds the master's replication stream takes to reach the replica (0: loopback,
where a SIGKILLed master's kernel still delivers what it had sent, and next to
nothing is ever lost)."""

pytestmark = pytest.mark.timeout(120 + 60 * RUNS)


class LaggingLink(Relay):
    """The replica's link to its master through a relay: the master's stream arrives
    ``lag`` seconds late (a link between machines, a busy network), and ``cut()`` drops
    what is in flight, as the death of the master's machine would (a killed process's
    kernel would still deliver it). The replica's replies go through at once."""

    def __init__(self, master_port: int, lag: float) -> None:
        self.lag = lag
        self._late: dict[int, queue.SimpleQueue[tuple[float, bytes]]] = {}
        super().__init__((HOST, master_port), HOST)

    def connected(self, number: int, client: socket.socket, server: socket.socket) -> None:
        self._late[number] = queue.SimpleQueue()
        self.spawn(self._deliver, self._late[number], client)
        super().connected(number, client, server)

    def from_server(self, number: int, data: bytes, client: socket.socket) -> None:
        self._late[number].put((time.monotonic() + self.lag, data))

    def _deliver(self, late: queue.SimpleQueue[tuple[float, bytes]], sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self.closed.is_set():
                try:
                    due, data = late.get(timeout=0.1)
                except queue.Empty:
                    continue
                time.sleep(max(0.0, due - time.monotonic()))
                if self.closed.is_set():
                    return
                sink.sendall(data)

    def cut(self) -> None:
        self.close()


def _relay(topology: PrivateSentinel) -> LaggingLink | None:
    """The replica replicates through a ``LaggingLink`` (None without ``LAG``)."""
    if not LAG:
        return None
    link = LaggingLink(topology.master.port, LAG)
    topology.replica.execute("REPLICAOF", HOST, link.port)
    return link


@dataclass
class Writer:
    """One thread's acknowledged writes (what returned without raising)."""

    prefix: str
    links: list[str]
    blacklisted: list[str] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)
    revoked: dict[str, float] = field(default_factory=dict)
    """user -> the instant ``revoke_user_tokens`` returned (epoch seconds)."""
    failed: int = 0


@dataclass
class Run:
    acknowledged: int = 0
    failed: int = 0
    lost_blacklist: int = 0
    lost_links: int = 0
    lost_users: int = 0
    answered_after: float = 0.0

    @property
    def lost(self) -> int:
        return self.lost_blacklist + self.lost_links + self.lost_users


def _write(writer: Writer, cache: Any, links: Any, stop: threading.Event) -> None:
    index = 0
    while not stop.is_set():
        index += 1
        try:
            kind = index % 6  # a blacklist entry, a link, then user revocations
            if kind == 0:
                jti = f"{writer.prefix}-{index}"
                cache.add_to_blacklist(jti, 600)
                writer.blacklisted.append(jti)
            elif kind == 1 and writer.links:
                token = writer.links.pop()
                if links.consume(token) is not None:
                    writer.consumed.append(token)
            else:
                user = f"{writer.prefix}-u{index}"
                at = cache.revoke_user_tokens(user, expires_in=600)
                writer.revoked[user] = at.timestamp()
        except BackendError:
            writer.failed += 1
            time.sleep(0.002)


def _answering(cache: Any, deadline: float) -> float:
    started = time.monotonic()
    while True:
        try:
            cache.is_blacklisted("probe")
            return time.monotonic() - started
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _retried(call: Callable[[], Any]) -> Any:
    """Setup writes: again until they succeed (a replica just synced acknowledges late)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return call()
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _one_run(topology: PrivateSentinel, cache: Any, links: Any) -> Run:
    writers = []
    for number in range(WRITERS):
        prefix = f"w{number}-{uuid.uuid4().hex[:8]}"
        user = f"{prefix}-user"
        tokens = [
            _retried(
                lambda user=user: links.issue(user, "a@example.com", ttl=600, revoke_previous=False)
            ).token
            for _ in range(LINKS_PER_WRITER)
        ]
        writers.append(Writer(prefix, tokens))
    link = _relay(topology)  # just before: the sentinel points the replica back after a while
    topology.sync_replica()  # the issued links are on the replica: only consumption can go
    stop = threading.Event()
    threads = [threading.Thread(target=_write, args=(w, cache, links, stop)) for w in writers]
    for thread in threads:
        thread.start()
    run = Run()
    try:
        time.sleep(WRITE_BEFORE_KILL)
        killed = time.monotonic()
        if link is not None:  # the machine dies: what is in flight to the replica too
            link.cut()
        topology.fail_over(sync=False)  # SIGKILL now, whatever the replica has
        _answering(cache, time.monotonic() + 20)
        run.answered_after = time.monotonic() - killed
        time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    for writer in writers:
        run.failed += writer.failed
        run.acknowledged += len(writer.blacklisted) + len(writer.consumed) + len(writer.revoked)
        run.lost_blacklist += sum(not cache.is_blacklisted(jti) for jti in writer.blacklisted)
        run.lost_links += sum(links.peek(token) is not None for token in writer.consumed)
        for user, at in writer.revoked.items():
            stored = cache.user_tokens_revoked_at(user)
            run.lost_users += stored is None or stored.timestamp() < at - 1e-3
    return run


@contextlib.contextmanager
def _stores(url: str) -> Iterator[tuple[Any, Any]]:
    namespace = "fo" + uuid.uuid4().hex[:10]
    with (
        open_cache(url, namespace=namespace) as cache,
        open_magic_links(url, namespace=namespace) as links,
    ):
        yield cache, links


def _failovers(options: str) -> list[Run]:
    runs: list[Run] = []
    # failover-timeout is also how long the sentinel leaves a replica replicating from
    # another address (the relay) before it points it at the master itself, and half
    # the time between two failovers
    with private_sentinel(down_after_ms=300, failover_timeout_ms=3000) as topology:
        url = f"{topology.url}?timeout={TIMEOUT:g}{options}"
        with _stores(url) as (cache, links):
            for number in range(RUNS):
                if number:
                    topology.rejoin()
                run = _one_run(topology, cache, links)
                runs.append(run)
                print(
                    f"failover {number + 1}/{RUNS} ({options or 'durability=primary'}): "
                    f"{run.acknowledged} acknowledged, {run.failed} raised, lost "
                    f"{run.lost_blacklist} blacklist entries, {run.lost_links} consumed "
                    f"links, {run.lost_users} user revocations; the store answered "
                    f"{run.answered_after:.2f} s after the kill"
                )
    return runs


def _summary(label: str, runs: list[Run]) -> str:
    losing = sum(run.lost > 0 for run in runs)
    lost = sum(run.lost for run in runs)
    acknowledged = sum(run.acknowledged for run in runs)
    return (
        f"{label}: {losing} of {len(runs)} failovers lost acknowledged writes, "
        f"{lost} of {acknowledged} in all"
    )


def test_without_durability_losses_are_measured() -> None:
    """The measurement: how often a failover undoes acknowledged revocations."""
    runs = _failovers("")
    print(_summary("durability=primary", runs))
    assert all(run.acknowledged > 0 for run in runs)


def test_with_durability_replicated_nothing_acknowledged_is_lost() -> None:
    runs = _failovers("&durability=replicated&replica_timeout=0.5")
    print(_summary("durability=replicated", runs))
    assert all(run.acknowledged > 0 for run in runs)
    assert [run.lost for run in runs] == [0] * len(runs), _summary("replicated", runs)
