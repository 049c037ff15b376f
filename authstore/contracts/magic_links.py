"""The magic-link contract: single-use sign-in links, only token hashes stored."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from authstore.contracts.lifecycle import AsyncStoreLifecycle, StoreLifecycle
from authstore.contracts.records import IssuedMagicLink, MagicLinkRecord

__all__ = ["AsyncMagicLinkStore", "MagicLinkStore"]


@runtime_checkable
class MagicLinkStore(StoreLifecycle, Protocol):
    """Single-use sign-in links: only token hashes are stored; a used, revoked or expired
    link is never returned again."""

    def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> IssuedMagicLink:
        """Store a link and return it with its secret token.

        With ``revoke_previous`` the user's unused links are revoked in the same step.
        With ``token`` (a str of 32 to 512 characters) the caller's token is the link's
        secret; only its hash is stored. If that hash belongs to a link that has not
        expired (used or not), ``TokenInUseError`` is raised and nothing changes.
        """

    def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> MagicLinkRecord:
        """``issue`` for a core that hands storage only the SHA-256 of its own token.

        ``token_hash`` is 64 lowercase hex characters, ``hashlib.sha256(token.encode())
        .hexdigest()`` (ValueError otherwise); ``peek``/``consume`` then take the raw token.
        A hash of a link that has not expired raises ``TokenInUseError``.
        """

    def peek(self, token: str) -> MagicLinkRecord | None:
        """The link if it is still usable, without using it."""

    def consume(self, token: str, *, application_id: str | None = None) -> MagicLinkRecord | None:
        """Use the link: among any number of concurrent callers exactly one gets the record.

        ``application_id`` must equal the one the link was issued for; a mismatch
        returns None and leaves the link usable.
        """

    def revoke_user(self, user_id: str) -> int:
        """Revoke the user's usable links (live, unconsumed, unrevoked); returns how many."""

    def purge_expired(self) -> int:
        """Physically delete expired links (used ones are kept until they expire, so
        their token hash stays taken); returns how many it deleted, 0 where the backend
        expires entries by itself (Redis, memcached)."""


@runtime_checkable
class AsyncMagicLinkStore(AsyncStoreLifecycle, Protocol):
    """The async twin of MagicLinkStore: same names, same meaning."""

    async def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> IssuedMagicLink: ...
    async def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> MagicLinkRecord: ...
    async def peek(self, token: str) -> MagicLinkRecord | None: ...
    async def consume(
        self, token: str, *, application_id: str | None = None
    ) -> MagicLinkRecord | None: ...
    async def revoke_user(self, user_id: str) -> int: ...
    async def purge_expired(self) -> int: ...
