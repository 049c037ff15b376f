"""Bring the test servers up, check them, stop them: what ``python -m tests.servers`` does.

Each server is a ``Service``: ``ready`` asks it in its own protocol, ``answering`` is the
cheap check ``env`` uses, ``up`` reuses one that answers (creating the test database in it
when missing) or starts one from the services home, detached, and waits for it, ``stop``
stops only what this command started (pid files in the home; a server someone else runs
is left alone). Installing packages is not done here: ``scripts/services`` asks
``packages`` for what is missing and drives apt-get, then runs this.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.defaults import SENTINEL_SERVICE, TEST_DB, Layout
from tests.servers.processes import (
    RespError,
    ask_memcached_version,
    owned_pid,
    port_open,
    spawn,
    stop_owned,
    wait_until,
)
from tests.servers.redis_topology import (
    REPLICATION_ARGS,
    RedisProcess,
    cluster_ready,
    form_cluster,
    replica_linked,
    sentinel_config,
    sentinel_ready,
)

__all__ = ["SERVICES", "Run", "Service"]

SECANTUSDB_SPEC = "secantusdb==0.7.0b3"
"""The MongoDB wire-compatible stand-in (pure Python, from PyPI)."""


def log(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One invocation: where the servers live, how long to wait, what failed."""

    layout: Layout
    wait: float = 30.0
    failed: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.layout.home

    def fail(self, name: str, reason: str, *logs: Path) -> None:
        log(f"{name}: FAILED: {reason}")
        for path in logs:
            try:
                lines = path.read_text(errors="replace").splitlines()[-15:]
            except OSError:
                continue
            if lines:
                log(f"--- last lines of {path} ---")
                print("\n".join("    " + line for line in lines), file=sys.stderr)
        self.failed.append(name)


def _run(command: Sequence[str], timeout: float = 10.0, **options: object) -> str:
    """Run a client command; its stdout, or CalledProcessError with its stderr."""
    done = subprocess.run(
        list(command),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,  # type: ignore[call-overload]
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return str(done.stdout)


def _error(error: BaseException) -> str:
    text = getattr(error, "stderr", None) or str(error)
    return str(text).strip().splitlines()[-1] if str(text).strip() else type(error).__name__


@dataclass(frozen=True)
class Service:
    name: str
    ready: Callable[[Run], bool]
    """It answers in its own protocol (``status``)."""
    up: Callable[[Run], None]
    stop: Callable[[Run], bool]
    """True when it stopped something this command had started."""
    answering: Callable[[Run], bool] | None = None
    """The cheap check ``env`` uses (default: the port listens)."""
    packages: Callable[[Run], list[str]] = lambda run: []
    """Debian packages missing for ``up`` (scripts/services installs them); asked only
    when it does not answer, unless ``clients`` (a database's client makes the test
    database in a running server)."""
    clients: bool = False

    def missing_packages(self, run: Run) -> list[str]:
        if not self.clients and self.is_answering(run):
            return []
        return self.packages(run)

    def is_answering(self, run: Run) -> bool:
        if self.answering is not None:
            return _safely(self.answering, run)
        return port_open(run.layout.port(self.name))

    def is_ready(self, run: Run) -> bool:
        return _safely(self.ready, run)


def _safely(check: Callable[[Run], bool], run: Run) -> bool:
    try:
        return check(run)
    except (OSError, ValueError, RespError, subprocess.SubprocessError):
        return False


def _missing(*pairs: tuple[str, str]) -> list[str]:
    """The packages whose binary (name or absolute path) is not here."""
    found = []
    for binary, package in pairs:
        here = os.path.exists(binary) if binary.startswith("/") else shutil.which(binary)
        if not here and package not in found:
            found.append(package)
    return found


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    from tests.private_servers import PrivatePostgres

    found = PrivatePostgres._bin_dir()
    return Path(found) if found else None


def _psql(run: Run, sql: str) -> str:
    port = str(run.layout.port("postgres"))
    command = ["psql", "-w", "-X", "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
    command += ["-d", "postgres", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return _run(command, env={**os.environ, "PGCONNECT_TIMEOUT": "3"})


def _pg_ready(run: Run) -> bool:
    if not shutil.which("psql"):  # no client to ask with: the port must do
        return port_open(run.layout.port("postgres"))
    return _psql(run, "select 1").strip() == "1"


def _pg_trust_loopback(run: Run) -> bool:
    """A Debian cluster asks for a password over TCP: trust 127.0.0.1 and ::1 in it."""
    versions = sorted(
        (p for p in Path("/etc/postgresql").glob("*/main/pg_hba.conf")),
        key=lambda p: int(p.parts[3]) if p.parts[3].isdigit() else 0,
    )
    if not versions or not os.access(versions[-1], os.W_OK):
        return False
    hba = versions[-1]
    marker = "# added by authstore scripts/services"
    text = hba.read_text()
    if marker not in text:
        log(f"postgres: allowing trust logins from 127.0.0.1 and ::1 in {hba}")
        lines = [marker, "host all all 127.0.0.1/32 trust", "host all all ::1/128 trust"]
        hba.write_text("\n".join(lines) + "\n" + text)
    _run(["pg_ctlcluster", "--skip-systemctl-redirect", hba.parts[3], "main", "reload"])
    time.sleep(0.5)
    return True


def _pg_create_db(run: Run) -> bool:
    try:
        _pg_ready(run)
    except subprocess.CalledProcessError as error:
        text = error.stderr or ""
        if not any(w in text for w in ("authentication", "password", "pg_hba")):
            run.fail("postgres", f"cannot log in as postgres over TCP: {_error(error)}")
            return False
        try:
            _pg_trust_loopback(run)
            _pg_ready(run)
        except (OSError, subprocess.SubprocessError) as again:
            run.fail("postgres", f"cannot log in as postgres over TCP: {_error(again)}")
            return False
    query = f"select 1 from pg_database where datname = '{TEST_DB}'"
    if not _psql(run, query).strip():
        log(f"postgres: creating database {TEST_DB}")
        try:
            _psql(run, f"create database {TEST_DB} owner postgres")
        except subprocess.CalledProcessError as error:
            if not _psql(run, query).strip():  # another run may have made it meanwhile
                run.fail("postgres", f"cannot create database {TEST_DB}: {_error(error)}")
                return False
    return True


def _pg_root(run: Run) -> Path:
    """The data's folder: in the home, unless PostgreSQL (which refuses to run as root,
    so runs as the postgres user) could not reach it there (root's home is private)."""
    home = run.home / "postgres"
    reachable = all(
        (folder.stat().st_mode & 0o001) for folder in run.home.parents if folder.exists()
    ) and (not run.home.exists() or run.home.stat().st_mode & 0o001)
    if os.geteuid() != 0 or reachable or not Path("/var/lib/postgresql").is_dir():
        return home
    return Path("/var/lib/postgresql") / f"authstore-services-{run.layout.port('postgres')}"


def _up_postgres(run: Run) -> None:
    port = run.layout.port("postgres")
    if port_open(port):
        log(f"postgres: already running on {run.layout.where('postgres')}")
        _safe_create(run, _pg_create_db)
        return
    from tests.private_servers import PrivatePostgres

    if _pg_bin() is None:
        run.fail("postgres", "no PostgreSQL binaries (/usr/lib/postgresql/*/bin)")
        return
    root = _pg_root(run)
    root.mkdir(parents=True, exist_ok=True)
    server = PrivatePostgres(str(root), port=port)
    logf = run.home / "postgres.log"
    if not (root / "data" / "PG_VERSION").exists():
        log(f"postgres: initdb in {root / 'data'}")
        try:
            server.init()
        except subprocess.CalledProcessError as error:
            logf.write_bytes(error.stderr or b"")
            run.fail("postgres", "initdb failed", logf)
            return
    log(f"postgres: starting on {run.layout.where('postgres')} (data {root / 'data'})")
    command = [*server.command(), "-c", "max_connections=300"]  # 8 workers, pools
    pid = spawn(command, logf, pid_file=run.home / "postgres.pid", **server.process_options())
    why = wait_until(lambda: _pg_ready(run), run.wait, [pid])
    if why:
        run.fail("postgres", f"not answering on {run.layout.where('postgres')}: {why}", logf)
        return
    if _safe_create(run, _pg_create_db):
        log(f"postgres: running on {run.layout.where('postgres')} (pid {pid})")


def _safe_create(run: Run, create: Callable[[Run], bool]) -> bool:
    try:
        return create(run)
    except (OSError, subprocess.SubprocessError) as error:
        name = "postgres" if create is _pg_create_db else "mariadb"
        run.fail(name, f"cannot create database {TEST_DB}: {_error(error)}")
        return False


def _pg_packages(run: Run) -> list[str]:
    if port_open(run.layout.port("postgres")):
        return _missing(("psql", "postgresql-client"))
    return [] if _pg_bin() and shutil.which("psql") else ["postgresql"]


# --------------------------------------------------------------------------- MariaDB


def _mariadb_client() -> str:
    return shutil.which("mariadb") or shutil.which("mysql") or "mariadb"


def _maria(run: Run, sql: str, *extra: str) -> str:
    port = str(run.layout.port("mariadb"))
    command = [_mariadb_client(), "--no-defaults", "--connect-timeout=3", "-h", "127.0.0.1"]
    return _run([*command, "-P", port, "-uroot", *extra, "-e", sql])


def _maria_ready(run: Run) -> bool:
    if not (shutil.which("mariadb") or shutil.which("mysql")):  # the port must do
        return port_open(run.layout.port("mariadb"))
    _maria(run, "select 1")
    return True


def _maria_create_db(run: Run) -> bool:
    try:
        _maria(run, "select 1")
    except subprocess.CalledProcessError as error:
        if "Access denied" not in (error.stderr or ""):
            run.fail("mariadb", f"cannot log in as root over TCP: {_error(error)}")
            return False
        # A fresh Debian install lets root in through the unix socket only.
        log("mariadb: allowing root with an empty password over TCP")
        grants = "".join(
            f"CREATE USER IF NOT EXISTS 'root'@'{host}' IDENTIFIED BY ''; "
            f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION; "
            for host in ("127.0.0.1", "::1")
        )
        try:
            alter = (
                "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR "
                "mysql_native_password USING PASSWORD(''); "
            )
            _run([_mariadb_client(), "-uroot", "-e", alter + grants + "FLUSH PRIVILEGES;"])
            _maria(run, "select 1")
        except (OSError, subprocess.SubprocessError) as again:
            run.fail("mariadb", f"cannot log in as root over TCP: {_error(again)}")
            return False
    if not _maria(run, f"show databases like '{TEST_DB}'", "-N", "-B").strip():
        log(f"mariadb: creating database {TEST_DB}")
        _maria(run, f"create database if not exists {TEST_DB}")
    return True


def _up_mariadb(run: Run) -> None:
    port = run.layout.port("mariadb")
    if port_open(port):
        log(f"mariadb: already running on {run.layout.where('mariadb')}")
        _safe_create(run, _maria_create_db)
        return
    from tests.private_servers import PrivateMariaDB

    if PrivateMariaDB.available():
        run.fail("mariadb", str(PrivateMariaDB.available()))
        return
    root = run.home / "mariadb"
    root.mkdir(parents=True, exist_ok=True)
    server = PrivateMariaDB(str(root), port=port)
    logf = run.home / "mariadb.log"
    if not (root / "data" / "mysql").is_dir():
        log(f"mariadb: mariadb-install-db in {root / 'data'}")
        try:
            server.init()
        except subprocess.CalledProcessError as error:
            logf.write_bytes(error.stdout + error.stderr)
            run.fail("mariadb", "mariadb-install-db failed", logf)
            return
    log(f"mariadb: starting on {run.layout.where('mariadb')} (data {root / 'data'})")
    command = [*server.command(), "--max-connections=300"]
    pid = spawn(command, logf, pid_file=run.home / "mariadb.pid")
    why = wait_until(lambda: _maria_ready(run), run.wait, [pid])
    if why:
        run.fail("mariadb", f"not answering on {run.layout.where('mariadb')}: {why}", logf)
        return
    if _safe_create(run, _maria_create_db):
        log(f"mariadb: running on {run.layout.where('mariadb')} (pid {pid})")


def _maria_packages(run: Run) -> list[str]:
    client = ("mariadb", "mariadb-client")
    if port_open(run.layout.port("mariadb")):
        return [] if shutil.which("mysql") else _missing(client)
    return _missing(("/usr/sbin/mariadbd", "mariadb-server"), client)


# --------------------------------------------------------------------------- Redis


def _redis(run: Run) -> RedisProcess:
    return RedisProcess(run.home / "redis", run.layout.port("redis"), label="redis")


def _cluster(run: Run) -> list[RedisProcess]:
    folder = run.home / "redis-cluster"
    timeout = ["--cluster-node-timeout", "5000"]
    return [
        RedisProcess(folder, port, timeout, cluster=True, label=str(port))
        for port in run.layout.cluster_ports
    ]


def _sentinel(run: Run) -> tuple[RedisProcess, RedisProcess, RedisProcess]:
    folder = run.home / "redis-sentinel"
    master_port = run.layout.port("redis-sentinel-master")
    master = RedisProcess(folder, master_port, REPLICATION_ARGS, label="master")
    replica = RedisProcess(
        folder,
        run.layout.port("redis-sentinel-replica"),
        [*REPLICATION_ARGS, "--replicaof", master.host, str(master_port)],
        label="replica",
    )
    sentinel = RedisProcess(
        folder,
        run.layout.port("redis-sentinel"),
        sentinel_config=folder / "sentinel.conf",
        label="sentinel",
    )
    return master, replica, sentinel


def _tls(run: Run) -> RedisProcess:
    return RedisProcess(
        run.home / "redis-tls",
        run.layout.port("redis-tls"),
        tls_dir=run.layout.tls_dir,
        label="redis",
    )


def _unix(run: Run) -> RedisProcess:
    return RedisProcess(
        run.home / "redis-unix", 0, unix_socket=run.layout.redis_socket, label="redis"
    )


def _redis_packages(run: Run) -> list[str]:
    return _missing(("redis-server", "redis-server"))


def _start_nodes(run: Run, name: str, nodes: Sequence[RedisProcess]) -> bool:
    """Spawn each node and wait until it answers PING; fails ``name`` otherwise."""
    for node in nodes:
        pid = node.spawn()
        why = wait_until(node.answers, run.wait, [pid])
        if why:
            run.fail(
                name, f"{node.label} not answering PING on port {node.port}: {why}", node.log_path
            )
            return False
    return True


def _reuse_or_reset(
    run: Run, name: str, nodes: Sequence[RedisProcess], ready: Callable[[Run], bool]
) -> bool | None:
    """True: healthy, reuse it (after up to 5 s when every node answers: one still forming).
    None: start it afresh (this command's own unhealthy nodes stopped first). False:
    something this command did not start answers there, but not as a healthy ``name``."""
    every = all(node.answers() for node in nodes)
    if _safely(ready, run) or (every and not wait_until(lambda: ready(run), 5)):
        log(f"{name}: already running on {run.layout.where(name)}")
        return True
    if any(owned_pid(node.pid_file, "redis-server") for node in nodes):
        log(f"{name}: running but not healthy: restarting it")
        stop_owned([node.pid_file for node in nodes], "redis-server")
    elif any(node.answers() or port_open(node.port) for node in nodes if node.port):
        run.fail(
            name,
            f"something answers on {run.layout.where(name)} but it is not a "
            f"healthy {name} and this command did not start it",
        )
        return False
    return None


def _up_redis(run: Run) -> None:
    node = _redis(run)
    if port_open(node.port):
        log(f"redis: already running on {run.layout.where('redis')}")
        return
    log("redis: starting redis-server")
    if _start_nodes(run, "redis", [node]):
        log(f"redis: running on {run.layout.where('redis')}")


def _up_cluster(run: Run) -> None:
    nodes = _cluster(run)
    if _reuse_or_reset(run, "redis-cluster", nodes, _cluster_ready) is not None:
        return
    for stale in (run.home / "redis-cluster").glob("nodes-*.conf"):
        stale.unlink()
    log(f"redis-cluster: starting 3 masters on {run.layout.where('redis-cluster')}")
    if not _start_nodes(run, "redis-cluster", nodes):
        return
    try:
        form_cluster(nodes)
    except (OSError, RespError) as error:
        run.fail(
            "redis-cluster",
            f"forming the cluster failed: {error}",
            *(node.log_path for node in nodes),
        )
        return
    why = wait_until(lambda: cluster_ready(nodes), run.wait)
    if why:
        run.fail(
            "redis-cluster",
            f"CLUSTER INFO does not say cluster_state:ok on every node: {why}",
            *(node.log_path for node in nodes),
        )
        return
    log(f"redis-cluster: running on {run.layout.where('redis-cluster')}")


def _cluster_ready(run: Run) -> bool:
    return cluster_ready(_cluster(run))


def _sentinel_ready(run: Run) -> bool:
    return sentinel_ready(_sentinel(run)[2], SENTINEL_SERVICE)


def _up_sentinel(run: Run) -> None:
    master, replica, sentinel = nodes = _sentinel(run)
    if _reuse_or_reset(run, "redis-sentinel", nodes, _sentinel_ready) is not None:
        return
    log(
        f"redis-sentinel: starting master :{master.port}, replica :{replica.port}, "
        f"sentinel :{sentinel.port}"
    )
    if not _start_nodes(run, "redis-sentinel", [master, replica]):
        return
    why = wait_until(lambda: replica_linked(replica), run.wait)
    if why:
        run.fail(
            "redis-sentinel",
            f"replica :{replica.port} not in sync with the master: {why}",
            replica.log_path,
            master.log_path,
        )
        return
    config = sentinel.directory / "sentinel.conf"
    config.write_text(sentinel_config(SENTINEL_SERVICE, master.port, 1000, 5000))
    if not _start_nodes(run, "redis-sentinel", [sentinel]):
        return
    why = wait_until(lambda: _sentinel_ready(run), run.wait)
    if why:
        run.fail(
            "redis-sentinel",
            f"the sentinel does not report master {SENTINEL_SERVICE} with its replica: {why}",
            *(node.log_path for node in nodes),
        )
        return
    log(f"redis-sentinel: running on {run.layout.where('redis-sentinel')}")


def _tls_files_ok(run: Run) -> bool:
    """A CA and a server certificate it signed, valid for at least one more day."""
    folder = run.layout.tls_dir
    if not all((folder / f).is_file() for f in ("ca.crt", "server.crt", "server.key")):
        return False
    try:
        _run(["openssl", "verify", "-CAfile", str(folder / "ca.crt"), str(folder / "server.crt")])
        _run(["openssl", "x509", "-checkend", "86400", "-noout", "-in", str(folder / "server.crt")])
    except (OSError, subprocess.SubprocessError):
        return False
    return True


OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = authstore test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def _make_tls_files(run: Run) -> bool:
    """A CA and a server certificate for 127.0.0.1 and localhost, both EC P-256, valid
    ten years; made in a new folder that replaces the old one only when complete."""
    final = run.layout.tls_dir
    folder = final.with_name(final.name + ".new")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    (folder / "openssl.cnf").write_text(OPENSSL_CONFIG)
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    serial = "0x" + os.urandom(16).hex()
    steps = [
        f"openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 3650 -config openssl.cnf"
        " -extensions ca -subj '/CN=authstore test CA'",
        f"openssl req -new {ec} -keyout server.key -out server.csr -config openssl.cnf"
        " -subj /CN=127.0.0.1",
        f"openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial {serial}"
        " -days 3650 -extfile openssl.cnf -extensions server -out server.crt",
    ]
    logf = run.home / "redis-tls" / "openssl.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        for step in steps:
            done = subprocess.run(shlex.split(step), cwd=folder, capture_output=True, check=False)
            with logf.open("ab") as out:
                out.write(done.stdout + done.stderr)
            if done.returncode != 0:
                return False
    finally:
        os.umask(old_umask)
    for public in ("ca.crt", "server.crt"):
        (folder / public).chmod(0o644)
    shutil.rmtree(final, ignore_errors=True)
    folder.rename(final)
    return _tls_files_ok(run)


def _tls_ready(run: Run) -> bool:
    return (run.layout.tls_dir / "ca.crt").is_file() and _tls(run).answers()


def _up_tls(run: Run) -> None:
    node = _tls(run)
    if _reuse_or_reset(run, "redis-tls", [node], _tls_ready) is not None:
        return
    if not _tls_files_ok(run):
        log(f"redis-tls: making a CA and a server certificate in {run.layout.tls_dir}")
        if not _make_tls_files(run):
            run.fail(
                "redis-tls",
                "openssl could not make the certificates",
                run.home / "redis-tls" / "openssl.log",
            )
            return
    log(f"redis-tls: starting redis-server, TLS only, on {run.layout.where('redis-tls')}")
    if _start_nodes(run, "redis-tls", [node]):
        log(f"redis-tls: running on {run.layout.where('redis-tls')}")


def _unix_ready(run: Run) -> bool:
    return run.layout.redis_socket.is_socket() and _unix(run).answers()


def _up_unix(run: Run) -> None:
    node = _unix(run)
    if _reuse_or_reset(run, "redis-unix", [node], _unix_ready) is not None:
        return
    socket_path = str(run.layout.redis_socket)
    if len(socket_path) > 100:  # sun_path holds 107 bytes
        run.fail(
            "redis-unix",
            f"socket path too long for a unix socket ({len(socket_path)} "
            f"bytes): {socket_path}; set a shorter AUTHSTORE_SERVICES_HOME",
        )
        return
    log(f"redis-unix: starting redis-server on {socket_path} only")
    if _start_nodes(run, "redis-unix", [node]):
        log(f"redis-unix: running on {socket_path}")


def _stop_redis(nodes: Callable[[Run], Sequence[RedisProcess]]) -> Callable[[Run], bool]:
    def stop(run: Run) -> bool:
        return bool(stop_owned([node.pid_file for node in nodes(run)], "redis-server"))

    return stop


# --------------------------------------------------------------------------- memcached


def _memcached_ready_on(port: int) -> bool:
    return ask_memcached_version(port).startswith("VERSION")


def _up_memcached_on(run: Run, name: str, port: int) -> None:
    if port_open(port):
        if wait_until(lambda: _memcached_ready_on(port), 5):
            run.fail(
                name, f"something listens on 127.0.0.1:{port} but does not answer as memcached"
            )
        else:
            log(f"{name}: already running on 127.0.0.1:{port}")
        return
    log(f"{name}: starting memcached on 127.0.0.1:{port}")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    logf = run.home / f"{name}.log"
    command = ["memcached", *user, "-l", "127.0.0.1", "-p", str(port)]
    pid = spawn(command, logf, pid_file=run.home / f"{name}.pid")
    why = wait_until(lambda: _memcached_ready_on(port), run.wait, [pid])
    if why:
        run.fail(name, f"not answering on 127.0.0.1:{port}: {why}", logf)
        return
    log(f"{name}: running on 127.0.0.1:{port} (pid {pid})")


def _up_memcached_multi(run: Run) -> None:
    first = run.layout.port("memcached")
    if not _safely(lambda run: _memcached_ready_on(first), run):  # the URL names both
        _up_memcached_on(run, "memcached", first)
        if "memcached" in run.failed:
            run.fail("memcached-multi", f"the first memcached (127.0.0.1:{first}) does not answer")
            return
    _up_memcached_on(run, "memcached-multi", run.layout.port("memcached-multi"))


def _stop_pidfile(name: str, word: str) -> Callable[[Run], bool]:
    def stop(run: Run) -> bool:
        sig = signal.SIGINT if name == "postgres" else signal.SIGTERM  # fast shutdown
        return bool(stop_owned([run.home / f"{name}.pid"], word, sig=sig))

    return stop


# --------------------------------------------------------------------------- MongoDB


def _venv(run: Run) -> Path:
    return run.home / "venv"


def _secantusdb_spec() -> str:
    return os.environ.get("AUTHSTORE_SECANTUSDB_SPEC") or SECANTUSDB_SPEC


def _venv_ok(run: Run) -> bool:
    venv = _venv(run)
    spec_file = venv / ".authstore-spec"
    if not (venv / "bin" / "secantusd-py").exists() or not spec_file.exists():
        return False
    if spec_file.read_text().strip() != _secantusdb_spec():
        return False
    try:
        _run([str(venv / "bin" / "python"), "-c", "import secantus, pymongo"], timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _venv_python() -> str | None:
    """A python (>= 3.10) with venv and ensurepip, to make the stand-in's virtualenv."""
    for candidate in (os.environ.get("AUTHSTORE_SERVICES_PYTHON"), "python3", "/usr/bin/python3"):
        if not candidate or not shutil.which(candidate):
            continue
        check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))"
        try:
            _run([candidate, "-c", check])
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


def _ensure_venv(run: Run) -> bool:
    if _venv_ok(run):
        return True
    spec, venv = _secantusdb_spec(), _venv(run)
    log(f"mongodb: installing {spec} with pip into {venv}")
    python = _venv_python()
    if python is None:
        log("mongodb: no python3 (>= 3.10) with venv and ensurepip")
        return False
    shutil.rmtree(venv, ignore_errors=True)
    logf = run.home / "pip.log"
    with logf.open("ab") as out:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        for step in (
            [python, "-m", "venv", str(venv)],
            [*pip, "--disable-pip-version-check", spec],
        ):
            if subprocess.run(step, stdout=out, stderr=out, check=False).returncode != 0:
                return False
    (venv / ".authstore-spec").write_text(spec + "\n")
    return _venv_ok(run)


PING_MONGODB = """
import sys
import pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=int(float(sys.argv[2]) * 1000))
client.admin.command("ping")
"""


def _mongodb_ping(run: Run, seconds: float = 3.0) -> None:
    python, url = str(_venv(run) / "bin" / "python"), run.layout.url("mongodb")
    _run([python, "-c", PING_MONGODB, url, str(seconds)], timeout=seconds + 30)


def _mongodb_ready(run: Run) -> bool:
    if not port_open(run.layout.port("mongodb")):
        return False
    if (_venv(run) / "bin" / "python").exists():  # else no pymongo to ask with
        _mongodb_ping(run)
    return True


def _up_mongodb(run: Run) -> None:
    port = run.layout.port("mongodb")
    started = time.monotonic()
    if port_open(port):
        log(f"mongodb: already running on {run.layout.where('mongodb')}")
        return
    if not _ensure_venv(run):
        run.fail(
            "mongodb",
            f"could not install {_secantusdb_spec()} into {_venv(run)}",
            run.home / "pip.log",
        )
        return
    # A fresh, empty server at every start: ':memory:' (a temporary folder removed at
    # shutdown) when this secantusdb has it, else a wiped folder. TMPDIR keeps those
    # temporary folders here, so a killed server's leftovers are removed here next time.
    temporary, data = run.home / "mongodb-tmp", run.home / "mongodb-data"
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    temporary.mkdir(parents=True)
    binary = str(_venv(run) / "bin" / "secantusd-py")
    try:
        memory = ":memory:" in _run([binary, "--help"], timeout=60)
    except (OSError, subprocess.SubprocessError):
        memory = False
    storage = ":memory:" if memory else str(data)
    if not memory:
        data.mkdir()
    config = run.home / "secantusd.toml"
    config.write_text("")  # turns off secantusd.toml discovery (./, ~/.secantus, /etc)
    logf = run.home / "mongodb.log"
    if logf.exists():
        logf.replace(logf.with_suffix(".log.1"))
    log(f"mongodb: starting secantusd-py (storage {storage}, log {logf})")
    command = [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", storage]
    temporary_env = {**os.environ, "TMPDIR": str(temporary)}
    pid = spawn(command, logf, pid_file=run.home / "mongodb.pid", cwd=run.home, env=temporary_env)
    why = wait_until(lambda: port_open(port), run.wait, [pid])
    if why:
        run.fail("mongodb", f"not listening on {run.layout.where('mongodb')}: {why}", logf)
        return
    left = max(5.0, run.wait - (time.monotonic() - started))
    try:
        _mongodb_ping(run, left)
    except (OSError, subprocess.SubprocessError) as error:
        run.fail("mongodb", f"no answer to ping: {_error(error)}", logf)
        return
    log(f"mongodb: running on {run.layout.where('mongodb')} (pid {pid}, secantusdb)")


def _stop_mongodb(run: Run) -> bool:
    stopped = _stop_pidfile("mongodb", "secantusd-py")(run)
    if stopped:
        shutil.rmtree(run.home / "mongodb-tmp", ignore_errors=True)
        shutil.rmtree(run.home / "mongodb-data", ignore_errors=True)
    return stopped


def _mongodb_packages(run: Run) -> list[str]:
    return [] if _venv_python() else ["python3", "python3-venv"]


# --------------------------------------------------------------------------- registry


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Service(
            "postgres",
            _pg_ready,
            _up_postgres,
            _stop_pidfile("postgres", "postgres"),
            packages=_pg_packages,
            clients=True,
        ),
        Service(
            "mariadb",
            _maria_ready,
            _up_mariadb,
            _stop_pidfile("mariadb", "mariadbd"),
            packages=_maria_packages,
            clients=True,
        ),
        Service(
            "redis",
            lambda run: _redis(run).answers(),
            _up_redis,
            _stop_redis(lambda run: [_redis(run)]),
            packages=_redis_packages,
        ),
        Service(
            "memcached",
            lambda run: _memcached_ready_on(run.layout.port("memcached")),
            lambda run: _up_memcached_on(run, "memcached", run.layout.port("memcached")),
            _stop_pidfile("memcached", "memcached"),
            packages=lambda run: _missing(("memcached", "memcached")),
        ),
        Service("mongodb", _mongodb_ready, _up_mongodb, _stop_mongodb, packages=_mongodb_packages),
        Service(
            "redis-cluster",
            _cluster_ready,
            _up_cluster,
            _stop_redis(_cluster),
            answering=_cluster_ready,
            packages=_redis_packages,
        ),
        Service(
            "redis-sentinel",
            _sentinel_ready,
            _up_sentinel,
            _stop_redis(_sentinel),
            answering=_sentinel_ready,
            packages=_redis_packages,
        ),
        Service(
            "redis-tls",
            _tls_ready,
            _up_tls,
            _stop_redis(lambda run: [_tls(run)]),
            answering=_tls_ready,
            packages=lambda run: _redis_packages(run) + _missing(("openssl", "openssl")),
        ),
        Service(
            "redis-unix",
            _unix_ready,
            _up_unix,
            _stop_redis(lambda run: [_unix(run)]),
            answering=_unix_ready,
            packages=_redis_packages,
        ),
        Service(
            "memcached-multi",
            lambda run: _memcached_ready_on(run.layout.port("memcached-multi")),
            _up_memcached_multi,
            _stop_pidfile("memcached-multi", "memcached"),
            packages=lambda run: _missing(("memcached", "memcached")),
        ),
    )
}
