"""Drop-in subclasses of tenxyte's services whose check-and-consume steps are atomic.

tenxyte's services read, check, then consume, and ignore what the consume answers,
so concurrent callers all pass the check: one magic link signs in many callers, one
TOTP code verifies many times. These subclasses keep tenxyte's checks and messages
and make the final step one of authstore's atomic operations, whose answer decides:

- magic link: ``consume`` (exactly one caller gets the link);
- TOTP code: ``claim_step`` of the matched time step (once, and never an older step);
- backup code: bcrypt in the core over ``load().backup_code_hashes``, then
  ``use_backup_code(matched_hash)`` (exactly once);
- refresh token: ``revoke`` of the presented token (exactly one rotation);
- sessions: the session store is the only source of truth (no stale cache).

CPU work (JWT, bcrypt, TOTP, QR codes) runs synchronously in both sync and
``*_async`` methods; every storage step of an ``*_async`` method awaits the async store.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pyotp.utils import strings_equal
from tenxyte.core.cache_service import CacheService
from tenxyte.core.jwt_service import (
    SENSITIVE_CLAIM_KEYS,
    DecodedToken,
    JWTService,
    SecurityWarning,
    TokenPair,
)
from tenxyte.core.magic_link_service import MagicLinkResult, MagicLinkService
from tenxyte.core.session_service import SessionService
from tenxyte.core.totp_service import TOTPService, TOTPSetupResult

from authstore.contracts.records import SessionRecord, TotpState
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.integrations.tenxyte._bound import Bound, Flow, Pair, Suffixed, call
from authstore.integrations.tenxyte.storage import (
    AuthstoreCodeReplayProtection,
    AuthstoreMagicLinkRepository,
    AuthstoreSessionRepository,
    AuthstoreTokenBlacklist,
    AuthstoreTOTPStorage,
    _optional_str,
    create_session,
    revoke_user,
    session_dict,
    token_revoked,
    user_data,
)

__all__ = [
    "AuthstoreJWTService",
    "AuthstoreMagicLinkService",
    "AuthstoreSessionService",
    "AuthstoreTOTPService",
]

logger = logging.getLogger(__name__)

_PROTECTED_CLAIMS = frozenset(
    {"type", "jti", "user_id", "app_id", "iat", "exp", "nbf", "iss", "aud"}
)
MIN_REFRESH_TOKEN_CHARS = 32


def _require(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be an {kind.__name__}, not {type(value).__name__}")


# -- JWT ------------------------------------------------------------------------------


class AuthstoreJWTService(JWTService):  # type: ignore[misc]  # tenxyte is untyped
    """tenxyte's ``JWTService`` over ``AuthstoreTokenBlacklist`` (and refresh tokens in a
    session store).

    - Access tokens carry ``iat`` with microseconds (a JWT NumericDate may be
      fractional), so ``revoke_all_user_tokens`` rejects exactly the tokens issued before
      it: tenxyte's whole-second ``iat`` rejected a token issued later in the same second.
    - ``decode_token_async`` decodes in the calling thread (CPU) and awaits the store.
    - With ``refresh_tokens`` (an authstore session store, its own namespace advised),
      ``generate_new_token_pair`` stores the refresh token's hash and ``refresh_tokens``
      rotates it atomically: among concurrent refreshes with one token exactly one gets
      a new pair. ``revoke_all_user_tokens`` also revokes the user's refresh tokens.
      Without it, refresh tokens are not stored and ``refresh_tokens`` returns None
      (tenxyte's own path needs its Django models).
    """

    def __init__(
        self,
        settings: Any,
        blacklist_service: AuthstoreTokenBlacklist,
        *,
        refresh_tokens: SessionStore | None = None,
        async_refresh_tokens: AsyncSessionStore | None = None,
    ) -> None:
        _require(blacklist_service, AuthstoreTokenBlacklist, "blacklist_service")
        super().__init__(settings, blacklist_service)
        targets: dict[str, Pair | Suffixed] = dict(blacklist_service.bound.targets)
        if refresh_tokens is not None or async_refresh_tokens is not None:
            targets["refresh"] = Pair(refresh_tokens, async_refresh_tokens)
        self._b = Bound(type(self).__name__, targets)
        self._revocation_ttl = blacklist_service.revocation_ttl

    # CPU: one signature, with a sub-second iat.
    def generate_access_token(
        self,
        user_id: str,
        application_id: str,
        extra_claims: dict[str, Any] | None = None,
        custom_lifetime: timedelta | None = None,
    ) -> tuple[str, str, datetime]:
        if not self.signing_key:
            raise ValueError(
                f"JWT signing key is required for algorithm {self.algorithm}. "
                f"Set TENXYTE_JWT_SECRET_KEY in settings."
            )
        now = datetime.now(UTC)
        jti = str(uuid.uuid4())
        lifetime = custom_lifetime if custom_lifetime is not None else self.access_token_lifetime
        expires_at = now + lifetime
        payload: dict[str, Any] = {
            "type": "access",
            "jti": jti,
            "user_id": str(user_id),
            "app_id": str(application_id),
            "iat": now.timestamp(),  # microseconds kept: see the class docstring
            "exp": expires_at,
            "nbf": now,
        }
        if self.issuer:
            payload["iss"] = self.issuer
        if self.audience:
            payload["aud"] = self.audience
        for key, value in (extra_claims or {}).items():
            if key in _PROTECTED_CLAIMS:
                continue
            if key in SENSITIVE_CLAIM_KEYS:
                warnings.warn(
                    f"Sensitive key '{key}' detected in JWT extra_claims. "
                    "Including PII in JWT payloads violates GDPR data minimization principles. "
                    "Store sensitive attributes server-side and look them up by user_id.",
                    SecurityWarning,
                    stacklevel=3,
                )
            payload[key] = value
        token = jwt.encode(payload, self.signing_key, algorithm=self.algorithm)
        return token, jti, expires_at

    def _checked(self, decoded: DecodedToken) -> Flow[DecodedToken]:
        revoked = yield from token_revoked(decoded.jti, decoded.user_id, decoded.iat)
        return dataclasses.replace(decoded, is_blacklisted=revoked, is_valid=not revoked)

    def decode_token(self, token: str, check_blacklist: bool = True) -> DecodedToken | None:
        decoded: DecodedToken | None = super().decode_token(token, check_blacklist=False)
        if decoded is None or not decoded.is_valid or not check_blacklist:
            return decoded
        return self._b.run(self._checked(decoded))

    async def decode_token_async(
        self, token: str, check_blacklist: bool = True
    ) -> DecodedToken | None:
        decoded: DecodedToken | None = super().decode_token(token, check_blacklist=False)
        if decoded is None or not decoded.is_valid or not check_blacklist:
            return decoded
        return await self._b.arun(self._checked(decoded))

    def _revoke_all(self, user_id: str) -> Flow[bool]:
        yield from revoke_user(str(user_id), self._revocation_ttl)
        if "refresh" in self._b.targets:
            yield from call("refresh", "revoke_all", str(user_id))
        return True

    def revoke_all_user_tokens(self, user_id: str, reason: str = "password_change") -> bool:
        return self._b.run(self._revoke_all(user_id))

    async def revoke_all_user_tokens_async(
        self, user_id: str, reason: str = "password_change"
    ) -> bool:
        return await self._b.arun(self._revoke_all(user_id))

    def _store_refresh(self, pair: TokenPair, user_id: str, application_id: str) -> Flow[TokenPair]:
        if "refresh" in self._b.targets:
            yield from call(
                "refresh",
                "create",
                str(user_id),
                ttl=float(self.refresh_token_lifetime.total_seconds()),
                application_id=str(application_id),
                token=pair.refresh_token,
            )
        return pair

    def _new_pair(
        self, user_id: str, application_id: str, extra_claims: dict[str, Any] | None
    ) -> Flow[TokenPair]:
        pair: TokenPair = super().generate_new_token_pair(user_id, application_id, extra_claims)
        return (yield from self._store_refresh(pair, user_id, application_id))

    def generate_new_token_pair(
        self, user_id: str, application_id: str, extra_claims: dict[str, Any] | None = None
    ) -> TokenPair:
        return self._b.run(self._new_pair(user_id, application_id, extra_claims))

    async def generate_new_token_pair_async(
        self, user_id: str, application_id: str, extra_claims: dict[str, Any] | None = None
    ) -> TokenPair:
        return await self._b.arun(self._new_pair(user_id, application_id, extra_claims))

    def _refresh(self, refresh_token: str) -> Flow[TokenPair | None]:
        if "refresh" not in self._b.targets:
            return None
        if not isinstance(refresh_token, str) or not (
            MIN_REFRESH_TOKEN_CHARS <= len(refresh_token) <= 512
        ):
            return None
        record: SessionRecord | None = yield from call("refresh", "get", refresh_token)
        if record is None:
            return None
        # The atomic step: revoke answers True to exactly one of any concurrent callers.
        if not (yield from call("refresh", "revoke", refresh_token)):
            return None
        app = record.application_id or "default"
        return (yield from self._new_pair(record.user_id, app, None))

    def refresh_tokens(
        self, refresh_token: str, user_repository: Any | None = None
    ) -> TokenPair | None:
        return self._b.run(self._refresh(refresh_token))

    async def refresh_tokens_async(
        self, refresh_token: str, user_repository: Any | None = None
    ) -> TokenPair | None:
        return await self._b.arun(self._refresh(refresh_token))


# -- TOTP -----------------------------------------------------------------------------


class AuthstoreTOTPService(TOTPService):  # type: ignore[misc]  # tenxyte is untyped
    """tenxyte's ``TOTPService`` whose code checks are single-use under any concurrency.

    A TOTP code is accepted when this call claims its time step (``claim_step``: once,
    and never a step older than one already claimed); a backup code is matched with
    bcrypt against the stored hashes, then used with ``use_backup_code`` (once).
    ``storage`` (an ``AuthstoreTOTPStorage``) serves ``verify_code`` called directly (a
    user with no TOTP state there has no step to claim: False, fail closed); the methods
    that take a ``storage`` use the one given. Without ``storage``, ``verify_code`` with a
    ``user_id`` needs an ``AuthstoreCodeReplayProtection`` (its atomic ``add``, keyed by
    the NFKC form of the code). ``backup_code_rounds`` is
    bcrypt's cost for new backup codes (tenxyte: 12).
    """

    def __init__(
        self,
        settings: Any,
        encryption_key: str | None = None,
        replay_protection: AuthstoreCodeReplayProtection | None = None,
        *,
        storage: AuthstoreTOTPStorage | None = None,
        backup_code_rounds: int = 12,
    ) -> None:
        if storage is not None:
            _require(storage, AuthstoreTOTPStorage, "storage")
        if replay_protection is not None:
            _require(replay_protection, AuthstoreCodeReplayProtection, "replay_protection")
        if isinstance(backup_code_rounds, bool) or not isinstance(backup_code_rounds, int):
            raise TypeError("backup_code_rounds must be an int")
        if not 4 <= backup_code_rounds <= 31:
            raise ValueError("backup_code_rounds must be 4 to 31 (bcrypt's range)")
        super().__init__(
            settings, encryption_key=encryption_key, replay_protection=replay_protection
        )
        self.storage = storage
        self.backup_code_rounds = backup_code_rounds
        targets: dict[str, Pair | Suffixed] = {}
        if storage is not None:
            targets.update(storage.bound.targets)
        if replay_protection is not None:
            targets["replay"] = Suffixed(replay_protection)
        self._b = Bound(type(self).__name__, targets)

    def _on(self, storage: object) -> Bound:
        _require(storage, AuthstoreTOTPStorage, "storage")
        assert isinstance(storage, AuthstoreTOTPStorage)
        return storage.bound

    # CPU -------------------------------------------------------------------------

    def generate_backup_codes(self, count: int | None = None) -> tuple[list[str], list[str]]:
        import bcrypt

        plain: list[str] = []
        hashed: list[str] = []
        for _ in range(count or self.backup_codes_count):
            code = secrets.token_hex(self.BACKUP_CODE_LENGTH)
            formatted = f"{code[:8]}-{code[8:]}"
            plain.append(formatted)
            salt = bcrypt.gensalt(rounds=self.backup_code_rounds)
            hashed.append(bcrypt.hashpw(formatted.encode("utf-8"), salt).decode("utf-8"))
        return plain, hashed

    @staticmethod
    def matching_backup_hash(code: str, hashes: tuple[str, ...] | list[str]) -> str | None:
        """The stored hash this backup code matches (tenxyte's normalization), or None."""
        import bcrypt

        if not isinstance(code, str) or not code:
            return None
        normalized = code.lower().replace(" ", "").replace("-", "")
        formatted = f"{normalized[:8]}-{normalized[8:]}" if len(normalized) == 16 else code.lower()
        for stored in hashes:
            try:
                if bcrypt.checkpw(formatted.encode("utf-8"), stored.encode("utf-8")):
                    return stored
            except ValueError:  # a malformed stored hash matches nothing
                continue
        return None

    def matching_step(self, secret: str, code: str, valid_window: int | None = None) -> int | None:
        """The time step (counter) whose code this is, within the window, or None."""
        window = valid_window if valid_window is not None else self.valid_window
        if not secret or not isinstance(code, str) or not code:
            return None
        try:
            totp = self.get_totp(secret)
            now = totp.timecode(time.time())
            for offset in sorted(range(-window, window + 1), key=abs):
                step: int = now + offset
                if step >= 0 and strings_equal(code, totp.generate_otp(step)):
                    return step
        except Exception as error:
            logger.error("[TOTP] Verification error: %s", error)
        return None

    # Flows -----------------------------------------------------------------------

    def _code_flow(
        self, secret: str | None, code: str, user_id: str | None, window: int | None
    ) -> Flow[bool]:
        if not secret:
            return False
        step = self.matching_step(secret, code, window)
        if step is None:
            return False
        if not user_id:
            return True  # tenxyte: no user, no replay protection
        if "totp" in self._b.targets or "replay" not in self._b.targets:
            return (yield from self._claim_step(user_id, step))
        # No TOTP store: the replay protection's atomic add, whose answer decides.
        used_window = window if window is not None else self.valid_window
        ttl = used_window * 30 * 2 + 60
        marked = yield from call("replay", "mark_code_used", str(user_id), code, ttl)
        if not marked:
            logger.warning("[TOTP] Replay attack prevented for user %s", user_id)
        return bool(marked)

    def _claim_step(self, user_id: str, step: int) -> Flow[bool]:
        """The atomic step: True for exactly one caller, and never for an older step."""
        claimed: bool = yield from call("totp", "claim_step", str(user_id), step)
        if not claimed:
            logger.warning("[TOTP] Replay attack prevented for user %s", user_id)
        return claimed

    def _claim_flow(self, secret: str | None, code: str, user_id: str) -> Flow[bool]:
        """A TOTP code of a user whose state is in the bound TOTP store."""
        step = self.matching_step(secret, code) if secret else None
        if step is None:
            return False
        return (yield from self._claim_step(user_id, step))

    def _backup_flow(self, user_id: str, code: str, hashes: tuple[str, ...]) -> Flow[bool]:
        matched = self.matching_backup_hash(code, hashes)
        if matched is None:
            return False
        used: bool = yield from call("totp", "use_backup_code", str(user_id), matched)
        return used

    def _load(self, user_id: str) -> Flow[tuple[TotpState | None, Any]]:
        state: TotpState | None = yield from call("totp", "load", str(user_id))
        return state, user_data(str(user_id), state)

    def _setup(self, user_id: str, email: str) -> Flow[TOTPSetupResult]:
        secret = self.generate_secret()
        encrypted = self._encrypt_secret(secret)
        yield from call("totp", "save_pending", str(user_id), encrypted.encode("utf-8"))
        qr_code = self.generate_qr_code(secret, email)
        plain_codes, hashed_codes = self.generate_backup_codes()
        yield from call("totp", "replace_backup_codes", str(user_id), hashed_codes)
        return TOTPSetupResult(
            secret=secret,
            qr_code=qr_code,
            provisioning_uri=self.get_provisioning_uri(secret, email),
            backup_codes=plain_codes,
        )

    def _confirm(self, user_id: str, code: str) -> Flow[tuple[bool, str]]:
        _state, data = yield from self._load(user_id)
        if not data or not data.totp_secret:
            return False, "2FA setup not initiated. Call setup first."
        if data.is_2fa_enabled:
            return False, "2FA is already enabled."
        secret = self._decrypt_secret(data.totp_secret)
        if not secret:
            return False, "Failed to decrypt TOTP secret."
        if not (yield from self._claim_flow(secret, code, user_id)):
            return False, "Invalid code. Please try again."
        if not (yield from call("totp", "enable", str(user_id))):
            return False, "2FA setup not initiated. Call setup first."
        logger.info("[TOTP] 2FA enabled for user %s", user_id)
        return True, ""

    def _verify_2fa(self, user_id: str, code: str) -> Flow[tuple[bool, str]]:
        state, data = yield from self._load(user_id)
        if state is None or data is None:
            return False, "User not found."
        if not data.is_2fa_enabled:
            return True, ""
        if not code:
            return False, "2FA code required."
        secret = self._decrypt_secret(data.totp_secret) if data.totp_secret else None
        step = self.matching_step(secret, code) if secret else None
        if step is not None:  # a TOTP code (not a backup code): valid once
            if (yield from self._claim_step(user_id, step)):
                return True, ""
            return False, "Invalid 2FA code."
        if (yield from self._backup_flow(user_id, code, state.backup_code_hashes)):
            logger.info("[TOTP] Backup code used for user %s", user_id)
            return True, ""
        return False, "Invalid 2FA code."

    def _disable(self, user_id: str, code: str) -> Flow[tuple[bool, str]]:
        state, data = yield from self._load(user_id)
        if state is None or data is None:
            return False, "User not found."
        if not data.is_2fa_enabled:
            return False, "2FA is not enabled."
        secret = self._decrypt_secret(data.totp_secret) if data.totp_secret else None
        valid = bool(secret) and (yield from self._claim_flow(secret, code, user_id))
        if not valid and state.backup_code_hashes:
            valid = yield from self._backup_flow(user_id, code, state.backup_code_hashes)
        if not valid:
            return False, "Invalid code."
        yield from call("totp", "disable", str(user_id))
        logger.info("[TOTP] 2FA disabled for user %s", user_id)
        return True, ""

    def _regenerate(self, user_id: str, code: str) -> Flow[tuple[bool, list[str], str]]:
        _state, data = yield from self._load(user_id)
        if not data:
            return False, [], "User not found."
        if not data.is_2fa_enabled:
            return False, [], "2FA is not enabled."
        secret = self._decrypt_secret(data.totp_secret) if data.totp_secret else None
        if not (yield from self._claim_flow(secret, code, user_id)):
            return False, [], "Invalid code."
        plain_codes, hashed_codes = self.generate_backup_codes()
        yield from call("totp", "replace_backup_codes", str(user_id), hashed_codes)
        logger.info("[TOTP] Backup codes regenerated for user %s", user_id)
        return True, plain_codes, ""

    # tenxyte's methods -----------------------------------------------------------

    def verify_code(
        self, secret: str, code: str, user_id: str | None = None, valid_window: int | None = None
    ) -> bool:
        return self._b.run(self._code_flow(secret, code, user_id, valid_window))

    async def verify_code_async(
        self, secret: str, code: str, user_id: str | None = None, valid_window: int | None = None
    ) -> bool:
        return await self._b.arun(self._code_flow(secret, code, user_id, valid_window))

    def setup_2fa(self, user_id: str, email: str, storage: AuthstoreTOTPStorage) -> TOTPSetupResult:
        return self._on(storage).run(self._setup(user_id, email))

    async def setup_2fa_async(
        self, user_id: str, email: str, storage: AuthstoreTOTPStorage
    ) -> TOTPSetupResult:
        return await self._on(storage).arun(self._setup(user_id, email))

    def confirm_2fa_setup(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return self._on(storage).run(self._confirm(user_id, code))

    async def confirm_2fa_setup_async(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return await self._on(storage).arun(self._confirm(user_id, code))

    def verify_2fa(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return self._on(storage).run(self._verify_2fa(user_id, code))

    async def verify_2fa_async(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return await self._on(storage).arun(self._verify_2fa(user_id, code))

    def disable_2fa(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return self._on(storage).run(self._disable(user_id, code))

    async def disable_2fa_async(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, str]:
        return await self._on(storage).arun(self._disable(user_id, code))

    def regenerate_backup_codes(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, list[str], str]:
        return self._on(storage).run(self._regenerate(user_id, code))

    async def regenerate_backup_codes_async(
        self, user_id: str, code: str, storage: AuthstoreTOTPStorage
    ) -> tuple[bool, list[str], str]:
        return await self._on(storage).arun(self._regenerate(user_id, code))


# -- Magic links ----------------------------------------------------------------------


def _user_fields(user: Any, email: str) -> tuple[Any, Any]:
    if isinstance(user, dict):
        return user.get("id"), user.get("email", email)
    return getattr(user, "id", None), getattr(user, "email", email)


class AuthstoreMagicLinkService(MagicLinkService):  # type: ignore[misc]  # tenxyte is untyped
    """tenxyte's ``MagicLinkService`` in which a link signs in exactly once.

    ``request_magic_link`` stores tenxyte's token hash and revokes the user's previous
    links in the same atomic step (``issue_hashed(revoke_previous=True)``).
    ``verify_magic_link`` runs tenxyte's checks on ``peek``, then ``consume``s: among any
    number of concurrent callers with one link, one succeeds; the others get
    "Magic link has expired or already been used.". A failed check (application,
    device, inactive or locked account) leaves the link usable, as in tenxyte.
    """

    def __init__(
        self,
        settings: Any,
        repo: AuthstoreMagicLinkRepository,
        user_lookup: Any,
        email_service: Any,
    ) -> None:
        _require(repo, AuthstoreMagicLinkRepository, "repo")
        super().__init__(settings, repo, user_lookup, email_service)
        targets: dict[str, Pair | Suffixed] = dict(repo.bound.targets)
        targets["users"] = Suffixed(user_lookup)
        targets["email"] = Suffixed(email_service)
        self._b = Bound(type(self).__name__, targets)

    def _request(
        self,
        email: str,
        application_id: str | None,
        ip_address: str | None,
        device_info: str,
        validation_url: str | None,
    ) -> Flow[tuple[bool, str]]:
        if not self.enabled:
            return False, "Magic link authentication is not enabled"
        user = yield from call("users", "get_by_email", email)
        if not user:
            logger.info("Magic link requested for unknown email")
            return True, ""
        user_id, user_email = _user_fields(user, email)
        if not (yield from call("users", "is_active", str(user_id))):
            logger.info("Magic link requested for inactive user")
            return True, ""
        raw_token = self._generate_token()
        yield from call(
            "links",
            "issue_hashed",
            str(user_id),
            str(user_email),
            self._hash_token(raw_token),
            ttl=float(self.expiry_minutes) * 60,
            application_id=_optional_str(application_id),  # ids are strings, as in storage
            ip_address=ip_address or None,
            user_agent=device_info or None,
            revoke_previous=True,
        )
        url = f"{validation_url}?token={raw_token}" if validation_url else None
        try:
            yield from call(
                "email",
                "send_magic_link",
                to_email=str(user_email),
                magic_link_url=url or f"https://example.com/verify?token={raw_token}",
                expires_in_minutes=self.expiry_minutes,
            )
        except Exception as error:
            logger.error("Failed to send magic link email: %s", error)
            return False, "Failed to send magic link email"
        return True, ""

    def _verify(
        self,
        token: str,
        application_id: str | None,
        ip_address: str | None,
        require_same_device: bool,
    ) -> Flow[MagicLinkResult]:
        if not getattr(self.settings, "magic_link_enabled", True):
            return MagicLinkResult(success=False, error="Magic link authentication is not enabled")
        if not isinstance(token, str) or not token:
            return MagicLinkResult(success=False, error="Invalid or expired magic link.")
        link = yield from call("links", "peek", token)
        if link is None:
            return MagicLinkResult(success=False, error="Invalid or expired magic link.")
        app = _optional_str(application_id)
        if app and link.application_id and link.application_id != app:
            return MagicLinkResult(
                success=False, error="Magic link is not valid for this application."
            )
        if require_same_device and not self._ip_matches(link.ip_address, ip_address):
            logger.warning("Magic link IP mismatch for user %s", link.user_id)
            return MagicLinkResult(
                success=False,
                error="Magic link must be opened on the same device that requested it.",
            )
        if not (yield from call("users", "is_active", link.user_id)):
            return MagicLinkResult(success=False, error="Account is disabled")
        if (yield from call("users", "is_locked", link.user_id)):
            return MagicLinkResult(success=False, error="Account is locked")
        # The atomic step: exactly one of any number of concurrent callers gets the link.
        used = yield from call("links", "consume", token, application_id=link.application_id)
        if used is None:
            return MagicLinkResult(
                success=False, error="Magic link has expired or already been used."
            )
        logger.info("Magic link verified for user %s", used.user_id)
        return MagicLinkResult(success=True, user_id=used.user_id, email=used.email)

    def request_magic_link(
        self,
        email: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        device_info: str = "",
        validation_url: str | None = None,
        first_name: str = "",
    ) -> tuple[bool, str]:
        return self._b.run(
            self._request(email, application_id, ip_address, device_info, validation_url)
        )

    async def request_magic_link_async(
        self,
        email: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        device_info: str = "",
        validation_url: str | None = None,
        first_name: str = "",
    ) -> tuple[bool, str]:
        return await self._b.arun(
            self._request(email, application_id, ip_address, device_info, validation_url)
        )

    def verify_magic_link(
        self,
        token: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        device_info: str = "",
        require_same_device: bool = True,
    ) -> MagicLinkResult:
        return self._b.run(self._verify(token, application_id, ip_address, require_same_device))

    async def verify_magic_link_async(
        self,
        token: str,
        application_id: str | None = None,
        ip_address: str | None = None,
        device_info: str = "",
        require_same_device: bool = True,
    ) -> MagicLinkResult:
        return await self._b.arun(
            self._verify(token, application_id, ip_address, require_same_device)
        )


# -- Sessions -------------------------------------------------------------------------


class AuthstoreSessionService(SessionService):  # type: ignore[misc]  # tenxyte is untyped
    """tenxyte's ``SessionService`` with the authstore session store as the only truth.

    tenxyte caches each session under ``session:<session id>`` (the bearer id in
    plaintext, and a copy that ``revoke_all_sessions`` never clears, so revoked sessions
    kept validating). Here the session is stored once, under the hash of its id;
    ``validate_session`` asks the store (one round trip), so a revoked session never
    validates. ``cache_service`` is accepted for compatibility and not used for sessions.
    With ``max_devices_per_user`` > 0 a user's oldest sessions beyond it are revoked in
    the same atomic step as the creation.
    """

    def __init__(
        self,
        settings: Any,
        cache_service: CacheService | None,
        session_repository: AuthstoreSessionRepository,
    ) -> None:
        _require(session_repository, AuthstoreSessionRepository, "session_repository")
        super().__init__(settings, cache_service, session_repository)
        self._repo = session_repository
        self._b = session_repository.bound

    def _max_sessions(self) -> int | None:
        limit = self.settings.max_devices_per_user
        if isinstance(limit, int) and limit > 0:
            return limit
        return self._repo.max_sessions

    def _create(
        self, user: Any, device_id: str | None, ip_address: str | None, user_agent: str | None
    ) -> Flow[dict[str, Any]]:
        session_id = str(uuid.uuid4())
        lifetime = self.settings.jwt_refresh_token_lifetime
        expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
        fields = {"session_id": session_id, "ip_address": ip_address, "user_agent": user_agent}
        record, _token = yield from create_session(
            user.id, device_id or str(uuid.uuid4()), fields, expires_at, self._max_sessions()
        )
        return session_dict(record, session_id)

    def create_session(
        self,
        user: Any,
        device_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> dict[str, Any]:
        return self._b.run(self._create(user, device_id, ip_address, user_agent))

    async def create_session_async(
        self,
        user: Any,
        device_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> dict[str, Any]:
        return await self._b.arun(self._create(user, device_id, ip_address, user_agent))

    # The store is the truth: validation, revocation and revoke-all are the repository's.

    def validate_session(self, session_id: str) -> dict[str, Any] | None:
        return self._repo.get(session_id)

    async def validate_session_async(self, session_id: str) -> dict[str, Any] | None:
        return await self._repo.get_async(session_id)

    def revoke_session(self, session_id: str) -> bool:
        return self._repo.revoke(session_id)

    async def revoke_session_async(self, session_id: str) -> bool:
        return await self._repo.revoke_async(session_id)

    def revoke_all_sessions(self, user_id: str, except_session_id: str | None = None) -> int:
        return self._repo.revoke_all_for_user(user_id, except_session_id)

    async def revoke_all_sessions_async(
        self, user_id: str, except_session_id: str | None = None
    ) -> int:
        return await self._repo.revoke_all_for_user_async(user_id, except_session_id)
