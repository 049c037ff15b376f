"""What a sqlite:// URL and its options mean, checked before anything is opened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from authstore.adapters.common.settings import checked_namespace
from authstore.adapters.common.stores import DEFAULT_NAMESPACE
from authstore.adapters.sql.schema import DEFAULT_TABLE_PREFIX, Tables
from authstore.contracts.errors import ConfigurationError
from authstore.registry import StoreURL

__all__ = ["DEFAULT_TIMEOUT", "MEMORY", "SQLiteSettings", "parse_settings"]

DEFAULT_TIMEOUT = 5.0
MEMORY = ":memory:"
_URL_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"


@dataclass(frozen=True)
class SQLiteSettings:
    database: str
    """A file path, ``:memory:`` (private to one runner), or "" with ``connection``."""
    namespace: str = DEFAULT_NAMESPACE
    tables: Tables = field(default_factory=Tables)
    timeout: float = DEFAULT_TIMEOUT
    """How long a statement waits for another writer's lock (SQLite's busy timeout); on
    async stores also the longest an operation's caller waits, its turn in the queue of
    the store's worker thread included."""
    connection: Any = field(default=None, repr=False)
    """A connection the caller opened and keeps owning: never closed by authstore."""

    @property
    def client(self) -> Any:
        """The caller's connection, under the name every SQL runner reads."""
        return self.connection

    @property
    def display(self) -> str:
        """Where the store is, for reprs and errors."""
        return "connection=<given>" if self.connection is not None else self.database


def parse_settings(url: StoreURL) -> SQLiteSettings:
    if url.hosts or url.username is not None or url.password is not None:
        raise ConfigurationError(f"a sqlite URL names a file, not a server: {_URL_FORMS}")
    options = url.reader()
    namespace = options.text("namespace", DEFAULT_NAMESPACE)
    tables = Tables(options.text("table_prefix", DEFAULT_TABLE_PREFIX))
    timeout_given = "timeout" in url.options
    timeout = options.seconds("timeout", DEFAULT_TIMEOUT)
    connection = options.take("connection")
    options.done()
    checked_namespace(namespace)
    # StoreURL keeps the path's leading "/": sqlite:///a.db gives "/a.db", sqlite:////a.db "//a.db".
    database = unquote(url.path[1:])
    if connection is not None:
        if database:
            raise ConfigurationError(
                "give the database either as the URL's path or as connection=, not both "
                "(with a connection, use the URL sqlite://)"
            )
        if timeout_given:
            raise ConfigurationError(
                "timeout applies to connections authstore opens; set it on your connection"
            )
    elif not database:
        raise ConfigurationError(f"a sqlite URL needs a database: {_URL_FORMS}")
    return SQLiteSettings(database, namespace, tables, timeout, connection)
