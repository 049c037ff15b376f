"""A mongodb:// or mongodb+srv:// URL and its options, checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from authstore.adapters.common.settings import checked_namespace, display_name, durability
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.adapters.mongodb.ops import Collections
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

__all__ = ["DEFAULT_DATABASE", "DEFAULT_TIMEOUT", "MongoSettings", "parse_settings"]

DEFAULT_DATABASE = "authstore"
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_POOL_SIZE = 10
DEFAULT_PREFIX = "authstore_"

# pymongo's own URI options that authstore passes through unchanged (with their names
# as pymongo spells them). readPreference is not among them: security reads go to the
# primary, never to a secondary that may lag behind a revocation.
PASSTHROUGH = {
    name.lower(): name
    for name in (
        "replicaSet",
        "authSource",
        "authMechanism",
        "tls",
        "ssl",
        "tlsCAFile",
        "tlsCertificateKeyFile",
        "tlsAllowInvalidCertificates",
        "tlsAllowInvalidHostnames",
        "directConnection",
        "w",
        "journal",
        "readConcernLevel",
        "appName",
        "compressors",
        "loadBalanced",
        "srvServiceName",
    )
}
_CONNECTION_OPTIONS = ("pool_size", "connect_timeout", *PASSTHROUGH)
MAJORITY = {"w": "majority", "j": True}


@dataclass(frozen=True)
class MongoSettings:
    uri: str = field(default="", repr=False)
    """What pymongo connects to (credentials included), without authstore's options."""
    database: str = DEFAULT_DATABASE
    namespace: str = DEFAULT_NAMESPACE
    collections: Collections = field(default_factory=Collections)
    pool_size: int = DEFAULT_POOL_SIZE
    timeout: float = DEFAULT_TIMEOUT
    """Bounds every operation on the client side (pymongo.timeout, and asyncio's for
    async runners), server selection included."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    options: tuple[tuple[str, str], ...] = ()
    client: Any = field(default=None, repr=False)
    """A MongoClient / AsyncMongoClient / motor client the caller owns: never closed."""
    display: str = "mongodb://"
    write_concern: dict[str, Any] | None = None
    """``durability=replicated``: the write concern of every security write (a majority
    of the replica set, journaled: what an election cannot roll back); None: the
    client's (``w``, ``journal``)."""

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for the client authstore opens."""
        timeout_ms = int(self.timeout * 1000)
        options: dict[str, Any] = {
            "maxPoolSize": self.pool_size,
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": int(min(self.connect_timeout, self.timeout) * 1000),
            "socketTimeoutMS": timeout_ms,
            "appname": "authstore",
        }
        for name, value in self.options:
            options[name] = value
        return options


def parse_settings(url: StoreURL) -> MongoSettings:
    reader = url.reader()
    given = {name.lower() for name in url.options}
    namespace = reader.text("namespace", DEFAULT_NAMESPACE)
    prefix = reader.text("collection_prefix", DEFAULT_PREFIX)
    client = reader.take("client")
    timeout = reader.seconds("timeout", DEFAULT_TIMEOUT)
    connect_timeout = reader.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    pool_size = reader.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1)
    replicated = durability(reader) == "replicated"
    passthrough = []
    for name in list(url.options):
        canonical = PASSTHROUGH.get(name.lower())
        if canonical is not None:
            value = reader.optional_text(name)
            assert value is not None
            passthrough.append((canonical, value))
    reader.done()
    checked_namespace(namespace)
    try:
        collections = Collections(prefix)
    except ValueError as error:
        raise ConfigurationError(f"option collection_prefix: {error}") from None
    database = unquote(url.path[1:]) if url.path.startswith("/") else ""
    if any(char in database for char in '/\\. "$\x00') or len(database) > 63:
        raise ConfigurationError(f"{database!r} is not a MongoDB database name")
    if url.scheme == "mongodb+srv" and len(url.hosts) != 1:
        raise ConfigurationError("a mongodb+srv:// URL names exactly one host, without a port")
    if client is not None:
        shaped = sorted(given.intersection(name.lower() for name in _CONNECTION_OPTIONS))
        if url.hosts or url.username is not None or url.password is not None:
            raise ConfigurationError(
                "give the server either in the URL or as client=, not both "
                "(with a client, use mongodb:///database)"
            )
        if shaped:
            raise ConfigurationError(
                f"{', '.join(shaped)} apply to clients authstore opens; "
                "configure them on your client"
            )
    elif not url.hosts:
        raise ConfigurationError("a MongoDB URL names a host: mongodb://host:27017/database")
    return MongoSettings(
        uri=_uri(url, database),
        database=database or DEFAULT_DATABASE,
        namespace=namespace,
        collections=collections,
        pool_size=pool_size,
        timeout=timeout,
        connect_timeout=connect_timeout,
        options=tuple(passthrough),
        client=client,
        display=display_name(url, client),
        write_concern=MAJORITY if replicated else None,
    )


def _uri(url: StoreURL, database: str) -> str:
    """The URL for pymongo: its database is the default authSource, as in any MongoDB URL."""
    auth = ""
    if url.username is not None:
        auth = quote(url.username, safe="")
        if url.password is not None:
            auth += ":" + quote(url.password, safe="")
        auth += "@"
    hosts = ",".join(
        (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")
        for host, port in url.hosts
    )
    return f"{url.scheme}://{auth}{hosts}/{quote(database, safe='')}"
