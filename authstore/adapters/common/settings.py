"""What the backends' URL parsing shares: the namespace check, a value the URL and an
option may both give, the name a store shows in messages, the SQL servers' pool size."""

from __future__ import annotations

from authstore.contracts.errors import ConfigurationError
from authstore.contracts.values import check_namespace
from authstore.registry import Options, StoreURL

__all__ = [
    "DURABILITY",
    "SQL_POOL_SIZE",
    "checked_namespace",
    "display_name",
    "durability",
    "one_of",
]

SQL_POOL_SIZE = 20
"""Per store. With 100 concurrent async callers on loopback (2 cores), 20 against 10 gave
1.4x the throughput of rate-limit hits and a p99 of 161 ms instead of 225 (PostgreSQL;
MariaDB 1.3x, 220 ms instead of 244); 30 gained another 12% on PostgreSQL, but four
stores of one process at full load would then hold more than its default
max_connections (100)."""


def checked_namespace(namespace: str) -> str:
    """The ``namespace`` option, checked: a bad one is a ConfigurationError naming it."""
    try:
        return check_namespace(namespace)
    except ValueError as error:
        raise ConfigurationError(f"option namespace: {error}") from None


def one_of(in_url: str | None, option: str | None, name: str) -> str | None:
    """A value the URL itself or an option may give (a user name, a password), not both."""
    if in_url is not None and option is not None:
        raise ConfigurationError(f"{name} is given both in the URL and as an option")
    return in_url if option is None else option


def display_name(url: StoreURL, client: object) -> str:
    """How a store names its server in messages: the URL without its options, password
    hidden; only the scheme when the caller gave the client (``client=``)."""
    if client is not None:
        return f"{url.scheme}:// client=<given>"
    return StoreURL(url.scheme, url.hosts, url.username, url.password, url.path).redacted()


DURABILITY = ("primary", "replicated")
"""``durability=``: ``primary`` (the default) acknowledges a write once the primary has
it; ``replicated`` acknowledges a security write (a revocation, a consumed link, a
claimed TOTP step, ...) only once replicas have it too, so a failover cannot undo it."""


def durability(options: Options) -> str:
    """The ``durability`` option, checked (``primary`` when absent)."""
    value = options.text("durability", DURABILITY[0])
    if value not in DURABILITY:
        raise ConfigurationError(
            f"option durability={value!r} must be one of {', '.join(DURABILITY)}"
        )
    return value
