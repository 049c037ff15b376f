"""What a postgresql:// URL and its options mean, checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from authstore.adapters.common.settings import SQL_POOL_SIZE as DEFAULT_POOL_SIZE
from authstore.adapters.common.settings import checked_namespace, display_name, one_of
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.adapters.sql.schema import DEFAULT_TABLE_PREFIX, Tables
from authstore.contracts.errors import ConfigurationError
from authstore.registry import Options, StoreURL

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_MIN",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "SSL_MODES",
    "TARGET_SESSION_ATTRS",
    "PostgresSettings",
    "parse_settings",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_POOL_MIN = 1
DEFAULT_APPLICATION_NAME = "authstore"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SSL_FILES = ("sslrootcert", "sslcert", "sslkey")
# Options that shape connections authstore opens; meaningless with client=.
_CONNECTION_OPTIONS = (
    "user",
    "password",
    "pool_size",
    "pool_min",
    "connect_timeout",
    "application_name",
    "sslmode",
    *_SSL_FILES,
    "target_session_attrs",
)


@dataclass(frozen=True)
class PostgresSettings:
    hosts: tuple[tuple[str, int | None], ...] = ()
    """Empty: the driver's default (PGHOST, else the local socket)."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    tables: Tables = field(default_factory=Tables)
    pool_size: int = DEFAULT_POOL_SIZE
    pool_min: int = DEFAULT_POOL_MIN
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    """Per statement, and how long an operation waits for a pooled connection."""
    application_name: str = DEFAULT_APPLICATION_NAME
    ssl: tuple[tuple[str, str], ...] = ()
    """The TLS options given: sslmode, sslrootcert, sslcert, sslkey (libpq's names)."""
    target_session_attrs: str | None = None
    """Which of several hosts to connect to (libpq's and asyncpg's option); None: the
    driver's default, with one host."""
    client: Any = field(default=None, repr=False)
    """A pool or connection the caller opened and keeps owning: never closed by authstore."""
    display: str = "postgresql://"
    """The URL without password or options, for reprs and error messages."""

    def credentials(self, database_key: str) -> dict[str, str]:
        """User, password and database, those given, with the driver's name for the
        database (psycopg: dbname, asyncpg: database)."""
        given = {"user": self.user, "password": self.password, database_key: self.database}
        return {name: value for name, value in given.items() if value is not None}


def parse_settings(url: StoreURL) -> PostgresSettings:
    options = url.reader()
    given = set(url.options)
    namespace = options.text("namespace", DEFAULT_NAMESPACE)
    tables = Tables(options.text("table_prefix", DEFAULT_TABLE_PREFIX))
    client = options.take("client")
    timeout = options.seconds("timeout", DEFAULT_TIMEOUT)
    user = one_of(url.username, options.optional_text("user"), "user")
    password = one_of(url.password, options.optional_text("password"), "password")
    pool_size = options.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1)
    pool_min = options.integer("pool_min", min(DEFAULT_POOL_MIN, pool_size), minimum=0)
    connect_timeout = options.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    application_name = options.text("application_name", DEFAULT_APPLICATION_NAME)
    ssl = _ssl(options)
    target_session_attrs = _target_session_attrs(options, url.hosts)
    options.done()
    checked_namespace(namespace)
    if pool_min > pool_size:
        raise ConfigurationError(f"pool_min={pool_min} is larger than pool_size={pool_size}")
    database = unquote(url.path[1:]) if url.path.startswith("/") else ""
    if client is not None:
        shaped = sorted(given.intersection(_CONNECTION_OPTIONS))
        if url.hosts or database or url.username is not None or url.password is not None:
            raise ConfigurationError(
                "give the server either in the URL or as client=, not both "
                "(with a client, use the URL postgresql://)"
            )
        if shaped:
            raise ConfigurationError(
                f"{', '.join(shaped)} apply to connections authstore opens; "
                "configure them on your client"
            )
    return PostgresSettings(
        hosts=url.hosts,
        user=user,
        password=password,
        database=database or None,
        namespace=namespace,
        tables=tables,
        pool_size=pool_size,
        pool_min=pool_min,
        connect_timeout=connect_timeout,
        timeout=timeout,
        application_name=application_name,
        ssl=ssl,
        target_session_attrs=target_session_attrs,
        client=client,
        display=display_name(url, client),
    )


def _ssl(options: Options) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    mode = options.optional_text("sslmode")
    if mode is not None:
        if mode not in SSL_MODES:
            raise ConfigurationError(f"sslmode={mode!r} must be one of {', '.join(SSL_MODES)}")
        found.append(("sslmode", mode))
    for name in _SSL_FILES:
        path = options.optional_text(name)
        if path is not None:
            found.append((name, path))
    return tuple(found)


# --- several hosts --------------------------------------------------------------------
# postgresql://h1:5432,h2:5432/db lists a primary and its standbys; each new connection
# tries them in order and keeps the first that accepts writes, so after a failover the
# same store finds the promoted standby without being reopened.

TARGET_SESSION_ATTRS = ("read-write", "primary", "any")
"""The values accepted. A store writes (revocations, consumed links): connecting to a
standby (libpq's read-only, standby, prefer-standby) would fail every write and read
revocations late, so those are refused."""


def _target_session_attrs(
    options: Options, hosts: tuple[tuple[str, int | None], ...]
) -> str | None:
    """``read-write`` by default when the URL names several hosts (libpq's own default,
    ``any``, would keep a store on a standby listed first); None with one host."""
    value = options.optional_text("target_session_attrs")
    if value is None:
        return "read-write" if len(hosts) > 1 else None
    if value not in TARGET_SESSION_ATTRS:
        raise ConfigurationError(
            f"target_session_attrs={value!r} must be one of {', '.join(TARGET_SESSION_ATTRS)}: "
            "a store writes, so it connects to the primary"
        )
    return value
