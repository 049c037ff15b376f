"""Where the test servers listen: the one place that holds their ports and URLs.

``python -m tests.servers`` starts servers on these addresses, the tests fall back to
them when ``AUTHSTORE_TEST_<NAME>_URL`` is unset, the benchmarks import them, tox and the
docs point here. Standard library only: the server command runs under any python3.

Two settings move every address at once (a second set of servers beside the shared one):
``AUTHSTORE_SERVICES_HOME`` (state folder, default ``~/.cache/authstore-services``; the
TLS CA file and the unix socket live in it) and ``AUTHSTORE_SERVICES_PORT_OFFSET``
(added to every TCP port, default 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLUSTER_PORTS",
    "HOST",
    "NAMES",
    "PORTS",
    "SENTINEL_SERVICE",
    "TEST_DB",
    "Layout",
    "default_url",
    "env_var",
]

HOST = "127.0.0.1"
TEST_DB = "authstore_test"
SENTINEL_SERVICE = "authstore"

NAMES = (
    "postgres",
    "mariadb",
    "redis",
    "memcached",
    "mongodb",
    "redis-cluster",
    "redis-sentinel",
    "redis-tls",
    "redis-unix",
    "memcached-multi",
)
"""Every server ``python -m tests.servers`` knows, in the order it brings them up."""

PORTS = {
    "postgres": 5432,
    "mariadb": 3306,
    "redis": 6379,
    "memcached": 11211,
    "mongodb": 27017,
    "redis-sentinel": 26379,
    "redis-sentinel-master": 6380,
    "redis-sentinel-replica": 6381,
    "redis-tls": 6390,
    "memcached-multi": 11212,
}
"""Base TCP ports (before the offset)."""

CLUSTER_PORTS = (7001, 7002, 7003)
"""Three cluster masters; each cluster bus listens 10000 above its port."""


def env_var(name: str) -> str:
    """``redis-cluster`` -> ``AUTHSTORE_TEST_REDIS_CLUSTER_URL``."""
    return f"AUTHSTORE_TEST_{name.upper().replace('-', '_')}_URL"


@dataclass(frozen=True)
class Layout:
    """A state folder and a port offset: one complete set of test servers."""

    home: Path
    offset: int = 0

    @classmethod
    def from_env(cls) -> Layout:
        home = os.environ.get("AUTHSTORE_SERVICES_HOME") or os.path.join(
            os.environ.get("HOME") or "/root", ".cache", "authstore-services"
        )
        offset = int(os.environ.get("AUTHSTORE_SERVICES_PORT_OFFSET") or 0)
        return cls(Path(os.path.abspath(home)), offset)  # URLs name files in it

    def port(self, name: str) -> int:
        return PORTS[name] + self.offset

    @property
    def cluster_ports(self) -> tuple[int, ...]:
        return tuple(port + self.offset for port in CLUSTER_PORTS)

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def redis_socket(self) -> Path:
        return self.home / "redis.sock"

    def url(self, name: str) -> str:
        """The URL of server ``name`` as this layout runs it."""
        host, port = HOST, self.port
        if name == "postgres":
            return f"postgresql://postgres@{host}:{port(name)}/{TEST_DB}"
        if name == "mariadb":
            return f"mysql://root@{host}:{port(name)}/{TEST_DB}"
        if name == "redis":
            return f"redis://{host}:{port(name)}/15"
        if name == "memcached":
            return f"memcached://{host}:{port(name)}"
        if name == "mongodb":
            return f"mongodb://{host}:{port(name)}/{TEST_DB}"
        if name == "redis-cluster":
            return "redis+cluster://" + ",".join(f"{host}:{p}" for p in self.cluster_ports)
        if name == "redis-sentinel":
            return f"redis+sentinel://{host}:{port(name)}/{SENTINEL_SERVICE}"
        if name == "redis-tls":
            return f"rediss://{host}:{port(name)}/0?ssl_ca_certs={self.tls_dir / 'ca.crt'}"
        if name == "redis-unix":
            return f"redis+unix://{self.redis_socket}?db=0"
        if name == "memcached-multi":
            return f"memcached://{host}:{port('memcached')},{host}:{port(name)}"
        raise KeyError(f"unknown server {name!r}; known: {', '.join(NAMES)}")

    def where(self, name: str) -> str:
        """Where ``name`` listens, for messages."""
        if name == "redis-cluster":
            return f"{HOST}:" + ",".join(str(p) for p in self.cluster_ports)
        if name == "redis-sentinel":
            return (
                f"{HOST}:{self.port(name)} (master :{self.port('redis-sentinel-master')}, "
                f"replica :{self.port('redis-sentinel-replica')})"
            )
        if name == "redis-unix":
            return str(self.redis_socket)
        return f"{HOST}:{self.port(name)}"


def default_url(name: str) -> str:
    """The URL ``python -m tests.servers up`` gives ``name`` under the current settings."""
    return Layout.from_env().url(name)
