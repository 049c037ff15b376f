"""tenxyte's storage interfaces over authstore stores.

Each class implements one of tenxyte's interfaces, sync methods over the sync store
and ``*_async`` methods over the async store (give either or both). Nothing of
tenxyte's that is a bearer secret is stored in plaintext: magic links are kept by
the SHA-256 tenxyte hands over (``issue_hashed``), sessions by the hash of tenxyte's
session id (``create(token=...)``), replay keys by a hash of the user and code.

These are faithful to tenxyte's interfaces, so tenxyte's own services work over them,
but tenxyte's services read, check, then write, and ignore what the write returns:
for single-use guarantees under concurrency use the services of
``authstore.integrations.tenxyte.services``, which use the atomic answers these
stores give (``consume``, ``claim_step``, ``use_backup_code``, ``add``,
``check_rate_limit``, ``revoke``).
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tenxyte.core.cache_service import CacheService
from tenxyte.core.magic_link_service import MagicLinkToken
from tenxyte.core.totp_service import TOTPUserData

from authstore.contracts.cache import AsyncCacheStore, CacheStore
from authstore.contracts.errors import ConfigurationError
from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
from authstore.contracts.records import MagicLinkRecord, SessionRecord, TotpState
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.contracts.totp import AsyncTotpStore, TotpStore
from authstore.contracts.values import MAX_TTL, check_ttl
from authstore.integrations.tenxyte._bound import Bound, Flow, Pair, call

if TYPE_CHECKING:
    from authstore.crypto import SecretBox

__all__ = [
    "AuthstoreCacheService",
    "AuthstoreCodeReplayProtection",
    "AuthstoreMagicLinkRepository",
    "AuthstoreSessionRepository",
    "AuthstoreTOTPStorage",
    "AuthstoreTokenBlacklist",
    "TotpSecrets",
    "session_dict",
]


def _bound(owner: object, name: str, sync: object | None, aio: object | None) -> Bound:
    if sync is None and aio is None:
        raise TypeError(f"{type(owner).__name__} needs a sync or an async {name} store (or both)")
    return Bound(type(owner).__name__, {name: Pair(sync, aio)})


# -- CacheService ---------------------------------------------------------------------


def _timeout(timeout: object) -> float | None:
    """tenxyte's cache timeouts: None and 0 mean no expiry."""
    if timeout is None or timeout == 0:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    return float(timeout)


def _set(key: str, value: Any, timeout: int | None) -> Flow[bool]:
    ttl = _timeout(timeout)
    if ttl is not None and ttl < 0:  # already expired: what tenxyte's memory cache does
        yield from call("cache", "delete", key)
        return True
    yield from call("cache", "set", key, value, ttl)
    return True


def _delete(key: str) -> Flow[bool]:
    yield from call("cache", "delete", key)
    return True  # tenxyte: "True if key was deleted or didn't exist"


def _expire(key: str, timeout: int) -> Flow[bool]:
    ttl = _timeout(timeout)
    if ttl is not None and ttl <= 0:
        deleted: bool = yield from call("cache", "delete", key)
        return deleted
    changed: bool = yield from call("cache", "expire", key, ttl)
    return changed


def _ttl(key: str) -> Flow[int]:
    left: float | None = yield from call("cache", "ttl", key)
    if left is None:
        return -2
    if left == math.inf:
        return -1
    return int(left)


def _blacklist_for(jti: str, expires_in: int | None) -> Flow[bool]:
    # tenxyte's cache keeps an entry with timeout 0/None forever: the longest authstore TTL.
    seconds = float(expires_in) if expires_in else float(MAX_TTL)
    if seconds < 0:
        return True  # already expired
    yield from call("cache", "add_to_blacklist", jti, seconds)
    return True


def _rate_limit(key: str, max_requests: int, window_seconds: int) -> Flow[tuple[bool, int, int]]:
    result = yield from call("cache", "check_rate_limit", key, max_requests, window_seconds)
    return result.allowed, result.remaining, math.ceil(result.reset_after)


def _reset_rate_limit(key: str) -> Flow[bool]:
    yield from call("cache", "reset_rate_limit", key)
    return True


class AuthstoreCacheService(CacheService):  # type: ignore[misc]  # tenxyte is untyped
    """tenxyte's ``CacheService`` over an authstore cache store.

    Values are what authstore stores (JSON-compatible values and bytes, never None).
    ``timeout`` None or 0 means no expiry, as in tenxyte. Blacklisting uses authstore's
    revocation entries, and ``check_rate_limit`` is authstore's atomic limiter (tenxyte's
    default reads the counter, then increments: under concurrency it lets more through).
    """

    def __init__(
        self, cache: CacheStore | None = None, async_cache: AsyncCacheStore | None = None
    ) -> None:
        self._b = _bound(self, "cache", cache, async_cache)

    def get(self, key: str) -> Any | None:
        return self._b.run(call("cache", "get", key))

    async def get_async(self, key: str) -> Any | None:
        return await self._b.arun(call("cache", "get", key))

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return self._b.run(_set(key, value, timeout))

    async def set_async(self, key: str, value: Any, timeout: int | None = None) -> bool:  # noqa: ASYNC109 - tenxyte's signature
        return await self._b.arun(_set(key, value, timeout))

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        """Set only if absent: True for exactly one of any number of concurrent callers."""
        return bool(self._b.run(call("cache", "add", key, value, _timeout(timeout))))

    async def add_async(self, key: str, value: Any, timeout: int | None = None) -> bool:  # noqa: ASYNC109
        return bool(await self._b.arun(call("cache", "add", key, value, _timeout(timeout))))

    def delete(self, key: str) -> bool:
        return self._b.run(_delete(key))

    async def delete_async(self, key: str) -> bool:
        return await self._b.arun(_delete(key))

    def exists(self, key: str) -> bool:
        return bool(self._b.run(call("cache", "exists", key)))

    async def exists_async(self, key: str) -> bool:
        return bool(await self._b.arun(call("cache", "exists", key)))

    def increment(self, key: str, delta: int = 1) -> int:
        return int(self._b.run(call("cache", "incr", key, delta)))

    async def increment_async(self, key: str, delta: int = 1) -> int:
        return int(await self._b.arun(call("cache", "incr", key, delta)))

    def expire(self, key: str, timeout: int) -> bool:
        return self._b.run(_expire(key, timeout))

    async def expire_async(self, key: str, timeout: int) -> bool:  # noqa: ASYNC109
        return await self._b.arun(_expire(key, timeout))

    def ttl(self, key: str) -> int:
        return self._b.run(_ttl(key))

    async def ttl_async(self, key: str) -> int:
        return await self._b.arun(_ttl(key))

    def add_to_blacklist(self, token_jti: str, expires_in: int) -> bool:
        return self._b.run(_blacklist_for(token_jti, expires_in))

    async def add_to_blacklist_async(self, token_jti: str, expires_in: int) -> bool:
        return await self._b.arun(_blacklist_for(token_jti, expires_in))

    def is_blacklisted(self, token_jti: str) -> bool:
        return bool(self._b.run(call("cache", "is_blacklisted", token_jti)))

    async def is_blacklisted_async(self, token_jti: str) -> bool:
        return bool(await self._b.arun(call("cache", "is_blacklisted", token_jti)))

    def remove_from_blacklist(self, token_jti: str) -> bool:
        return bool(self._b.run(call("cache", "remove_from_blacklist", token_jti)))

    async def remove_from_blacklist_async(self, token_jti: str) -> bool:
        return bool(await self._b.arun(call("cache", "remove_from_blacklist", token_jti)))

    def check_rate_limit(
        self, key: str, max_requests: int, window_seconds: int
    ) -> tuple[bool, int, int]:
        return self._b.run(_rate_limit(key, max_requests, window_seconds))

    async def check_rate_limit_async(
        self, key: str, max_requests: int, window_seconds: int
    ) -> tuple[bool, int, int]:
        return await self._b.arun(_rate_limit(key, max_requests, window_seconds))

    def reset_rate_limit(self, key: str) -> bool:
        return self._b.run(_reset_rate_limit(key))

    async def reset_rate_limit_async(self, key: str) -> bool:
        return await self._b.arun(_reset_rate_limit(key))


# -- TokenBlacklistService ------------------------------------------------------------


def token_revoked(jti: str, user_id: str | None, issued_at: datetime) -> Flow[bool]:
    """Blacklisted by jti, or issued before the user's revocation instant (sub-second)."""
    if (yield from call("cache", "is_blacklisted", jti)):
        return True
    if not user_id:
        return False
    revoked_at: datetime | None = yield from call("cache", "user_tokens_revoked_at", user_id)
    return revoked_at is not None and issued_at < revoked_at


def _user_revoked(user_id: str, token_iat: datetime) -> Flow[bool]:
    revoked_at: datetime | None = yield from call("cache", "user_tokens_revoked_at", user_id)
    return revoked_at is not None and token_iat < revoked_at


def revoke_user(user_id: str, ttl: float | None) -> Flow[datetime]:
    # The instant on the core's clock, with microseconds: tokens carry the core's clock
    # too, so one issued right after this call (even in the same second) stays valid.
    at: datetime = yield from call(
        "cache", "revoke_user_tokens", user_id, datetime.now(UTC), expires_in=ttl
    )
    return at


def _blacklist_until(jti: str, expires_at: datetime) -> Flow[bool]:
    yield from call("cache", "add_to_blacklist", jti, expires_at=expires_at)
    return True


class AuthstoreTokenBlacklist:
    """tenxyte's ``TokenBlacklistService`` and ``AsyncTokenBlacklistService``.

    ``blacklist_token`` keeps the entry until the token's own ``expires_at`` (on the
    core's clock); ``revoke_all_user_tokens`` records the instant with microseconds and
    keeps it ``revocation_ttl`` seconds. ``revocation_ttl`` is required: the longest
    lifetime of a token the core issues (tenxyte's refresh token lifetime), after which
    no token the revocation covers can still be valid; None keeps every revocation
    forever and must be chosen explicitly. ``is_user_revoked`` compares instants exactly: a token issued after the
    revocation is valid even within the same second, provided its ``iat`` carries
    sub-second precision (``AuthstoreJWTService`` issues such tokens).
    """

    def __init__(
        self,
        cache: CacheStore | None = None,
        async_cache: AsyncCacheStore | None = None,
        *,
        revocation_ttl: float | None,
    ) -> None:
        self._b = _bound(self, "cache", cache, async_cache)
        self.revocation_ttl = check_ttl(revocation_ttl, "revocation_ttl")

    @property
    def bound(self) -> Bound:
        return self._b

    def is_blacklisted(self, jti: str) -> bool:
        return bool(self._b.run(call("cache", "is_blacklisted", jti)))

    async def is_blacklisted_async(self, jti: str) -> bool:
        return bool(await self._b.arun(call("cache", "is_blacklisted", jti)))

    def is_user_revoked(self, user_id: str, token_iat: datetime) -> bool:
        return self._b.run(_user_revoked(user_id, token_iat))

    async def is_user_revoked_async(self, user_id: str, token_iat: datetime) -> bool:
        return await self._b.arun(_user_revoked(user_id, token_iat))

    def revoke_all_user_tokens(self, user_id: str) -> datetime:
        return self._b.run(revoke_user(user_id, self.revocation_ttl))

    async def revoke_all_user_tokens_async(self, user_id: str) -> datetime:
        return await self._b.arun(revoke_user(user_id, self.revocation_ttl))

    def blacklist_token(
        self, jti: str, expires_at: datetime, user_id: str | None = None, reason: str = ""
    ) -> bool:
        return self._b.run(_blacklist_until(jti, expires_at))

    async def blacklist_token_async(
        self, jti: str, expires_at: datetime, user_id: str | None = None, reason: str = ""
    ) -> bool:
        return await self._b.arun(_blacklist_until(jti, expires_at))


# -- SessionRepository ----------------------------------------------------------------

_SESSION_FIELDS = frozenset(
    {"session_id", "user_id", "device_id", "ip_address", "user_agent", "created_at", "expires_at"}
)


def session_dict(record: SessionRecord, session_id: str | None) -> dict[str, Any]:
    """A session as tenxyte's services describe it (``session_id`` only when known)."""
    data: dict[str, Any] = dict(record.metadata)
    data.update(
        {
            "id": record.id,
            "user_id": record.user_id,
            "device_id": record.device_id,
            "ip_address": record.ip_address,
            "user_agent": record.user_agent,
            "created_at": record.created_at.isoformat(),
            "expires_at": record.expires_at.isoformat(),
            "last_seen_at": record.last_seen_at.isoformat(),
        }
    )
    if session_id is not None:
        data["session_id"] = session_id
    return data


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def create_session(
    user_id: object,
    device_id: object,
    metadata: Mapping[str, Any],
    expires_at: datetime,
    max_sessions: int | None,
) -> Flow[tuple[SessionRecord, str]]:
    """Store tenxyte's session under the hash of its ``session_id`` (a new token without one)."""
    if not isinstance(expires_at, datetime):
        raise TypeError(f"expires_at must be a datetime, not {type(expires_at).__name__}")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    ttl = (expires_at - datetime.now(UTC)).total_seconds()
    if ttl <= 0:
        raise ValueError("expires_at is already past")
    token = metadata.get("session_id")
    extras = {k: v for k, v in metadata.items() if k not in _SESSION_FIELDS}
    new = yield from call(
        "sessions",
        "create",
        str(user_id),
        ttl=ttl,
        device_id=_optional_str(device_id),
        ip_address=_optional_str(metadata.get("ip_address")),
        user_agent=_optional_str(metadata.get("user_agent")),
        metadata=extras,
        max_sessions=max_sessions,
        token=None if token is None else str(token),
    )
    return new.record, new.token


def _create_id(
    user_id: object,
    device_id: object,
    metadata: Mapping[str, Any],
    expires_at: datetime,
    max_sessions: int | None,
) -> Flow[str]:
    _record, token = yield from create_session(
        user_id, device_id, metadata, expires_at, max_sessions
    )
    return token


def get_session(session_id: str) -> Flow[dict[str, Any] | None]:
    record: SessionRecord | None = yield from call("sessions", "get", session_id)
    return None if record is None else session_dict(record, session_id)


def _user_sessions(user_id: str) -> Flow[list[dict[str, Any]]]:
    records: list[SessionRecord] = yield from call("sessions", "list", str(user_id))
    return [session_dict(record, None) for record in records]


def revoke_all_sessions(user_id: object, except_session_id: str | None) -> Flow[int]:
    count: int = yield from call(
        "sessions", "revoke_all", str(user_id), except_token=except_session_id
    )
    return count


class AuthstoreSessionRepository:
    """tenxyte's ``SessionRepository`` and ``AsyncSessionRepository``.

    ``create`` stores the session under the hash of ``metadata["session_id"]`` (tenxyte's
    session id, which is a bearer secret): only authstore's hash of it is kept, and
    ``get``/``revoke``/``revoke_all_for_user(except_session_id=)`` find it by the id.
    Session listings carry the public ``id``, never a ``session_id``. With
    ``max_sessions``, a user's oldest sessions beyond it are revoked atomically.
    """

    def __init__(
        self,
        sessions: SessionStore | None = None,
        async_sessions: AsyncSessionStore | None = None,
        *,
        max_sessions: int | None = None,
    ) -> None:
        self._b = _bound(self, "sessions", sessions, async_sessions)
        self.max_sessions = max_sessions

    @property
    def bound(self) -> Bound:
        return self._b

    def create(
        self, user_id: str, device_id: str, metadata: dict[str, Any], expires_at: datetime
    ) -> str:
        return self._b.run(_create_id(user_id, device_id, metadata, expires_at, self.max_sessions))

    async def create_async(
        self, user_id: str, device_id: str, metadata: dict[str, Any], expires_at: datetime
    ) -> str:
        return await self._b.arun(
            _create_id(user_id, device_id, metadata, expires_at, self.max_sessions)
        )

    def get(self, session_id: str) -> dict[str, Any] | None:
        return self._b.run(get_session(session_id))

    async def get_async(self, session_id: str) -> dict[str, Any] | None:
        return await self._b.arun(get_session(session_id))

    def revoke(self, session_id: str) -> bool:
        return bool(self._b.run(call("sessions", "revoke", session_id)))

    async def revoke_async(self, session_id: str) -> bool:
        return bool(await self._b.arun(call("sessions", "revoke", session_id)))

    def revoke_all_for_user(self, user_id: str, except_session_id: str | None = None) -> int:
        return self._b.run(revoke_all_sessions(user_id, except_session_id))

    async def revoke_all_for_user_async(
        self, user_id: str, except_session_id: str | None = None
    ) -> int:
        return await self._b.arun(revoke_all_sessions(user_id, except_session_id))

    def get_user_sessions(self, user_id: str) -> list[dict[str, Any]]:
        return self._b.run(_user_sessions(user_id))

    async def get_user_sessions_async(self, user_id: str) -> list[dict[str, Any]]:
        return await self._b.arun(_user_sessions(user_id))


# -- TOTPStorage ----------------------------------------------------------------------


def user_data(user_id: str, state: TotpState | None) -> TOTPUserData | None:
    """tenxyte's view of the TOTP state: the active secret once enabled, else the pending one."""
    if state is None:
        return None
    secret = state.secret if state.enabled else state.pending_secret
    return TOTPUserData(
        id=user_id,
        email="",
        totp_secret=None if secret is None else secret.decode("utf-8"),
        is_2fa_enabled=state.enabled,
        backup_codes=list(state.backup_code_hashes),
    )


def _load_user_data(user_id: str) -> Flow[TOTPUserData | None]:
    state: TotpState | None = yield from call("totp", "load", user_id)
    return user_data(user_id, state)


_FERNET = re.compile(rb"gAAAAA[A-Za-z0-9_\-]{50,}={0,2}")
"""A Fernet token (what tenxyte stores with ``TENXYTE_TOTP_ENCRYPTION_KEY``): version
byte 0x80, then a timestamp, IV, ciphertext and HMAC, in URL-safe base64."""


class TotpSecrets:
    """What ``AuthstoreTOTPStorage`` does to a TOTP secret on its way to and from the store.

    With a ``box`` (``authstore.crypto.SecretBox``) the secret is sealed for its user
    with AES-GCM and opened on load. Without one, only ciphertext is stored (a Fernet
    token from tenxyte's ``TENXYTE_TOTP_ENCRYPTION_KEY``): a secret that is not one is
    refused before any I/O, unless ``allow_plaintext`` says the caller accepts plaintext
    TOTP secrets at rest.
    """

    def __init__(self, box: SecretBox | None = None, *, allow_plaintext: bool = False) -> None:
        self.box, self.allow_plaintext = box, allow_plaintext

    def seal(self, user_id: str, secret: bytes) -> bytes:
        if self.box is not None:
            return self.box.encrypt(user_id, secret)
        if not (self.allow_plaintext or _FERNET.fullmatch(secret)):
            raise ConfigurationError(
                "AuthstoreTOTPStorage refuses a TOTP secret that is not ciphertext: set "
                "tenxyte's TENXYTE_TOTP_ENCRYPTION_KEY (a Fernet key), give the storage "
                "box=authstore.crypto.SecretBox(...), or pass allow_plaintext_secrets=True"
            )
        return secret

    def open(self, user_id: str, state: TotpState | None) -> TotpState | None:
        box = self.box
        if box is None or state is None:
            return state
        return dataclasses.replace(
            state,
            secret=None if state.secret is None else box.decrypt(user_id, state.secret),
            pending_secret=None
            if state.pending_secret is None
            else box.decrypt(user_id, state.pending_secret),
        )


class _SealedTotp:
    """A sync TOTP store whose secrets pass through ``TotpSecrets``; the rest as is."""

    def __init__(self, store: TotpStore, secrets: TotpSecrets) -> None:
        self._store, self._secrets = store, secrets

    def save_pending(self, user_id: str, secret: bytes) -> None:
        self._store.save_pending(user_id, self._secrets.seal(user_id, secret))

    def load(self, user_id: str) -> TotpState | None:
        return self._secrets.open(user_id, self._store.load(user_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _AsyncSealedTotp:
    """The async twin of ``_SealedTotp``: the sealing is CPU work, done before awaiting."""

    def __init__(self, store: AsyncTotpStore, secrets: TotpSecrets) -> None:
        self._store, self._secrets = store, secrets

    async def save_pending(self, user_id: str, secret: bytes) -> None:
        await self._store.save_pending(user_id, self._secrets.seal(user_id, secret))

    async def load(self, user_id: str) -> TotpState | None:
        return self._secrets.open(user_id, await self._store.load(user_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _save_secret(user_id: str, encrypted_secret: str) -> Flow[bool]:
    if not isinstance(encrypted_secret, str):
        raise TypeError(f"encrypted_secret must be a str, not {type(encrypted_secret).__name__}")
    yield from call("totp", "save_pending", user_id, encrypted_secret.encode("utf-8"))
    return True


def _save_codes(user_id: str, hashed_codes: list[str]) -> Flow[bool]:
    yield from call("totp", "replace_backup_codes", user_id, list(hashed_codes))
    return True


class AuthstoreTOTPStorage:
    """tenxyte's ``TOTPStorage`` and ``AsyncTOTPStorage`` over an authstore TOTP store.

    ``save_totp_secret`` starts enrolment (the secret becomes active on ``enable_2fa``);
    ``load_user_data`` returns the stored backup-code hashes (tenxyte verifies its
    bcrypt hashes itself). ``email`` is not stored: it is "" in ``TOTPUserData``.

    Secrets are stored as ciphertext only (see ``TotpSecrets``): tenxyte's Fernet
    ciphertext as given, or any secret sealed with ``box``; a plaintext secret is a
    ``ConfigurationError`` unless ``allow_plaintext_secrets=True``. Without an async
    store, the ``*_async`` methods run the sync store in a worker thread.
    """

    def __init__(
        self,
        totp: TotpStore | None = None,
        async_totp: AsyncTotpStore | None = None,
        *,
        box: SecretBox | None = None,
        allow_plaintext_secrets: bool = False,
    ):
        secrets = TotpSecrets(box, allow_plaintext=allow_plaintext_secrets)
        self._b = _bound(
            self,
            "totp",
            None if totp is None else _SealedTotp(totp, secrets),
            None if async_totp is None else _AsyncSealedTotp(async_totp, secrets),
        )

    @property
    def bound(self) -> Bound:
        return self._b

    def save_totp_secret(self, user_id: str, encrypted_secret: str) -> bool:
        return self._b.run(_save_secret(user_id, encrypted_secret))

    async def save_totp_secret_async(self, user_id: str, encrypted_secret: str) -> bool:
        return await self._b.arun(_save_secret(user_id, encrypted_secret))

    def save_backup_codes(self, user_id: str, hashed_codes: list[str]) -> bool:
        return self._b.run(_save_codes(user_id, hashed_codes))

    async def save_backup_codes_async(self, user_id: str, hashed_codes: list[str]) -> bool:
        return await self._b.arun(_save_codes(user_id, hashed_codes))

    def enable_2fa(self, user_id: str) -> bool:
        return bool(self._b.run(call("totp", "enable", user_id)))

    async def enable_2fa_async(self, user_id: str) -> bool:
        return bool(await self._b.arun(call("totp", "enable", user_id)))

    def disable_2fa(self, user_id: str) -> bool:
        return bool(self._b.run(call("totp", "disable", user_id)))

    async def disable_2fa_async(self, user_id: str) -> bool:
        return bool(await self._b.arun(call("totp", "disable", user_id)))

    def load_user_data(self, user_id: str) -> TOTPUserData | None:
        return self._b.run(_load_user_data(user_id))

    async def load_user_data_async(self, user_id: str) -> TOTPUserData | None:
        return await self._b.arun(_load_user_data(user_id))


# -- CodeReplayProtection -------------------------------------------------------------


def replay_key(user_id: str, code: str) -> str:
    """The cache key of a used code: a hash of the user and the NFKC form of the code.

    NFKC because pyotp compares codes after NFKC normalization: keyed by the raw string,
    the code in full-width digits would verify as 123456 a second time.
    """
    material = f"{user_id}\x00{unicodedata.normalize('NFKC', code).strip()}"
    return "tenxyte:totp_used:" + hashlib.sha256(material.encode("utf-8")).hexdigest()


def _mark_used(user_id: str, code: str, ttl_seconds: int) -> Flow[bool]:
    added: bool = yield from call(
        "cache", "add", replay_key(user_id, code), True, float(ttl_seconds)
    )
    return added


class AuthstoreCodeReplayProtection:
    """tenxyte's ``CodeReplayProtection`` and ``AsyncCodeReplayProtection`` over a cache.

    ``mark_code_used`` is authstore's atomic ``add``: True for exactly one caller. tenxyte's
    own ``verify_code`` ignores that answer (it checks ``is_code_used`` first, then
    marks), so with plain tenxyte a code can still verify twice under concurrency;
    ``AuthstoreTOTPService`` claims the TOTP time step atomically instead.
    """

    def __init__(
        self, cache: CacheStore | None = None, async_cache: AsyncCacheStore | None = None
    ) -> None:
        self._b = _bound(self, "cache", cache, async_cache)

    def is_code_used(self, user_id: str, code: str) -> bool:
        return bool(self._b.run(call("cache", "exists", replay_key(user_id, code))))

    async def is_code_used_async(self, user_id: str, code: str) -> bool:
        return bool(await self._b.arun(call("cache", "exists", replay_key(user_id, code))))

    def mark_code_used(self, user_id: str, code: str, ttl_seconds: int) -> bool:
        return self._b.run(_mark_used(user_id, code, ttl_seconds))

    async def mark_code_used_async(self, user_id: str, code: str, ttl_seconds: int) -> bool:
        return await self._b.arun(_mark_used(user_id, code, ttl_seconds))


# -- MagicLinkRepository --------------------------------------------------------------


def link_token(record: MagicLinkRecord, token: str = "") -> MagicLinkToken:
    """tenxyte's view of a link; ``token`` is "" (storage never has the raw token)."""
    return MagicLinkToken(
        id=record.id,
        token=token,
        user_id=record.user_id,
        email=record.email,
        application_id=record.application_id,
        ip_address=record.ip_address,
        user_agent=record.user_agent,
        created_at=record.created_at,
        expires_at=record.expires_at,
        used_at=record.consumed_at,
        is_used=record.consumed_at is not None,
    )


_PEEKED: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "authstore_tenxyte_peeked_link", default=None
)
"""(link id, raw token) of the last ``get_by_token`` in this thread or task: tenxyte's
``consume(token_id)`` names the link by id, authstore consumes by token. In memory only."""


def _create_link(
    token_hash: str,
    user_id: object,
    email: str,
    application_id: str | None,
    ip_address: str | None,
    user_agent: str | None,
    expiry_minutes: int,
) -> Flow[MagicLinkToken]:
    record: MagicLinkRecord = yield from call(
        "links",
        "issue_hashed",
        str(user_id),
        email,
        token_hash,
        ttl=float(expiry_minutes) * 60,
        application_id=_optional_str(application_id),
        ip_address=ip_address or None,
        user_agent=user_agent or None,
        revoke_previous=False,  # tenxyte calls invalidate_user_tokens first
    )
    return link_token(record)


def _get_link(token: str) -> Flow[MagicLinkToken | None]:
    record: MagicLinkRecord | None = yield from call("links", "peek", token)
    if record is None:
        return None
    _PEEKED.set((record.id, token))
    return link_token(record)


def _consume_by_id(token_id: str) -> Flow[bool]:
    peeked = _PEEKED.get()
    if peeked is None or peeked[0] != token_id:
        return False  # authstore consumes by token only; fail closed
    _PEEKED.set(None)
    record = yield from call("links", "consume", peeked[1])
    return record is not None


def _invalidate(user_id: object) -> Flow[int]:
    count: int = yield from call("links", "revoke_user", str(user_id))
    return count


class AuthstoreMagicLinkRepository:
    """tenxyte's ``MagicLinkRepository`` and ``AsyncMagicLinkRepository``.

    ``create`` stores the SHA-256 tenxyte computed (``issue_hashed``): the raw token is
    never stored. ``invalidate_user_tokens`` revokes every unused link of the user
    (whatever the application). ``consume(token_id)`` consumes the link this thread or
    task last read with ``get_by_token`` (tenxyte's flow) and answers whether this call
    used it; any other id returns False.
    """

    def __init__(
        self,
        links: MagicLinkStore | None = None,
        async_links: AsyncMagicLinkStore | None = None,
    ) -> None:
        self._b = _bound(self, "links", links, async_links)

    @property
    def bound(self) -> Bound:
        return self._b

    def create(
        self,
        token_hash: str,
        user_id: str,
        email: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        expiry_minutes: int = 15,
    ) -> MagicLinkToken:
        return self._b.run(
            _create_link(
                token_hash, user_id, email, application_id, ip_address, user_agent, expiry_minutes
            )
        )

    async def create_async(
        self,
        token_hash: str,
        user_id: str,
        email: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        expiry_minutes: int = 15,
    ) -> MagicLinkToken:
        return await self._b.arun(
            _create_link(
                token_hash, user_id, email, application_id, ip_address, user_agent, expiry_minutes
            )
        )

    def get_by_token(self, token: str) -> MagicLinkToken | None:
        return self._b.run(_get_link(token))

    async def get_by_token_async(self, token: str) -> MagicLinkToken | None:
        return await self._b.arun(_get_link(token))

    def invalidate_user_tokens(self, user_id: str, application_id: str | None = None) -> int:
        return self._b.run(_invalidate(user_id))

    async def invalidate_user_tokens_async(
        self, user_id: str, application_id: str | None = None
    ) -> int:
        return await self._b.arun(_invalidate(user_id))

    def consume(self, token_id: str) -> bool:
        return self._b.run(_consume_by_id(token_id))

    async def consume_async(self, token_id: str) -> bool:
        return await self._b.arun(_consume_by_id(token_id))
