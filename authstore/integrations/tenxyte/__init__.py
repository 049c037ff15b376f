"""authstore as the storage of tenxyte's auth core (``pip install "authstore[tenxyte]"``).

Storage interfaces (``storage``): ``AuthstoreCacheService`` (tenxyte's CacheService,
with authstore's atomic rate limiter and blacklist), ``AuthstoreTokenBlacklist``
(TokenBlacklistService), ``AuthstoreSessionRepository`` (SessionRepository),
``AuthstoreTOTPStorage`` (TOTPStorage), ``AuthstoreCodeReplayProtection``
(CodeReplayProtection), ``AuthstoreMagicLinkRepository`` (MagicLinkRepository); each
with its ``Async*`` twin methods (``*_async``) over authstore's async stores.

Services (``services``): ``AuthstoreJWTService``, ``AuthstoreTOTPService``,
``AuthstoreMagicLinkService``, ``AuthstoreSessionService``: tenxyte's services whose
check-and-consume steps are authstore's atomic operations.
"""

from authstore.integrations.tenxyte.services import (
    AuthstoreJWTService,
    AuthstoreMagicLinkService,
    AuthstoreSessionService,
    AuthstoreTOTPService,
)
from authstore.integrations.tenxyte.storage import (
    AuthstoreCacheService,
    AuthstoreCodeReplayProtection,
    AuthstoreMagicLinkRepository,
    AuthstoreSessionRepository,
    AuthstoreTokenBlacklist,
    AuthstoreTOTPStorage,
)

__all__ = [
    "AuthstoreCacheService",
    "AuthstoreCodeReplayProtection",
    "AuthstoreJWTService",
    "AuthstoreMagicLinkRepository",
    "AuthstoreMagicLinkService",
    "AuthstoreSessionRepository",
    "AuthstoreSessionService",
    "AuthstoreTOTPService",
    "AuthstoreTOTPStorage",
    "AuthstoreTokenBlacklist",
]
