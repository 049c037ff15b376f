"""Redis processes: the shared topologies the server command starts, and private,
throwaway ones for fault tests.

Both are ``RedisProcess`` objects built from the same command line (loopback only, in
memory, ``maxmemory-policy noeviction``: an evicted revocation or limiter would be a
security hole), formed by the same code (a cluster's slots and MEETs, a sentinel's
configuration) and checked by the same readiness predicates, asked over plain RESP
(``tests.servers.processes``) so that the server command needs no driver. The shared ones
run detached from a folder of the services home, pid files beside their logs.

A test that kills, freezes, fails over or reshards a Redis must never do it to the shared
servers: other tests, and other people, use them. These context managers start their own
``redis-server`` processes on free loopback ports, each in a temporary folder, wait until
they answer, and on exit kill them and delete the folders, whatever happened inside the
block (a frozen process too). Every wait is bounded.

- ``private_redis()``: one server; ``kill()``, ``start()``/``restart()`` on the same port,
  ``pause()``/``resume()`` (SIGSTOP/SIGCONT) or ``with node.frozen():``.
- ``private_sentinel()``: master, replica, one sentinel; ``url`` is authstore's
  ``redis+sentinel://127.0.0.1:PORT/NAME``; ``fail_over()`` stops the master and waits
  until the sentinel reports the replica promoted; ``rejoin()`` then restarts the old
  master as the new one's replica, for the next failover.
- ``private_cluster()``: 3 masters, no replicas; ``url`` is ``redis+cluster://...``;
  ``migrate_slot(slot, to_node)`` moves one slot with its keys to another master, so a
  client with a stale slot map gets ``MOVED``.

``args=`` come last, so they override the defaults (e.g. ``["--maxmemory-policy",
"allkeys-lru"]`` for an evicting server). ``execute()`` and ``client()`` are redis-py
(what tests assert on). The helpers block (a topology starts in 0.1-3 s): from async tests
call them directly or in a thread.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tests.servers.processes import RespError, RespValue, ask_redis, spawn

if TYPE_CHECKING:
    import redis

__all__ = [
    "HOST",
    "PrivateCluster",
    "PrivateSentinel",
    "RedisProcess",
    "TopologyError",
    "cluster_ready",
    "form_cluster",
    "private_cluster",
    "private_redis",
    "private_sentinel",
    "sentinel_config",
    "sentinel_ready",
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


def _transient_errors() -> tuple[type[BaseException], ...]:
    """What a poll may meet while a server starts: connection errors and error replies
    (redis-py's too, when the caller uses it)."""
    found: tuple[type[BaseException], ...] = (RespError, OSError, ValueError)
    driver = sys.modules.get("redis")
    return (*found, driver.RedisError) if driver is not None else found


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
        except _transient_errors() as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = (
                f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            )
            raise TopologyError(f"{what}: not within {timeout:.0f} s{detail}")
        time.sleep(interval)


class RedisProcess:
    """One ``redis-server`` on a fixed loopback port (or TLS port, or unix socket only),
    in its own folder; started attached (private) or detached with a pid file (shared)."""

    def __init__(
        self,
        directory: Path,
        port: int,
        args: Sequence[str] = (),
        *,
        sentinel_config: Path | None = None,
        cluster: bool = False,
        bus_port: int | None = None,
        tls_dir: Path | None = None,
        unix_socket: Path | None = None,
        label: str = "redis",
    ) -> None:
        self.directory = directory
        self.port = port
        self.host = HOST
        self.label = label
        self._args = list(args)
        self._sentinel_config = sentinel_config
        self.cluster = cluster or bus_port is not None
        self.bus_port = bus_port
        """The cluster bus port of a cluster node (None: the port + 10000)."""
        self.tls_dir = tls_dir
        """TLS only on ``port``, with ``server.crt``/``server.key``/``ca.crt`` from here."""
        self.unix_socket = unix_socket
        """The unix socket only, no TCP port."""
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.log_path = directory / f"{label}.log"
        self.pid_file = directory / f"{label}.pid"
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

    def command(self) -> list[str]:
        base = [_redis_server()]
        if self._sentinel_config is not None:
            base += [str(self._sentinel_config), "--sentinel"]
        if self.tls_dir is not None:
            base += ["--port", "0", "--tls-port", str(self.port)]
            base += ["--tls-cert-file", str(self.tls_dir / "server.crt")]
            base += ["--tls-key-file", str(self.tls_dir / "server.key")]
            base += ["--tls-ca-cert-file", str(self.tls_dir / "ca.crt")]
            base += ["--tls-auth-clients", "no"]
        elif self.unix_socket is not None:
            base += ["--port", "0", "--unixsocket", str(self.unix_socket)]
            base += ["--unixsocketperm", "777"]
        else:
            base += ["--port", str(self.port)]
        base += ["--bind", self.host, "--dir", str(self.directory)]
        base += ["--daemonize", "no", "--logfile", ""]
        if self._sentinel_config is None:
            base += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        if self.cluster:
            base += ["--cluster-enabled", "yes"]
            base += ["--cluster-config-file", f"nodes-{self.label}.conf"]
            if self.bus_port is not None:
                base += ["--cluster-port", str(self.bus_port)]
        return base + self._args

    def ask(self, *command: object, timeout: float = ADMIN_TIMEOUT) -> RespValue:
        """One command over plain RESP (no driver needed), its reply decoded."""
        return ask_redis(
            *command,
            port=self.port,
            host=self.host,
            unix_socket=self.unix_socket,
            tls_ca=None if self.tls_dir is None else self.tls_dir / "ca.crt",
            timeout=timeout,
        )

    def answers(self) -> bool:
        """PING gets PONG (over TLS: with the certificate verified)."""
        try:
            return self.ask("PING", timeout=1.0) == "PONG"
        except (RespError, OSError, ValueError):
            return False

    def spawn(self) -> int:
        """Start detached (it outlives this process), the pid in ``pid_file``; the caller
        waits for it."""
        return spawn(self.command(), self.log_path, pid_file=self.pid_file, cwd=self.directory)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on this node's port and wait until it answers PING."""
        if self.running:
            raise TopologyError(f"{self!r} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"=== starting {' '.join(self.command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command(),
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
            if self.answers():
                return
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
        import redis

        options: dict[str, Any] = {
            "socket_timeout": ADMIN_TIMEOUT,
            "socket_connect_timeout": ADMIN_TIMEOUT,
        }
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, **options)

    def execute(self, *command: Any, timeout: float = ADMIN_TIMEOUT) -> Any:
        """One command through redis-py on a short-lived connection (no retries), its
        reply decoded as redis-py decodes it (``INFO`` a dict, errors its exceptions)."""
        import redis

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

REPLICATION_ARGS = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
"""Diskless replication without its default 5 s delay: a replica syncs at once."""


def sentinel_config(name: str, master_port: int, down_after_ms: int, failover_ms: int) -> str:
    """A sentinel's configuration (quorum 1); fresh at every start, since the sentinel
    rewrites it as it learns."""
    return (
        f"sentinel monitor {name} {HOST} {master_port} 1\n"
        f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
        f"sentinel failover-timeout {name} {failover_ms}\n"
    )


def replica_linked(replica: RedisProcess) -> bool:
    """The replica's link to its master is up (it has the master's data)."""
    return "master_link_status:up" in str(replica.ask("INFO", "replication"))


def _info_int(info: object, field: str) -> int:
    """An integer field of an INFO reply."""
    for line in str(info).splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value)
    raise TopologyError(f"INFO has no {field}: {info!r}")


def sentinel_master_state(sentinel: RedisProcess, name: str) -> dict[str, str]:
    """SENTINEL MASTER ``name`` as a dict (what redis-py's Sentinel reads)."""
    reply = sentinel.ask("SENTINEL", "MASTER", name)
    if not isinstance(reply, list):
        return {}
    return {str(key): str(value) for key, value in zip(reply[::2], reply[1::2], strict=True)}


def sentinel_ready(sentinel: RedisProcess, name: str, master_port: int | None = None) -> bool:
    """The sentinel knows master ``name`` (on ``master_port`` when given), does not think
    it down and knows a replica; that master says it is one, with a replica connected."""
    state = sentinel_master_state(sentinel, name)
    if state.get("flags") != "master" or int(state.get("num-slaves", 0)) < 1:
        return False
    port = int(state.get("port", 0))
    if master_port is not None and port != master_port:
        return False
    info = str(ask_redis("INFO", "replication", host=state.get("ip", HOST), port=port))
    return "role:master" in info and "connected_slaves:0" not in info


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
        reply = self.sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (str(reply[0]), int(str(reply[1]))) if isinstance(reply, list) and reply else None

    def sync_replica(self, timeout: float = ADMIN_TIMEOUT) -> None:
        """Wait until the replica has applied every write the master took: its offset
        reaches the master's. (``WAIT 1`` cannot say it from an admin connection: it
        counts only that connection's own writes. And a replica just synced gets the
        stream only after its first acknowledgement, up to a second later, while
        already saying its link is up.)"""
        target = _info_int(self.master.ask("INFO", "replication"), "master_repl_offset")

        def caught_up() -> bool:
            info = self.replica.ask("INFO", "replication")
            return _info_int(info, "slave_repl_offset") >= target

        _wait_for("the replica to apply the master's writes", caught_up, timeout, interval=0.01)

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
            state = sentinel_master_state(self.sentinel, self.name)
            if int(state.get("port", 0)) != self.replica.port or state.get("flags") != "master":
                return False
            role = self.replica.ask("ROLE", timeout=1.0)
            return isinstance(role, list) and bool(role) and role[0] == "master"

        _wait_for(
            f"sentinel {self.name}: promotion of the replica on port {self.replica.port}",
            promoted,
            timeout,
            interval=0.1,
        )
        return self.replica

    def rejoin(self, timeout: float = FAILOVER_TIMEOUT) -> None:
        """After ``fail_over()``: start the killed master again, empty, as a replica of the
        promoted one, and swap the roles (``master`` is the promoted one, ``replica`` the
        restarted one), so that the topology can fail over again. Waits until the
        replica has every write and the sentinel sees it as a healthy replica."""
        old, promoted = self.master, self.replica
        if old.running:
            raise TopologyError(f"{old!r} still runs: fail_over() first")
        old._args = [*REPLICATION_ARGS, "--replicaof", HOST, str(promoted.port)]
        old.start(timeout)
        self.master, self.replica = promoted, old
        _wait_for("the restarted replica in sync", lambda: replica_linked(old), timeout)

        def known() -> bool:
            if not self._healthy():
                return False
            replicas = self.sentinel.ask("SENTINEL", "REPLICAS", self.name)
            for entry in replicas if isinstance(replicas, list) else ():
                state = dict(zip(entry[::2], entry[1::2], strict=True))
                if int(str(state.get("port", 0))) == old.port:
                    return str(state.get("flags")) == "slave" and state.get(
                        "master-link-status"
                    ) in ("ok", b"ok")
            return False

        _wait_for("the sentinel sees the restarted replica", known, timeout, interval=0.1)
        self.sync_replica(timeout)

    def _healthy(self) -> bool:
        return sentinel_ready(self.sentinel, self.name, self.master.port)


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
                    directory / "master", port, REPLICATION_ARGS, label="master"
                ),
                timeout,
            )
            nodes.append(master)
            replica = _start_on_free_port(
                lambda port: RedisProcess(
                    directory / "replica",
                    port,
                    [*REPLICATION_ARGS, "--replicaof", HOST, str(master.port)],
                    label="replica",
                ),
                timeout,
            )
            nodes.append(replica)
            _wait_for("replica in sync", lambda: replica_linked(replica), timeout)

            def make_sentinel(port: int) -> RedisProcess:
                folder = directory / "sentinel"
                folder.mkdir(parents=True, exist_ok=True)
                config = folder / f"sentinel-{port}.conf"
                config.write_text(
                    sentinel_config(name, master.port, down_after_ms, failover_timeout_ms)
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


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    """The slots split as ``redis-cli --cluster create`` splits them."""
    size = SLOTS / count
    bounds = [round(size * index) for index in range(count + 1)]
    return [(bounds[index], bounds[index + 1] - 1) for index in range(count)]


def form_cluster(nodes: Sequence[RedisProcess]) -> None:
    """Give each running master its share of the slots and a config epoch, and make the
    first meet the others (what ``redis-cli --cluster create`` does, without redis-cli);
    then wait for ``cluster_ready``."""
    for epoch, (node, (first, last)) in enumerate(
        zip(nodes, _slot_ranges(len(nodes)), strict=True), start=1
    ):
        node.ask("CLUSTER", "ADDSLOTSRANGE", first, last)
        node.ask("CLUSTER", "SET-CONFIG-EPOCH", epoch)
    for node in nodes[1:]:
        bus = () if node.bus_port is None else (node.bus_port,)
        nodes[0].ask("CLUSTER", "MEET", node.host, node.port, *bus)


def cluster_ready(nodes: Sequence[RedisProcess]) -> bool:
    """Every node says the cluster is formed and serving every slot."""
    for node in nodes:
        info = str(node.ask("CLUSTER", "INFO"))
        if (
            "cluster_state:ok" not in info
            or f"cluster_slots_assigned:{SLOTS}" not in info
            or f"cluster_known_nodes:{len(nodes)}" not in info
        ):
            return False
    return True


class PrivateCluster:
    """Three Redis Cluster masters (no replicas), slots split as redis-cli splits them."""

    def __init__(self, nodes: list[RedisProcess]) -> None:
        self.nodes = nodes
        self.ids = {node.port: str(node.ask("CLUSTER", "MYID")) for node in nodes}

    @property
    def url(self) -> str:
        """authstore's form: ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``."""
        return "redis+cluster://" + ",".join(f"{node.host}:{node.port}" for node in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        from redis.crc import key_slot

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
        return cluster_ready(self.nodes)


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
            form_cluster(nodes)
            cluster = PrivateCluster(nodes)
            _wait_for("cluster_state:ok on every node", cluster._ok, timeout, interval=0.1)
            yield cluster
        finally:
            for node in nodes:
                node.kill()
