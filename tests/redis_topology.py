"""Private, throwaway Redis topologies for fault tests.

A test that kills, freezes, fails over or reshards a Redis must never do it to the shared
servers (``scripts/services``): other tests, and other people, use them. These context
managers start their own ``redis-server`` processes on free loopback ports, each in a
temporary folder, wait until they answer, and on exit kill them and delete the folders,
whatever happened inside the block (a frozen process too). Every wait is bounded.

- ``private_redis()``: one server; ``kill()``, ``start()``/``restart()`` on the same port,
  ``pause()``/``resume()`` (SIGSTOP/SIGCONT) or ``with node.frozen():``.
- ``private_sentinel()``: master, replica, one sentinel; ``url`` is authstore's
  ``redis+sentinel://127.0.0.1:PORT/NAME``; ``fail_over()`` stops the master and waits
  until the sentinel reports the replica promoted.
- ``private_cluster()``: 3 masters, no replicas; ``url`` is ``redis+cluster://...``;
  ``migrate_slot(slot, to_node)`` moves one slot with its keys to another master, so a
  client with a stale slot map gets ``MOVED``.

All servers run in memory (no RDB, no AOF unless asked) with ``maxmemory-policy
noeviction``; ``args=`` come last, so they override those (e.g. ``["--maxmemory-policy",
"allkeys-lru"]`` for an evicting server). Only redis-py talks to them. The helpers block
(a topology starts in 0.1-3 s): from async tests call them directly or in a thread.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.crc import key_slot

__all__ = [
    "HOST",
    "PrivateCluster",
    "PrivateSentinel",
    "RedisProcess",
    "TopologyError",
    "private_cluster",
    "private_redis",
    "private_sentinel",
]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
"""Seconds for a server (or a whole topology) to answer: generous for a loaded CI box."""
FAILOVER_TIMEOUT = 30.0
ADMIN_TIMEOUT = 5.0
_PORT_RANGE = (20000, 30000)  # below the kernel's ephemeral range: no outgoing socket takes it
_handed_out: set[int] = set()
_live: set[RedisProcess] = set()

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A private Redis did not start or did not reach the state asked for in time."""


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        from authstore.contracts.testing import unavailable

        unavailable(
            "private Redis topologies need redis-server on PATH "
            "(apt-get install redis-server, or scripts/services up redis)"
        )
    return found


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before in this process."""
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise TopologyError("no free loopback port found")


def _wait_for(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something other than None/False; bounded."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result is not None and result is not False:
                return result
        except (redis.RedisError, OSError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = (
                f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            )
            raise TopologyError(f"{what}: not within {timeout:.0f} s{detail}")
        time.sleep(interval)


class RedisProcess:
    """One ``redis-server`` subprocess on a fixed loopback port, in its own folder."""

    def __init__(
        self,
        directory: Path,
        port: int,
        args: Sequence[str] = (),
        *,
        sentinel_config: Path | None = None,
        bus_port: int | None = None,
        label: str = "redis",
    ) -> None:
        self.directory = directory
        self.port = port
        self.host = HOST
        self.label = label
        self._args = list(args)
        self._sentinel_config = sentinel_config
        self.bus_port = bus_port
        """The cluster bus port of a cluster node."""
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.log_path = directory / f"{label}.log"
        directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<RedisProcess {self.label} {self.host}:{self.port} pid={self.pid}>"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        base = [_redis_server()]
        if self._sentinel_config is not None:
            base += [str(self._sentinel_config), "--sentinel"]
        base += ["--port", str(self.port), "--bind", self.host, "--dir", str(self.directory)]
        base += ["--daemonize", "no", "--logfile", ""]
        if self._sentinel_config is None:
            base += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        if self.bus_port is not None:
            base += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            base += ["--cluster-port", str(self.bus_port)]
        return base + self._args

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on this node's port and wait until it answers PING."""
        if self.running:
            raise TopologyError(f"{self!r} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"=== starting {' '.join(self._command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._paused = False
        _live.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise TopologyError(
                    f"{self.label} on port {self.port} exited at start:\n{self.log_tail()}"
                )
            try:
                if self.execute("PING", timeout=0.5):
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise TopologyError(
                    f"{self.label} on port {self.port} did not answer PING within "
                    f"{timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (works on a paused process too) and reap; a no-op when not running."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self._paused = False
        _live.discard(self)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Kill (if running) and start again on the same port. Data is lost unless the
        node was made with ``appendonly=True``."""
        self.kill()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        if not self.running or self._process is None:
            raise TopologyError(f"{self!r} is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @contextlib.contextmanager
    def frozen(self) -> Iterator[RedisProcess]:
        """``with node.frozen():`` pause for the block, resume after it."""
        self.pause()
        try:
            yield self
        finally:
            self.resume()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client on this node (the caller closes it)."""
        options: dict[str, Any] = {
            "socket_timeout": ADMIN_TIMEOUT,
            "socket_connect_timeout": ADMIN_TIMEOUT,
        }
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, **options)

    def execute(self, *command: Any, timeout: float = ADMIN_TIMEOUT) -> Any:
        """One command on a short-lived connection (no retries), its reply decoded."""
        client = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            retry=None,
        )
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@atexit.register
def _kill_leftovers() -> None:
    for node in list(_live):
        with contextlib.suppress(Exception):
            node.kill()


@contextlib.contextmanager
def _topology_dir(prefix: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"authstore-{prefix}-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start_on_free_port(make: Callable[[int], RedisProcess], timeout: float) -> RedisProcess:
    """Start a node on a free port; another port when one was taken in the meantime."""
    for attempt in range(3):
        node = make(free_port())
        try:
            node.start(timeout)
            return node
        except TopologyError:
            node.kill()
            if attempt == 2 or "Address already in use" not in node.log_tail(5):
                raise
    raise AssertionError("unreachable")


def _memory_args(appendonly: bool) -> list[str]:
    return ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else []


@contextlib.contextmanager
def private_redis(
    *, args: Sequence[str] = (), appendonly: bool = False, timeout: float = START_TIMEOUT
) -> Iterator[RedisProcess]:
    """One private Redis on a free loopback port; killed and deleted on exit.

    ``appendonly=True`` keeps data across ``restart()`` (AOF, fsync always)."""
    with _topology_dir("redis") as directory:
        node: RedisProcess | None = None
        try:
            node = _start_on_free_port(
                lambda port: RedisProcess(
                    directory, port, [*_memory_args(appendonly), *args], label="redis"
                ),
                timeout,
            )
            yield node
        finally:
            if node is not None:
                node.kill()


# --------------------------------------------------------------------------- sentinel

_REPLICATION_ARGS = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]


class PrivateSentinel:
    """A master, its replica and one sentinel (quorum 1) monitoring them as ``name``."""

    def __init__(
        self, master: RedisProcess, replica: RedisProcess, sentinel: RedisProcess, name: str
    ) -> None:
        self.master = master
        self.replica = replica
        self.sentinel = sentinel
        self.name = name

    @property
    def url(self) -> str:
        """authstore's form: ``redis+sentinel://127.0.0.1:PORT/NAME``."""
        return f"redis+sentinel://{self.sentinel.host}:{self.sentinel.port}/{self.name}"

    @property
    def nodes(self) -> list[RedisProcess]:
        return [self.master, self.replica, self.sentinel]

    def master_address(self) -> tuple[str, int] | None:
        """What the sentinel answers to SENTINEL GET-MASTER-ADDR-BY-NAME."""
        reply = self.sentinel.execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (reply[0], int(reply[1])) if reply else None

    def sync_replica(self, timeout: float = ADMIN_TIMEOUT) -> None:
        """Wait until the replica acknowledged every write the master took (WAIT 1)."""
        acked = self.master.execute("WAIT", 1, int(timeout * 1000), timeout=timeout + 1)
        if int(acked) < 1:
            raise TopologyError(f"the replica did not acknowledge within {timeout:.0f} s")

    def fail_over(self, *, sync: bool = True, timeout: float = FAILOVER_TIMEOUT) -> RedisProcess:
        """Stop (SIGKILL) the master and wait until the sentinel reports the replica as
        the master (failover finished, as SENTINEL MASTER and GET-MASTER-ADDR-BY-NAME
        show it) and the replica says it is one; returns the promoted replica.

        ``sync=True`` first waits until the replica has every write, so nothing is lost;
        ``sync=False`` leaves that to chance, as a real crash would."""
        if sync:
            self.sync_replica()
        self.master.kill()

        def promoted() -> bool:
            # GET-MASTER-ADDR-BY-NAME names the replica while the failover still runs;
            # SENTINEL MASTER (what redis-py's Sentinel reads) switches once it is done.
            if self.master_address() != self.replica.address:
                return False
            state = self._master_state()
            if int(state.get("port", 0)) != self.replica.port or state.get("flags") != "master":
                return False
            role = self.replica.execute("ROLE", timeout=1.0)
            return bool(role and role[0] == "master")

        _wait_for(
            f"sentinel {self.name}: promotion of the replica on port {self.replica.port}",
            promoted,
            timeout,
            interval=0.1,
        )
        return self.replica

    def _master_state(self) -> dict[str, Any]:
        reply = self.sentinel.execute("SENTINEL", "MASTER", self.name)
        if isinstance(reply, dict):
            return reply
        return dict(zip(reply[::2], reply[1::2], strict=True))

    def _healthy(self) -> bool:
        state = self._master_state()
        return (
            state.get("flags") == "master"
            and int(state.get("port", 0)) == self.master.port
            and int(state.get("num-slaves", 0)) >= 1
        )


@contextlib.contextmanager
def private_sentinel(
    name: str = "authstore",
    *,
    down_after_ms: int = 500,
    failover_timeout_ms: int = 5000,
    timeout: float = START_TIMEOUT,
) -> Iterator[PrivateSentinel]:
    """Master, replica and sentinel on free loopback ports; all killed and deleted on exit.

    Ready when the replica is in sync and the sentinel knows the master and its replica
    (so ``fail_over()`` can promote it)."""
    with _topology_dir("sentinel") as directory:
        nodes: list[RedisProcess] = []
        try:
            master = _start_on_free_port(
                lambda port: RedisProcess(
                    directory / "master", port, _REPLICATION_ARGS, label="master"
                ),
                timeout,
            )
            nodes.append(master)
            replica = _start_on_free_port(
                lambda port: RedisProcess(
                    directory / "replica",
                    port,
                    [*_REPLICATION_ARGS, "--replicaof", HOST, str(master.port)],
                    label="replica",
                ),
                timeout,
            )
            nodes.append(replica)
            _wait_for(
                "replica in sync",
                lambda: replica.execute("INFO", "replication").get("master_link_status") == "up",
                timeout,
            )

            def make_sentinel(port: int) -> RedisProcess:
                folder = directory / "sentinel"
                folder.mkdir(parents=True, exist_ok=True)
                config = folder / f"sentinel-{port}.conf"
                config.write_text(
                    f"sentinel monitor {name} {HOST} {master.port} 1\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                )
                return RedisProcess(folder, port, sentinel_config=config, label="sentinel")

            sentinel = _start_on_free_port(make_sentinel, timeout)
            nodes.append(sentinel)
            topology = PrivateSentinel(master, replica, sentinel, name)
            _wait_for("sentinel sees the master and its replica", topology._healthy, timeout)
            yield topology
        finally:
            for node in reversed(nodes):  # the sentinel first: no failover while tearing down
                node.kill()


# --------------------------------------------------------------------------- cluster

SLOTS = 16384


class PrivateCluster:
    """Three Redis Cluster masters (no replicas), slots split as redis-cli splits them."""

    def __init__(self, nodes: list[RedisProcess]) -> None:
        self.nodes = nodes
        self.ids = {node.port: node.execute("CLUSTER", "MYID") for node in nodes}

    @property
    def url(self) -> str:
        """authstore's form: ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``."""
        return "redis+cluster://" + ",".join(f"{node.host}:{node.port}" for node in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        return int(key_slot(key.encode() if isinstance(key, str) else key))

    def node(self, which: RedisProcess | int) -> RedisProcess:
        """A node by index (0..2) or itself."""
        return self.nodes[which] if isinstance(which, int) else which

    def owner_of(self, slot: int, *, asked: RedisProcess | int = 0) -> RedisProcess:
        """The master owning ``slot`` in the slot map of node ``asked``."""
        for start, end, primary, *_ in self.node(asked).execute("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(node for node in self.nodes if node.port == port)
        raise TopologyError(f"slot {slot} is not assigned")

    def migrate_slot(
        self, slot: int, to_node: RedisProcess | int, *, batch: int = 100
    ) -> RedisProcess:
        """Move ``slot`` and every key in it from its owner to ``to_node``, the way
        ``redis-cli --cluster reshard`` does (SETSLOT IMPORTING / MIGRATING, MIGRATE,
        SETSLOT NODE on every master); returns the former owner. Afterwards the former
        owner answers ``MOVED slot host:port`` for keys of that slot."""
        target = self.node(to_node)
        source = self.owner_of(slot)
        if source is target:
            raise TopologyError(f"slot {slot} is already on port {target.port}")
        source_id, target_id = self.ids[source.port], self.ids[target.port]
        target.execute("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.execute("CLUSTER", "GETKEYSINSLOT", slot, batch):
            source.execute(
                "MIGRATE", target.host, target.port, "", 0, int(ADMIN_TIMEOUT * 1000), "KEYS", *keys
            )
        # The new owner first, then the old one, then the rest (as redis-cli does).
        others = [node for node in self.nodes if node is not source and node is not target]
        for node in [target, source, *others]:
            node.execute("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in self.nodes:
            if self.owner_of(slot, asked=node) is not target:
                raise TopologyError(f"node {node.port} does not see slot {slot} moved")
        return source

    def _ok(self) -> bool:
        for node in self.nodes:
            info = node.execute("CLUSTER", "INFO")
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.nodes)}" not in info
            ):
                return False
        return True


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    size = SLOTS / count
    bounds = [round(size * index) for index in range(count + 1)]
    return [(bounds[index], bounds[index + 1] - 1) for index in range(count)]


@contextlib.contextmanager
def private_cluster(
    masters: int = 3, *, node_timeout_ms: int = 2000, timeout: float = START_TIMEOUT
) -> Iterator[PrivateCluster]:
    """A Redis Cluster of ``masters`` masters on free loopback ports (each with its own
    free bus port); ready when every node says cluster_state:ok. Killed and deleted on exit."""
    with _topology_dir("cluster") as directory:
        nodes: list[RedisProcess] = []
        try:
            for index in range(masters):
                nodes.append(
                    _start_on_free_port(
                        lambda port, index=index: RedisProcess(
                            directory / f"node{index}",
                            port,
                            ["--cluster-node-timeout", str(node_timeout_ms)],
                            bus_port=free_port(),
                            label=f"node{index}",
                        ),
                        timeout,
                    )
                )
            for epoch, (node, (first, last)) in enumerate(
                zip(nodes, _slot_ranges(masters), strict=True), start=1
            ):
                node.execute("CLUSTER", "ADDSLOTSRANGE", first, last)
                node.execute("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for node in nodes[1:]:
                nodes[0].execute("CLUSTER", "MEET", node.host, node.port, node.bus_port)
            cluster = PrivateCluster(nodes)
            _wait_for("cluster_state:ok on every node", cluster._ok, timeout, interval=0.1)
            yield cluster
        finally:
            for node in nodes:
                node.kill()
