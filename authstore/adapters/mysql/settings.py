"""What a mysql:// or mariadb:// URL and its options mean, checked before anything connects."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from authstore.adapters.common.settings import SQL_POOL_SIZE as DEFAULT_POOL_SIZE
from authstore.adapters.common.settings import checked_namespace
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.adapters.sql.schema import DEFAULT_TABLE_PREFIX, Tables
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "MySQLSettings",
    "parse_settings",
]

DEFAULT_PORT = 3306
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 5.0
_URL_FORM = "mysql://user:password@host:3306/database?options (or mariadb://)"
_CONNECTION_OPTIONS = (
    "pool_size",
    "connect_timeout",
    "timeout",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "ssl_verify",
    "charset",
)


@dataclass(frozen=True)
class MySQLSettings:
    scheme: str = "mysql"
    host: str = "localhost"
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str = ""
    namespace: str = DEFAULT_NAMESPACE
    tables: Tables = field(default_factory=Tables)
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    """Per operation: each read or write on the socket, a lock wait, a wait for a free
    connection of the pool."""
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    client: Any = field(default=None, repr=False)
    """A pymysql Connection (sync) or an aiomysql Pool (async) the caller keeps owning."""

    @property
    def display(self) -> str:
        """Where the store is, for messages: never the password."""
        if self.client is not None:
            return f"{self.scheme}://<client>"
        user = "" if self.user is None else f"{self.user}{':***' if self.password else ''}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}/{self.database}"


def parse_settings(url: StoreURL) -> MySQLSettings:
    options = url.reader()
    namespace = options.text("namespace", DEFAULT_NAMESPACE)
    tables = Tables(options.text("table_prefix", DEFAULT_TABLE_PREFIX))
    given = {name for name in _CONNECTION_OPTIONS if name in url.options}
    pool_size = options.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1)
    connect_timeout = options.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    timeout = options.seconds("timeout", DEFAULT_TIMEOUT)
    context = _ssl_context(
        options.optional_text("ssl_ca"),
        options.optional_text("ssl_cert"),
        options.optional_text("ssl_key"),
        options.flag("ssl_verify", True) if "ssl_verify" in url.options else None,
    )
    charset = options.text("charset", "utf8mb4")
    client = options.take("client")
    options.done()
    checked_namespace(namespace)
    if charset.lower() != "utf8mb4":
        raise ConfigurationError(
            "option charset: authstore always talks utf8mb4 (4-byte characters included)"
        )
    database = unquote(url.path[1:]) if url.path.startswith("/") else url.path
    scheme = url.scheme
    if client is not None:
        if url.hosts or url.username is not None or url.password is not None or database:
            raise ConfigurationError(
                f"give the server either in the URL or as client=, not both "
                f"(with a client, use the URL {scheme}://)"
            )
        if given:
            raise ConfigurationError(
                f"option(s) {', '.join(sorted(given))} apply to connections authstore "
                "opens; set them on your client"
            )
        return MySQLSettings(scheme, namespace=namespace, tables=tables, client=client)
    if len(url.hosts) != 1:
        raise ConfigurationError(f"a {scheme} URL names exactly one server: {_URL_FORM}")
    if not database or "/" in database:
        raise ConfigurationError(f"a {scheme} URL needs a database: {_URL_FORM}")
    host, port = url.hosts[0]
    return MySQLSettings(
        scheme,
        host or "localhost",
        port or DEFAULT_PORT,
        url.username,
        url.password,
        database,
        namespace,
        tables,
        pool_size,
        connect_timeout,
        timeout,
        context,
    )


def _ssl_context(
    ca: str | None, cert: str | None, key: str | None, verify: bool | None
) -> ssl.SSLContext | None:
    """TLS when any ssl_ option is given; the server's certificate and name are verified
    unless ssl_verify=false (against ssl_ca, else the system's authorities)."""
    if ca is None and cert is None and key is None and verify is None:
        return None
    if key is not None and cert is None:
        raise ConfigurationError("option ssl_key needs ssl_cert (the client certificate)")
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        # The message names the file, never a key's contents.
        raise ConfigurationError(f"TLS options: {error}") from None
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
