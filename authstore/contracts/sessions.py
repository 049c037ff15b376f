"""The session contract: opaque secret tokens, only their hashes stored."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from authstore.contracts.lifecycle import AsyncStoreLifecycle, StoreLifecycle
from authstore.contracts.records import JSONValue, NewSession, SessionRecord

__all__ = ["AsyncSessionStore", "SessionStore"]


@runtime_checkable
class SessionStore(StoreLifecycle, Protocol):
    """Expired or revoked sessions are never returned, whether or not they are deleted yet."""

    def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> NewSession:
        """Store a session and return it with its secret token.

        With ``max_sessions``, the user's oldest live sessions beyond the cap are
        revoked in the same atomic step. With ``token`` (a str of 32 to 512 characters,
        ValueError/TypeError otherwise) the caller's token is the session's secret: only
        its hash is stored, and ``get``/``touch``/``revoke``/``revoke_all(except_token=)``
        find the session by it. If that token's hash belongs to a session that has not
        expired (live or revoked), ``TokenInUseError`` is raised and nothing changes.
        """

    def get(self, token: str) -> SessionRecord | None:
        """The live session of this token, or None (expired, revoked or unknown)."""

    def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        """Record activity; with ``ttl`` the expiry slides to now + ttl."""

    def revoke(self, token: str) -> bool:
        """True when a live session was revoked."""

    def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        """Revoke by public id; with ``user_id`` only if the session is that user's."""

    def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        """Revoke every live session of a user but the one named; returns how many."""

    def count(self, user_id: str) -> int:
        """How many live sessions the user has."""

    def purge_expired(self) -> int:
        """Physically delete expired sessions (revoked ones are kept until they expire,
        so their token hash stays taken); returns how many it deleted, 0 where the backend
        expires entries by itself (Redis, memcached)."""

    def list(self, user_id: str) -> builtins.list[SessionRecord]:
        """Live sessions of a user, newest first."""


@runtime_checkable
class AsyncSessionStore(AsyncStoreLifecycle, Protocol):
    """The async twin of SessionStore: same names, same meaning."""

    async def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> NewSession: ...
    async def get(self, token: str) -> SessionRecord | None: ...
    async def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None: ...
    async def revoke(self, token: str) -> bool: ...
    async def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool: ...
    async def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int: ...
    async def count(self, user_id: str) -> int: ...
    async def purge_expired(self) -> int: ...
    async def list(self, user_id: str) -> builtins.list[SessionRecord]: ...
