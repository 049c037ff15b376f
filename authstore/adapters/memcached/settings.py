"""What a memcached:// URL and its options mean, checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authstore.adapters.common.settings import checked_namespace, display_name
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_PORT",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "MemcachedSettings",
    "node_name",
    "parse_settings",
]

DEFAULT_PORT = 11211
DEFAULT_TIMEOUT = 3.0
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_POOL_SIZE = 10
# Options that shape connections authstore opens; meaningless with client=.
_CONNECTION_OPTIONS = ("connect_timeout", "pool_size")


def node_name(host: str, port: int) -> str:
    """A server's name on the hash ring: pymemcache HashClient's ``host:port``, so a
    key lands on the same server whichever client (sync or async) computes it."""
    return f"{host}:{port}"


@dataclass(frozen=True)
class MemcachedSettings:
    servers: tuple[tuple[str, int], ...] = (("127.0.0.1", DEFAULT_PORT),)
    namespace: str = DEFAULT_NAMESPACE
    timeout: float = DEFAULT_TIMEOUT
    """Per command (the async runner bounds connecting by it too)."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    pool_size: int = DEFAULT_POOL_SIZE
    """Connections per server of an async store (aiomcache pools them)."""
    client: Any = field(default=None, repr=False)
    """A pymemcache Client, PooledClient or HashClient (sync) or an aiomcache Client
    (async) that the caller opened and keeps owning: never closed by authstore."""
    display: str = "memcached://"


def parse_settings(url: StoreURL) -> MemcachedSettings:
    options = url.reader()
    given = set(url.options)
    namespace = options.text("namespace", DEFAULT_NAMESPACE)
    client = options.take("client")
    timeout = options.seconds("timeout", DEFAULT_TIMEOUT)
    connect_timeout = options.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    pool_size = options.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1)
    options.done()
    checked_namespace(namespace)
    if url.username is not None or url.password is not None:
        raise ConfigurationError(
            "memcached's text protocol has no authentication: remove user:password from the URL"
        )
    if url.path.strip("/"):
        raise ConfigurationError("a memcached URL has no path: memcached://host:port,host:port")
    servers = tuple((host, DEFAULT_PORT if port is None else port) for host, port in url.hosts)
    if len(set(servers)) != len(servers):
        raise ConfigurationError("a memcached server is listed twice in the URL")
    if client is not None:
        shaped = sorted(given.intersection(_CONNECTION_OPTIONS))
        if servers:
            raise ConfigurationError(
                "give the servers either in the URL or as client=, not both "
                "(with a client, use the URL memcached://)"
            )
        if shaped:
            raise ConfigurationError(
                f"{', '.join(shaped)} apply to connections authstore opens; "
                "configure them on your client"
            )
    return MemcachedSettings(
        servers=servers or (("127.0.0.1", DEFAULT_PORT),),
        namespace=namespace,
        timeout=timeout,
        connect_timeout=connect_timeout,
        pool_size=pool_size,
        client=client,
        display=display_name(StoreURL(url.scheme, url.hosts), client),
    )
