"""authstore: the storage layer of an authentication core.

Four contracts (cache with rate limiting and revocation, sessions, TOTP state,
magic links), each sync and async, chosen by URL::

    from authstore import open_cache
    with open_cache("sqlite:///auth.db") as cache:
        allowed, remaining, reset_after = cache.check_rate_limit("login:alice", 10, 60)

Importing this package imports no third-party module.
"""

from authstore.contracts.cache import AsyncCacheStore, CacheStore
from authstore.contracts.errors import (
    AuthenticationFailedError,
    AuthStoreError,
    BackendConfigurationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDriverError,
    SchemeConflictError,
    StoreClosedError,
    StoreFullError,
    TLSVerificationError,
    TokenInUseError,
    UnknownDatabaseError,
    UnknownSchemeError,
    UnsupportedOperationError,
)
from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
from authstore.contracts.records import (
    IssuedMagicLink,
    MagicLinkRecord,
    NewSession,
    RateLimitAlgorithm,
    RateLimitResult,
    SessionRecord,
    StoreKind,
    TotpState,
)
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.contracts.totp import AsyncTotpStore, TotpStore
from authstore.groups import AsyncStoreGroup, StoreGroup, open_async_stores, open_stores
from authstore.limits import Limit, parse_limit, parse_limits
from authstore.registry import (
    StoreURL,
    known_schemes,
    migrate,
    open_async_cache,
    open_async_magic_links,
    open_async_sessions,
    open_async_totp,
    open_cache,
    open_magic_links,
    open_sessions,
    open_totp,
    register_backend,
)

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it from here."""

__all__ = [
    "AsyncCacheStore",
    "AsyncMagicLinkStore",
    "AsyncSessionStore",
    "AsyncStoreGroup",
    "AsyncTotpStore",
    "AuthStoreError",
    "AuthenticationFailedError",
    "BackendConfigurationError",
    "BackendError",
    "BackendUnavailableError",
    "CacheStore",
    "ConfigurationError",
    "IssuedMagicLink",
    "Limit",
    "MagicLinkRecord",
    "MagicLinkStore",
    "MissingDriverError",
    "NewSession",
    "RateLimitAlgorithm",
    "RateLimitResult",
    "SchemeConflictError",
    "SessionRecord",
    "SessionStore",
    "StoreClosedError",
    "StoreFullError",
    "StoreGroup",
    "StoreKind",
    "StoreURL",
    "TLSVerificationError",
    "TokenInUseError",
    "TotpState",
    "TotpStore",
    "UnknownDatabaseError",
    "UnknownSchemeError",
    "UnsupportedOperationError",
    "known_schemes",
    "migrate",
    "open_async_cache",
    "open_async_magic_links",
    "open_async_sessions",
    "open_async_stores",
    "open_async_totp",
    "open_cache",
    "open_magic_links",
    "open_sessions",
    "open_stores",
    "open_totp",
    "parse_limit",
    "parse_limits",
    "register_backend",
]
