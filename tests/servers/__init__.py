"""The test servers: where backend tests get them, and (``python -m tests.servers``, or
``scripts/services`` which installs packages first) how they are started.

For each server the tests use, in order:
1. the environment variable ``AUTHSTORE_TEST_<NAME>_URL`` (``scripts/services env``
   prints them for the servers it started), checked with a protocol-level ping;
2. the server ``scripts/services up`` starts, at its address in ``defaults.py``, when
   it answers that ping;
3. a throwaway container through testcontainers, where a Docker engine answers;
4. otherwise the server is unavailable: its tests skip with the reason, and fail
   under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1`` (what CI and scripts/test use).

No mock ever stands in for a server. The modules: ``defaults`` (every address),
``services`` and ``__main__`` (the command), ``redis_topology`` (Redis processes, shared
and private), ``processes`` (detached processes and wire-level checks).
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.defaults import NAMES, default_url

__all__ = ["SERVERS", "Server", "ServerPool", "Unavailable", "ping_docker"]

PROBE_TIMEOUT = 3.0
CONTAINER_READY_TIMEOUT = 60.0


DOCKER_SOCKET = "/var/run/docker.sock"
"""Where docker-py looks for the engine when DOCKER_HOST is not set."""


def ping_docker() -> None:
    """Returns when a Docker engine answers; raises what stopped it otherwise."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists(DOCKER_SOCKET):
        raise FileNotFoundError(DOCKER_SOCKET)  # docker-py would leak its socket
    docker = importlib.import_module("docker")
    engine = docker.from_env(version="1.41")  # no version request in the constructor
    try:
        engine.ping()
    finally:
        engine.close()  # its socket: an unclosed one is a ResourceWarning (an error)


class Unavailable(Exception):
    """The server cannot be had here; the message says why and how to get it."""


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _host_ports(url: str, default_port: int) -> list[tuple[str, int]]:
    """``scheme://h1:p1,h2:p2/...`` -> [(h1, p1), (h2, p2)] (urlsplit takes one host only)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    found = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, ""
        found.append((host.strip("[]") or "127.0.0.1", int(port) if port else default_port))
    return found


def _query(url: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}


def _probe_postgres(url: str) -> None:
    psycopg = importlib.import_module("psycopg")
    with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT), autocommit=True) as connection:
        connection.execute("SELECT 1")


def _probe_mysql(url: str) -> None:
    pymysql = importlib.import_module("pymysql")
    parts = urlsplit(url)
    connection = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        connect_timeout=PROBE_TIMEOUT,
    )
    try:
        connection.ping(reconnect=False)
    finally:
        connection.close()


def _probe_redis(url: str) -> None:
    redis = importlib.import_module("redis")
    client = redis.Redis.from_url(
        url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def _probe_memcached(url: str) -> None:
    """Every server in ``memcached://h1:p1[,h2:p2...]`` answers ``version``."""
    base = importlib.import_module("pymemcache.client.base")
    for address in _host_ports(url, 11211):
        client = base.Client(address, connect_timeout=PROBE_TIMEOUT, timeout=PROBE_TIMEOUT)
        try:
            client.version()
        finally:
            client.close()


_REDIS_TIMEOUTS = {"socket_timeout": PROBE_TIMEOUT, "socket_connect_timeout": PROBE_TIMEOUT}


def _probe_redis_cluster(url: str) -> None:
    """Every node answers PING and says cluster_state:ok (a cluster still forming is not up)."""
    cluster = importlib.import_module("redis.cluster")
    client = cluster.RedisCluster(
        startup_nodes=[cluster.ClusterNode(host, port) for host, port in _host_ports(url, 6379)],
        **_REDIS_TIMEOUTS,
    )
    try:
        client.ping(target_nodes=cluster.RedisCluster.ALL_NODES)
        for node in client.get_nodes():
            state = client.cluster_info(target_nodes=node).get("cluster_state")
            if state != "ok":
                raise ConnectionError(f"cluster node {node.name}: cluster_state:{state}")
    finally:
        client.close()


def _probe_redis_sentinel(url: str) -> None:
    """The sentinels name a master for the service, and that master answers PING."""
    sentinel = importlib.import_module("redis.sentinel")
    service = urlsplit(url).path.strip("/")
    sentinels = sentinel.Sentinel(
        _host_ports(url, 26379), sentinel_kwargs=dict(_REDIS_TIMEOUTS), **_REDIS_TIMEOUTS
    )
    master = sentinels.master_for(service, db=int(_query(url).get("db", 0)))
    try:
        master.ping()
    finally:
        master.close()
        for client in sentinels.sentinels:
            client.close()


def _probe_redis_tls(url: str) -> None:
    """A PING over TLS that verifies the server certificate and host name against the
    CA file named in the URL (``?ssl_ca_certs=``)."""
    redis = importlib.import_module("redis")
    query = _query(url)
    host, port = _host_port(url, 6379)
    client = redis.Redis(
        host=host,
        port=port,
        db=int(urlsplit(url).path.strip("/") or 0),
        ssl=True,
        ssl_ca_certs=query.get("ssl_ca_certs"),
        ssl_certfile=query.get("ssl_certfile"),
        ssl_keyfile=query.get("ssl_keyfile"),
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        **_REDIS_TIMEOUTS,
    )
    try:
        client.ping()
    finally:
        client.close()


def _probe_redis_unix(url: str) -> None:
    """``redis+unix:///abs/path.sock?db=N``: a PING through the socket."""
    redis = importlib.import_module("redis")
    client = redis.Redis(
        unix_socket_path=urlsplit(url).path,
        db=int(_query(url).get("db", 0)),
        **_REDIS_TIMEOUTS,
    )
    try:
        client.ping()
    finally:
        client.close()


def _probe_mongodb(url: str) -> None:
    pymongo = importlib.import_module("pymongo")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=int(PROBE_TIMEOUT * 1000))
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _container(module: str, name: str) -> Any:
    """testcontainers moved its modules under ``community``; accept both layouts."""
    for prefix in ("testcontainers.community.", "testcontainers."):
        try:
            return getattr(importlib.import_module(prefix + module), name)
        except (ImportError, AttributeError):
            continue
    raise Unavailable(f"testcontainers has no {module}.{name}")


def _start_postgres(image: str) -> tuple[Any, str]:
    container = _container("postgres", "PostgresContainer")(image, driver=None).start()
    return container, container.get_connection_url()


def _start_mysql(image: str) -> tuple[Any, str]:
    container = _container("mysql", "MySqlContainer")(image).start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(3306)
    return container, (
        f"mysql://{container.username}:{container.password}@{host}:{port}/{container.dbname}"
    )


def _start_generic(port: int, scheme: str, suffix: str = "") -> Callable[[str], tuple[Any, str]]:
    def start(image: str) -> tuple[Any, str]:
        container = _container("core.container", "DockerContainer")(image).with_exposed_ports(port)
        container.start()
        host, mapped = container.get_container_host_ip(), container.get_exposed_port(port)
        return container, f"{scheme}://{host}:{mapped}{suffix}"

    return start


class _Containers:
    """Several containers that stop together (one ServerPool entry)."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def stop(self) -> None:
        for container in reversed(self.started):
            container.stop()


def _start_memcached_multi(image: str) -> tuple[Any, str]:
    group = _Containers()
    addresses = []
    try:
        for _ in range(2):
            container = _container("core.container", "DockerContainer")(image)
            container.with_exposed_ports(11211).start()
            group.started.append(container)
            host = container.get_container_host_ip()
            addresses.append(f"{host}:{container.get_exposed_port(11211)}")
    except BaseException:
        group.stop()
        raise
    return group, "memcached://" + ",".join(addresses)


@dataclass(frozen=True)
class Server:
    name: str
    image: str
    probe: Callable[[str], None]
    start: Callable[[str], tuple[Any, str]] | None
    """None: no container recipe (a Redis Cluster, Sentinel, TLS or unix-socket setup is
    not a one-image container): only ``scripts/services`` or the variable provides it."""
    optional: bool = False
    """Tested where it can be had, never required: MySQL 8 has no Debian package, so it
    runs where a Docker engine (or AUTHSTORE_TEST_MYSQL_URL) provides it; MariaDB
    stands for the MySQL family everywhere else."""

    @property
    def env(self) -> str:
        return f"AUTHSTORE_TEST_{self.name.upper()}_URL"

    @property
    def service(self) -> str:
        """Its NAME for ``scripts/services up NAME``."""
        return self.name.replace("_", "-")


SERVERS = {
    server.name: server
    for server in (
        Server("postgres", "postgres:16-alpine", _probe_postgres, _start_postgres),
        Server("mariadb", "mariadb:11", _probe_mysql, _start_mysql),
        Server("mysql", "mysql:8.4", _probe_mysql, _start_mysql, optional=True),
        Server("redis", "redis:7-alpine", _probe_redis, _start_generic(6379, "redis", "/0")),
        Server(
            "memcached",
            "memcached:1.6-alpine",
            _probe_memcached,
            _start_generic(11211, "memcached"),
        ),
        Server(
            "mongodb",
            "mongo:7",
            _probe_mongodb,
            _start_generic(27017, "mongodb", "/authstore_test"),
        ),
        Server("redis_cluster", "", _probe_redis_cluster, None),
        Server("redis_sentinel", "", _probe_redis_sentinel, None),
        Server("redis_tls", "", _probe_redis_tls, None),
        Server("redis_unix", "", _probe_redis_unix, None),
        Server(
            "memcached_multi",
            "memcached:1.6-alpine",
            _probe_memcached,
            _start_memcached_multi,
        ),
    )
}


class ServerPool:
    """Resolves each server once per test session and stops the containers it started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, str | Unavailable] = {}
        self._containers: list[Any] = []

    def url(self, name: str) -> str:
        with self._lock:
            if name not in self._urls:
                try:
                    self._urls[name] = self._resolve(SERVERS[name])
                except Unavailable as reason:
                    self._urls[name] = reason
            found = self._urls[name]
        if isinstance(found, Unavailable):
            raise found
        return found

    def _resolve(self, server: Server) -> str:
        configured = os.environ.get(server.env)
        if configured:
            try:
                server.probe(configured)
            except Exception as error:
                raise Unavailable(
                    f"{server.name}: {server.env} is set but the server does not answer "
                    f"({type(error).__name__}: {_first_line(error)}); start it with "
                    f"`scripts/services up {server.service}`"
                ) from None
            return configured
        if server.service in NAMES:
            try:
                server.probe(default_url(server.service))
                return default_url(server.service)
            except Exception:  # not running there: a container, or the reason below
                pass
        if server.start is None:
            raise Unavailable(
                f"{server.name}: {server.env} is not set and there is no container recipe "
                f'for it; run `eval "$(scripts/services up {server.service})"`'
            )
        try:
            ping_docker()
        except Exception as error:
            how = (
                f"set {server.env} or start Docker"
                if server.optional  # scripts/services does not start the optional ones
                else f'run `eval "$(scripts/services up {server.service})"` or start Docker'
            )
            raise Unavailable(
                f"{server.name}: {server.env} is not set and no Docker engine answers "
                f"({type(error).__name__}); {how}"
            ) from None
        try:
            container, url = server.start(server.image)
        except Exception as error:
            raise Unavailable(
                f"{server.name}: could not start {server.image} with testcontainers "
                f"({type(error).__name__}: {_first_line(error)})"
            ) from None
        self._containers.append(container)
        deadline = time.monotonic() + CONTAINER_READY_TIMEOUT
        while True:
            try:
                server.probe(url)
                return url
            except Exception as error:
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{server.name}: the {server.image} container did not answer within "
                        f"{CONTAINER_READY_TIMEOUT:.0f} s ({type(error).__name__})"
                    ) from None
                time.sleep(0.5)

    def close(self) -> None:
        for container in self._containers:
            try:
                container.stop()
            except Exception as error:  # a container that will not stop must not hide results
                print(f"servers: could not stop a container: {error}")
        self._containers.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
