"""Private servers for tests that freeze, kill or restart them (tests/test_faults.py).

Never the shared servers: each is created in a temporary folder and listens on a free
loopback port. ``freeze``/``thaw`` send SIGSTOP/SIGCONT to the server and each of its
child processes (PostgreSQL backends call setsid(), so a process group would miss
them); ``kill`` is SIGKILL to all of them, as a crash; ``start`` again recovers on the
same port and data. A server kind joins by subclassing ``PrivateServer`` and naming
itself in ``PRIVATE_SERVERS``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from tests.outages import free_port

__all__ = ["PRIVATE_SERVERS", "PostgresPair", "PrivatePostgres", "PrivateServer", "private_server"]


class PrivateServer:
    name: ClassVar[str]

    def __init__(self, root: str, port: int | None = None) -> None:
        self.root = root
        self.data = os.path.join(root, "data")
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    # --- what a kind provides ---------------------------------------------------------

    @classmethod
    def available(cls) -> str | None:
        """None when the binaries are here, else why not."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The authstore URL of the server's test database."""
        raise NotImplementedError

    def init(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def ping(self) -> None:
        """Raise unless the server answers a query."""
        raise NotImplementedError

    def process_options(self) -> dict[str, Any]:
        return {}

    # --- shared -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it answers; if it does not, the error carries the end
        of its output (server.log in ``root``)."""
        log_path = os.path.join(self.root, "server.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                **self.process_options(),
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ping()
                return
            except Exception as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    with open(log_path, "rb") as log:
                        tail = log.read()[-2000:].decode(errors="replace")
                    error.add_note(f"{self.name} on port {self.port}, its output ends:\n{tail}")
                    raise
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _children(self) -> list[int]:
        assert self.process is not None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(entry))
        return found

    def _signal(self, number: signal.Signals) -> list[int]:
        """The server first (so it starts no new child), then its children; their ids."""
        assert self.process is not None
        children = self._children()  # before the server dies and they are orphans
        os.kill(self.process.pid, number)
        children += [pid for pid in self._children() if pid not in children]
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        return children

    def freeze(self) -> None:
        """Connections stay open and acknowledged by the kernel; nothing answers."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash; returns once the server and its children are gone (a
        PostgreSQL started while a killed backend still holds the old shared memory
        refuses to start)."""
        assert self.process is not None
        children: list[int] = []
        with contextlib.suppress(ProcessLookupError):
            children = self._signal(signal.SIGKILL)
        self.process.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.thaw()
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie has let go of everything)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


class PrivatePostgres(PrivateServer):
    """``initdb`` and ``postgres`` from /usr/lib/postgresql/*/bin; PostgreSQL refuses to
    run as root, so as root it runs as the postgres user.

    Streaming replication (tests/postgres/test_failover.py): a server made with
    ``standby_of=primary`` starts as a hot standby from ``pg_basebackup -R`` of that
    primary, and connects to it as ``cluster_name`` (its application_name, which
    ``synchronous_standby_names`` on the primary can name); ``promote`` ends recovery."""

    name = "postgres"

    def __init__(
        self,
        root: str,
        port: int | None = None,
        *,
        standby_of: PrivatePostgres | None = None,
        cluster_name: str | None = None,
    ) -> None:
        super().__init__(root, port)
        self.standby_of = standby_of
        self.cluster_name = cluster_name
        bin_dir = self._bin_dir()
        assert bin_dir is not None
        self.bin_dir = bin_dir
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @staticmethod
    def _bin_dir() -> str | None:
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/postgres"),
            key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0,
        )
        if found:
            return os.path.dirname(found[-1])
        on_path = shutil.which("postgres")
        return os.path.dirname(on_path) if on_path else None

    @classmethod
    def available(cls) -> str | None:
        return None if cls._bin_dir() else "no PostgreSQL binaries (/usr/lib/postgresql/*/bin)"

    @classmethod
    def replication_available(cls) -> str | None:
        """None when a primary and its standby can be made here, else why not."""
        bin_dir = cls._bin_dir()
        if bin_dir is None:
            return cls.available()
        if not os.path.exists(os.path.join(bin_dir, "pg_basebackup")):
            return f"no pg_basebackup in {bin_dir}"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if self.standby_of is not None:
            self._base_backup(self.standby_of)
            return
        initdb = os.path.join(self.bin_dir, "initdb")
        subprocess.run(
            [initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            **self._as,
        )

    def command(self) -> list[str]:
        return [
            os.path.join(self.bin_dir, "postgres"),
            *("-D", self.data, "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}"),
            *("-c", "fsync=off", "-c", "max_connections=40"),
            # a standby retries its primary (a restarted one) after 0.2 s, not 5 s
            *("-c", "wal_retrieve_retry_interval=200ms"),
            *(("-c", f"cluster_name={self.cluster_name}") if self.cluster_name else ()),
        ]

    def process_options(self) -> dict[str, Any]:
        return self._as

    def ping(self) -> None:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as connection:
            connection.execute("SELECT 1")

    # --- replication ------------------------------------------------------------------

    def _base_backup(self, primary: PrivatePostgres) -> None:
        """``data`` becomes a copy of ``primary`` that starts as its streaming standby
        (``-R``: standby.signal and primary_conninfo); what was there is deleted."""
        shutil.rmtree(self.data, ignore_errors=True)
        subprocess.run(
            [
                os.path.join(self.bin_dir, "pg_basebackup"),
                *("-D", self.data, "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
                *("-R", "-X", "stream", "-c", "fast", "--no-sync"),
            ],
            check=True,
            capture_output=True,
            **self._as,
        )

    def rejoin_as_standby_of(self, primary: PrivatePostgres) -> None:
        """A stopped (killed) former primary, rebuilt from ``primary`` and started as its
        standby on the same port."""
        assert not self.running
        self.standby_of = primary
        self.init()
        self.start()

    def execute(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """``statement``'s rows, on a connection of its own (autocommit)."""
        import psycopg

        with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as connection:
            cursor = connection.execute(statement, args or None)
            return cursor.fetchall() if cursor.description else []

    def promote(self) -> None:
        """End recovery and become a primary (pg_promote waits until it can write)."""
        ((done,),) = self.execute("SELECT pg_promote(true, 30)")
        if not done:
            raise RuntimeError(f"the standby on port {self.port} was not promoted in 30 s")
        self.standby_of = None

    def replicate_to(
        self, standby: PrivatePostgres, *, synchronous: bool, commit: str = "on"
    ) -> None:
        """Commits wait for ``standby`` (synchronous_standby_names naming its cluster_name;
        ``commit``, synchronous_commit: ``on``, its WAL is flushed before the commit
        returns, ``remote_apply``, replayed too), or not; then wait until it streams in
        that state."""
        assert standby.cluster_name, "a synchronous standby needs a cluster_name"
        names = f'"{standby.cluster_name}"' if synchronous else ""
        self.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.execute(f"ALTER SYSTEM SET synchronous_commit = '{commit}'")
        self.execute("SELECT pg_reload_conf()")
        wanted = "sync" if synchronous else "async"
        deadline = time.monotonic() + 30
        while True:
            found = self.execute(
                "SELECT sync_state FROM pg_stat_replication "
                "WHERE application_name = %s AND state = 'streaming'",
                standby.cluster_name,
            )
            if found == [(wanted,)]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{standby.cluster_name} is not a streaming {wanted} standby")
            time.sleep(0.05)

    def require_password(self, password: str, database: str = "authstore_test") -> None:
        """From now on TCP clients must log in with ``password`` (scram-sha-256) as the
        postgres user; the unix socket in ``root`` stays trusted. Creates ``database``.
        After this ``ping()`` (no password) fails: call it before, not after."""
        import psycopg

        with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as connection:
            connection.execute(f"ALTER USER postgres PASSWORD '{password}'")
            connection.execute(f'CREATE DATABASE "{database}"')
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as rules:
                rules.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
            connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the postmaster reloads asynchronously
            try:
                self.ping()
            except psycopg.OperationalError:
                return
            time.sleep(0.05)
        raise RuntimeError("the private PostgreSQL still accepts TCP clients without password")


class PostgresPair:
    """A private PostgreSQL primary and its streaming standby, which ``fail_over`` swaps;
    ``url`` lists both, in a fixed order (tests/postgres/test_failover.py)."""

    def __init__(self) -> None:
        roots = [tempfile.mkdtemp(prefix=f"authstore-pg{n}-") for n in "ab"]
        self._roots = roots
        self.first = PrivatePostgres(roots[0], cluster_name="authstore_a")
        self.second = PrivatePostgres(roots[1], standby_of=self.first, cluster_name="authstore_b")
        self.primary, self.standby = self.first, self.second
        self.synchronous = False

    def start(self) -> None:
        self.first.init()
        self.first.start()
        self.second.init()
        self.second.start()

    def url(self, **options: object) -> str:
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in (self.first, self.second))
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"postgresql://postgres@{hosts}/postgres?{query}"

    def replicate(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.primary.replicate_to(self.standby, synchronous=synchronous)

    def fail_over(self) -> float:
        """Kill the primary and promote the standby; the moment it can write."""
        self.primary.kill()
        self.standby.promote()
        promoted = time.monotonic()
        self.primary, self.standby = self.standby, self.primary
        return promoted

    def rejoin(self) -> None:
        """The killed former primary back, as the new primary's standby."""
        self.standby.rejoin_as_standby_of(self.primary)
        self.replicate(synchronous=self.synchronous)

    def repair(self) -> None:
        """After a test that failed half-way: both servers up, one the other's standby."""
        if not self.primary.running:
            self.primary.start()
        if not self.standby.running:
            self.standby.rejoin_as_standby_of(self.primary)

    def crash_restart_primary(self) -> float:
        self.primary.kill()
        self.primary.start()
        return time.monotonic()

    def close(self) -> None:
        for server in (self.first, self.second):
            server.stop()
        for root in self._roots:
            shutil.rmtree(root, ignore_errors=True)


class PrivateMariaDB(PrivateServer):
    """``mariadb-install-db`` and ``mariadbd`` (Debian's), root without a password."""

    name = "mariadb"

    @classmethod
    def available(cls) -> str | None:
        missing = [b for b in ("mariadb-install-db", "mariadbd") if not cls._which(b)]
        return f"no {' or '.join(missing)} for a private MariaDB" if missing else None

    @staticmethod
    def _which(binary: str) -> str | None:
        return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/authstore_test"

    def init(self) -> None:
        install = self._which("mariadb-install-db")
        assert install is not None
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root" if os.geteuid() == 0 else f"--user={pwd.getpwuid(os.geteuid())[0]}",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def command(self) -> list[str]:
        server = self._which("mariadbd")
        assert server is not None
        return [
            server,
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={os.path.join(self.root, 'mysqld.sock')}",
            f"--pid-file={os.path.join(self.root, 'mysqld.pid')}",
            "--innodb-buffer-pool-size=32M",
            "--skip-log-bin",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ]

    def ping(self) -> None:
        import pymysql

        connection = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE IF NOT EXISTS authstore_test")
        finally:
            connection.close()


PRIVATE_SERVERS: dict[str, type[PrivateServer]] = {
    kind.name: kind for kind in (PrivatePostgres, PrivateMariaDB)
}


@contextlib.contextmanager
def private_server(name: str) -> Iterator[PrivateServer]:
    """A running private server of kind ``name``, stopped and deleted afterwards; check
    ``PRIVATE_SERVERS[name].available()`` first."""
    root = tempfile.mkdtemp(prefix=f"authstore-{name}-")
    server = PRIVATE_SERVERS[name](root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
