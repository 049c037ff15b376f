"""Everything a backend author uses, from one typed module (see docs/backend-authors.md).

A third-party backend imports from here only::

    from authstore.authoring import (
        Backend, StoreURL, StoreKind, ConfigurationError, BackendUnavailableError,
        check_key, check_ttl, encode_value, decode_value, require_module,
    )

Importing it imports no driver and no built-in backend.
"""

from __future__ import annotations

from authstore.contracts.cache import CACHE_CAPABILITIES, AsyncCacheStore, CacheStore
from authstore.contracts.errors import (
    AuthStoreError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDriverError,
    StoreFullError,
    UnsupportedOperationError,
)
from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
from authstore.contracts.records import (
    IssuedMagicLink,
    JSONValue,
    MagicLinkRecord,
    NewSession,
    RateLimitAlgorithm,
    RateLimitResult,
    SessionRecord,
    StoreKind,
    TotpState,
    Value,
)
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.contracts.totp import AsyncTotpStore, TotpStore
from authstore.contracts.values import (
    MAX_JSON_BYTES,
    MAX_KEY_BYTES,
    MAX_TEXT_BYTES,
    MAX_TTL,
    MAX_VALUE_BYTES,
    MAX_WINDOW,
    MIN_TTL,
    check_count,
    check_key,
    check_keys,
    check_namespace,
    check_optional_text,
    check_text,
    check_ttl,
    decode_value,
    encode_many,
    encode_value,
    hash_token,
    new_public_id,
    new_token,
)
from authstore.registry import (
    ENTRY_POINT_GROUP,
    Backend,
    NamespaceCleaner,
    Options,
    StoreURL,
    register_backend,
    require_module,
    unregister_backend,
)

__all__ = [
    "CACHE_CAPABILITIES",
    "ENTRY_POINT_GROUP",
    "MAX_JSON_BYTES",
    "MAX_KEY_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TTL",
    "MAX_VALUE_BYTES",
    "MAX_WINDOW",
    "MIN_TTL",
    "AsyncCacheStore",
    "AsyncMagicLinkStore",
    "AsyncSessionStore",
    "AsyncTotpStore",
    "AuthStoreError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "CacheStore",
    "ConfigurationError",
    "IssuedMagicLink",
    "JSONValue",
    "MagicLinkRecord",
    "MagicLinkStore",
    "MissingDriverError",
    "NamespaceCleaner",
    "NewSession",
    "Options",
    "RateLimitAlgorithm",
    "RateLimitResult",
    "SessionRecord",
    "SessionStore",
    "StoreFullError",
    "StoreKind",
    "StoreURL",
    "TotpState",
    "TotpStore",
    "UnsupportedOperationError",
    "Value",
    "check_count",
    "check_key",
    "check_keys",
    "check_namespace",
    "check_optional_text",
    "check_text",
    "check_ttl",
    "decode_value",
    "encode_many",
    "encode_value",
    "hash_token",
    "new_public_id",
    "new_token",
    "register_backend",
    "require_module",
    "unregister_backend",
]
