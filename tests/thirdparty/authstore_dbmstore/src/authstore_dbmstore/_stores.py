"""The store classes per kind (imported when the first store opens)."""

from __future__ import annotations

from authstore.authoring import StoreKind
from authstore_dbmstore._cache import AsyncDbmCache, DbmCache
from authstore_dbmstore._files import Place
from authstore_dbmstore._links import AsyncDbmMagicLinks, DbmMagicLinks
from authstore_dbmstore._sessions import AsyncDbmSessions, DbmSessions
from authstore_dbmstore._totp import AsyncDbmTotp, DbmTotp

__all__ = ["STORE_CLASSES", "Place"]

STORE_CLASSES: dict[StoreKind, tuple[type, type]] = {
    StoreKind.CACHE: (DbmCache, AsyncDbmCache),
    StoreKind.SESSIONS: (DbmSessions, AsyncDbmSessions),
    StoreKind.TOTP: (DbmTotp, AsyncDbmTotp),
    StoreKind.MAGIC_LINKS: (DbmMagicLinks, AsyncDbmMagicLinks),
}
