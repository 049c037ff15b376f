"""What a Redis URL and its options mean, checked before anything connects.

``redis://[user:password@]host:6379/0``, ``rediss://...`` (TLS),
``redis+unix:///path/to/redis.sock?db=0``, ``redis+cluster://host:port,host:port``
and ``redis+sentinel://host:port,host:port/service_name?db=0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from authstore.adapters.common.settings import (
    checked_namespace,
    display_name,
    durability,
    one_of,
)
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

__all__ = ["SCHEMES", "RedisSettings", "Topology", "parse_settings"]

Topology = Literal["single", "cluster", "sentinel"]

SCHEMES: dict[str, Topology] = {
    "redis": "single",
    "rediss": "single",
    "redis+unix": "single",
    "redis+cluster": "cluster",
    "redis+sentinel": "sentinel",
}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_TIMEOUT = 5.0
DEFAULT_POOL_SIZE = 50
_SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("required", "optional", "none")
_CONNECTION_OPTIONS = (
    "db",
    "client_name",
    "pool_size",
    "connect_timeout",
    "username",
    "password",
    "sentinel_password",
    *_SSL_FILES,
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "tls",
)


@dataclass(frozen=True)
class RedisSettings:
    topology: Topology = "single"
    hosts: tuple[tuple[str, int], ...] = (("127.0.0.1", DEFAULT_PORT),)
    unix_socket: str | None = None
    service: str | None = None
    """The Sentinel service (master) name."""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    ssl: tuple[tuple[str, Any], ...] = ()
    """redis-py's ssl_* keywords, for TLS connections."""
    namespace: str = DEFAULT_NAMESPACE
    pool_size: int = DEFAULT_POOL_SIZE
    timeout: float = DEFAULT_TIMEOUT
    """Bounds each operation on the client side (socket reads, waiting for a connection)."""
    connect_timeout: float = DEFAULT_TIMEOUT
    client_name: str = "authstore"
    """CLIENT SETNAME of every connection (CLIENT LIST shows which app holds which)."""
    client: Any = field(default=None, repr=False)
    """A client the caller opened and keeps owning: never closed by authstore."""
    display: str = "redis://"
    """Where the store is, for reprs and errors: never a password."""
    replicas: int = 0
    """``durability=replicated``: how many replicas must have a security write before it
    is acknowledged (``WAIT``, ``replicas=N``, 1 by default); 0: the primary's word."""
    replica_timeout: float = DEFAULT_TIMEOUT / 2
    """How long a security write waits for its replicas (``WAIT``'s timeout)."""
    # --- layout (sessions and magic links) ---
    layout: str = "namespace"
    """``spread`` (the default on Redis Cluster): a user's sessions and links under its
    bucket's hash tag, buckets spread over the slots; ``namespace``: a namespace's under
    one tag (one slot; the default elsewhere, and the only layout before the option)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.sentinel_password) if s)


def parse_settings(url: StoreURL) -> RedisSettings:
    topology = SCHEMES.get(url.scheme)
    if topology is None:
        raise ConfigurationError(f"not a Redis URL scheme: {url.scheme}://")
    options = url.reader()
    given = set(url.options)
    namespace = options.text("namespace", DEFAULT_NAMESPACE)
    client = options.take("client")
    timeout = options.seconds("timeout", DEFAULT_TIMEOUT)
    connect_timeout = options.seconds("connect_timeout", timeout)
    pool_size = options.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1)
    client_name = options.text("client_name", "authstore")
    if not client_name or any(c.isspace() or not c.isprintable() for c in client_name):
        raise ConfigurationError("option client_name must be non-empty, without spaces")
    username = one_of(url.username, options.optional_text("username"), "username")
    password = one_of(url.password, options.optional_text("password"), "password")
    sentinel_password = options.optional_text("sentinel_password")
    db_option = options.optional_integer("db")
    tls = url.scheme == "rediss" or options.flag("tls", False)
    ssl = _ssl(options) if tls else ()
    replicas, replica_timeout = _replication(options, timeout, given)
    layout = _layout(options.text("layout", "spread" if topology == "cluster" else "namespace"))
    options.done()
    checked_namespace(namespace)

    path = unquote(url.path)
    unix_socket = service = None
    db_in_path: int | None = None
    if url.scheme == "redis+unix":
        if url.hosts or not path.startswith("/") or path == "/":
            raise ConfigurationError(
                "a unix-socket URL is redis+unix:///absolute/path/to/redis.sock?db=0"
            )
        unix_socket = path
    elif topology == "sentinel":
        parts = [part for part in path.split("/") if part]
        if not parts or len(parts) > 2:
            raise ConfigurationError(
                "a Sentinel URL names its service: redis+sentinel://host:26379/service_name"
            )
        service = parts[0]
        db_in_path = _db(parts[1]) if len(parts) == 2 else None
    elif path.strip("/"):
        if topology == "cluster":
            raise ConfigurationError("Redis Cluster has only database 0: drop the URL path")
        db_in_path = _db(path.strip("/"))
    if db_in_path is not None and db_option is not None:
        raise ConfigurationError("db is given both in the URL path and as an option")
    db = db_in_path if db_in_path is not None else (db_option or 0)
    if topology == "cluster" and db:
        raise ConfigurationError("Redis Cluster has only database 0")

    default_port = DEFAULT_SENTINEL_PORT if topology == "sentinel" else DEFAULT_PORT
    hosts = tuple((host or "127.0.0.1", port or default_port) for host, port in url.hosts)
    if client is not None:
        shaped = sorted(given.intersection(_CONNECTION_OPTIONS))
        if hosts or unix_socket or url.username is not None or url.password is not None:
            raise ConfigurationError(
                "give the server either in the URL or as client=, not both "
                "(with a client, use the URL redis://)"
            )
        if shaped:
            raise ConfigurationError(
                f"{', '.join(shaped)} apply to connections authstore opens; "
                "configure them on your client"
            )
    elif not hosts and unix_socket is None:
        if topology != "single":
            raise ConfigurationError(f"{url.scheme}:// needs at least one host:port")
        hosts = (("127.0.0.1", DEFAULT_PORT),)
    return RedisSettings(
        topology=topology,
        hosts=hosts,
        unix_socket=unix_socket,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=tls,
        ssl=ssl,
        namespace=namespace,
        pool_size=pool_size,
        timeout=timeout,
        connect_timeout=connect_timeout,
        client_name=client_name,
        client=client,
        display=display_name(url, client),
        replicas=replicas,
        replica_timeout=replica_timeout,
        layout=layout,
    )


def _replication(options: Any, timeout: float, given: set[str]) -> tuple[int, float]:
    """``durability=replicated[&replicas=N][&replica_timeout=S]``: security writes wait
    (``WAIT N ms``) for N replicas, at most S seconds (half ``timeout`` by default, and
    less than it: the reply must arrive before the store gives up on the connection)."""
    replicated = durability(options) == "replicated"
    replicas = options.optional_integer("replicas", minimum=1)
    wait = options.seconds("replica_timeout", timeout / 2)
    if not replicated:
        if replicas is not None or "replica_timeout" in given:
            raise ConfigurationError("replicas and replica_timeout need durability=replicated")
        return 0, wait
    if wait >= timeout or wait < 0.001:
        raise ConfigurationError(
            f"option replica_timeout={wait:g} must be at least 0.001 and less than "
            f"timeout={timeout:g} (WAIT must answer before the store gives up)"
        )
    return (1 if replicas is None else replicas), wait


# --- layout -------------------------------------------------------------------------------

LAYOUTS = ("namespace", "spread")


def _layout(value: str) -> str:
    if value not in LAYOUTS:
        raise ConfigurationError(f"layout={value!r} must be one of {', '.join(LAYOUTS)}")
    return value


def _db(text: str) -> int:
    if not text.isdigit():
        raise ConfigurationError(f"the Redis database must be a number, not {text!r}")
    return int(text)


def _ssl(options: Any) -> tuple[tuple[str, Any], ...]:
    found: list[tuple[str, Any]] = []
    for name in _SSL_FILES:
        path = options.optional_text(name)
        if path is not None:
            found.append((name, path))
    reqs = options.optional_text("ssl_cert_reqs")
    if reqs is not None:
        if reqs not in _CERT_REQS:
            raise ConfigurationError(
                f"ssl_cert_reqs={reqs!r} must be one of {', '.join(_CERT_REQS)}"
            )
        found.append(("ssl_cert_reqs", reqs))
    found.append(("ssl_check_hostname", options.flag("ssl_check_hostname", False)))
    return tuple(found)
