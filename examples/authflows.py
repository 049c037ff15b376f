"""Passwordless login plus TOTP 2FA on authstore: the flows, without a web framework.

Both example apps (``fastapi_app``, ``django_app``) are thin HTTP layers over these
coroutines, so the security logic exists once. Every flow takes a ``Stores`` bundle of
async stores, opened by authstore's integrations: FastAPI's in its lifespan
(``open_app_stores``), Django's per event loop (``aget_stores``, see
``django_app/stores.py``).

What each flow guarantees comes from the store it calls: a magic link is consumed once
among any number of concurrent requests, a TOTP time step or a backup code is accepted
once, a rate limit lets exactly ``limit`` attempts through, a blacklist or revocation
check raises (503 in the apps) when the backend is down instead of answering "valid".
Second-factor codes are limited by failed attempts only (``Auth.failed_attempts``): a
user who types good codes is never locked out, a guesser gets exactly ``limit`` wrong
guesses per window, however many requests run at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import pyotp
import segno

from authstore import (
    AsyncCacheStore,
    AsyncMagicLinkStore,
    AsyncSessionStore,
    AsyncTotpStore,
    SessionRecord,
)
from authstore.crypto import AsyncSecretBox, KeyRing

TOTP_PERIOD = 30
BACKUP_CODES = 10
log = logging.getLogger("authflows")


@dataclass(frozen=True)
class Settings:
    """Everything the flows need; ``from_env`` reads ``AUTHSTORE_URL`` and friends."""

    authstore_url: str
    jwt_secret: str = field(repr=False)
    totp_keys: str = field(repr=False)
    """``KeyRing.parse`` text: ``"id:base64key,..."``, newest last."""
    application_id: str = "example"
    cookie_secure: bool = True
    magic_link_ttl: float = 900
    session_ttl: float = 14 * 86400
    access_token_ttl: float = 900
    mfa_token_ttl: float = 300
    max_sessions: int = 10
    touch_interval: float = 60
    """A session's expiry slides (a write) at most this often; other checks only read."""
    login_limit: tuple[int, float] = (5, 600)
    """Magic links requested per email address: (limit, window seconds)."""
    ip_limit: tuple[int, float] = (100, 60)
    """Login requests and link verifications per client IP, one budget for both; counted
    by the HTTP layer (FastAPI: authstore's ``RateLimit`` dependency, with headers)."""
    totp_limit: tuple[int, float] = (5, 300)
    """Failed second-factor attempts (wrong codes) per user; good codes are not counted."""
    link_url: str = "http://127.0.0.1:8000/sign-in"
    """Where the mailed link points; the token follows in the fragment (``#token=...``).

    Configured, never taken from the request's Host header: a forged Host would make
    the mail carry the victim's token to the forger's site.
    """

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "authstore_url": os.environ["AUTHSTORE_URL"],
            "jwt_secret": os.environ["AUTH_JWT_SECRET"],
            "totp_keys": os.environ["AUTH_TOTP_KEYS"],
            "cookie_secure": os.environ.get("AUTH_COOKIE_SECURE", "1") != "0",
        }
        if "AUTH_LINK_URL" in os.environ:
            values["link_url"] = os.environ["AUTH_LINK_URL"]
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Stores:
    cache: AsyncCacheStore
    sessions: AsyncSessionStore
    totp: AsyncTotpStore
    links: AsyncMagicLinkStore


Mailer = Callable[[str, str], Awaitable[None]]
"""``await mailer(email, link)`` sends the sign-in ``link``; raises ``MailNotSent`` on failure."""


class MailNotSent(Exception):
    """The mail backend refused or could not be reached; the link was not stored."""


class AuthError(Exception):
    """An answer for the client: HTTP status, a short reason, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class TooManyRequests(AuthError):
    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(429, "too many attempts", {"Retry-After": str(seconds)})


class WrongCode(AuthError):
    """A second-factor code that did not match (or was already used): a failed attempt."""

    def __init__(self) -> None:
        super().__init__(401, "wrong code")


@dataclass(frozen=True)
class Login:
    """A finished sign-in: the session token goes in the cookie, the access token to the client."""

    user_id: str
    session_id: str
    session_token: str
    access_token: str


@dataclass(frozen=True)
class MfaRequired:
    """The link was good but the user has 2FA: send the code with ``mfa_token``."""

    mfa_token: str


@dataclass(frozen=True)
class Claims:
    user_id: str
    jti: str
    expires: float
    session_id: str | None


class Auth:
    """The flows, bound to one app's settings, stores, key ring and mailer."""

    def __init__(self, settings: Settings, stores: Stores, mailer: Mailer) -> None:
        self.settings = settings
        self.stores = stores
        self.mailer = mailer
        self.box = AsyncSecretBox(KeyRing.parse(settings.totp_keys))

    # -- rate limits ---------------------------------------------------------------

    # [readme:authflows-verify]
    async def limit(self, key: str, rule: tuple[int, float]) -> None:
        result = await self.stores.cache.check_rate_limit(key, rule[0], rule[1])
        if not result.allowed:
            raise TooManyRequests(result.retry_after)

    # -- magic links ---------------------------------------------------------------

    async def request_link(self, email: str, ip: str, user_agent: str | None) -> None:
        """Mail a sign-in link; the same answer whether or not the address is known.

        The mail goes out before the link is stored: a mail that fails stores nothing, so
        no live link exists that nobody received and the previous link still works. The
        rate-limit hits stay spent, as they also guard the mail server.
        """
        email = normalize_email(email)
        await self.limit(f"login:{email}", self.settings.login_limit)
        user_id = email  # a real app looks the user up (or signs them up) here
        token = secrets.token_urlsafe(32)
        try:
            await self.mailer(email, f"{self.settings.link_url}#token={token}")
        except MailNotSent as error:
            log.warning("sign-in mail to %s not sent: %s", email, error)
            raise AuthError(503, "could not send the sign-in mail", {"Retry-After": "60"}) from None
        await self.stores.links.issue(
            user_id,
            email,
            ttl=self.settings.magic_link_ttl,
            application_id=self.settings.application_id,
            ip_address=ip,
            user_agent=user_agent,
            token=token,
        )

    async def verify_link(self, token: str, ip: str, user_agent: str | None) -> Login | MfaRequired:
        link = await self.stores.links.consume(token, application_id=self.settings.application_id)
        if link is None:  # unknown, expired, revoked, already used or for another app
            raise AuthError(401, "invalid or expired link")
        state = await self.stores.totp.load(link.user_id)
        if state is not None and state.enabled:
            return MfaRequired(self._mint(link.user_id, "mfa", self.settings.mfa_token_ttl))
        return await self.start_session(link.user_id, ip, user_agent)

    # [/readme:authflows-verify]

    # -- sessions and tokens -------------------------------------------------------

    async def start_session(self, user_id: str, ip: str, user_agent: str | None) -> Login:
        record, token = await self.stores.sessions.create(
            user_id,
            ttl=self.settings.session_ttl,
            application_id=self.settings.application_id,
            ip_address=ip,
            user_agent=user_agent,
            max_sessions=self.settings.max_sessions,
        )
        return Login(user_id, record.id, token, self.access_token(record))

    def access_token(self, session: SessionRecord) -> str:
        return self._mint(session.user_id, "access", self.settings.access_token_ttl, sid=session.id)

    def _mint(self, user_id: str, purpose: str, ttl: float, **extra: str) -> str:
        now = time.time()
        claims: dict[str, Any] = {
            "sub": user_id,
            "aud": f"{self.settings.application_id}:{purpose}",
            "jti": uuid.uuid4().hex,
            "iat": now,  # sub-second: "log out everywhere" compares it with an instant
            "exp": int(now + ttl),
            **extra,
        }
        return jwt.encode(claims, self.settings.jwt_secret, algorithm="HS256")

    async def check_token(self, token: str, purpose: str = "access") -> Claims:
        """The claims of a valid token: signed, unexpired, not blacklisted, not revoked."""
        try:
            claims = jwt.decode(
                token,
                self.settings.jwt_secret,
                algorithms=["HS256"],
                audience=f"{self.settings.application_id}:{purpose}",
                options={"require": ["sub", "jti", "iat", "exp", "aud"]},
            )
        except jwt.PyJWTError:
            raise AuthError(401, "invalid token") from None
        user_id, jti = str(claims["sub"]), str(claims["jti"])
        if await self.stores.cache.is_blacklisted(jti):
            raise AuthError(401, "token revoked")
        revoked_at = await self.stores.cache.user_tokens_revoked_at(user_id)
        if revoked_at is not None and float(claims["iat"]) <= revoked_at.timestamp():
            raise AuthError(401, "token revoked")
        sid = claims.get("sid")
        return Claims(user_id, jti, float(claims["exp"]), None if sid is None else str(sid))

    async def check_session(self, token: str | None) -> SessionRecord:
        """The live session behind a cookie; its expiry slides, once per ``touch_interval``."""
        record = await self.stores.sessions.get(token) if token else None
        if record is not None and token is not None:
            idle = (datetime.now(UTC) - record.last_seen_at).total_seconds()
            if idle >= self.settings.touch_interval:
                record = await self.stores.sessions.touch(token, ttl=self.settings.session_ttl)
        if record is None:
            raise AuthError(401, "not signed in")
        return record

    async def logout(self, claims: Claims) -> None:
        """This token stops working now, and the session it was issued for ends."""
        await self.stores.cache.add_to_blacklist(claims.jti, max(1.0, claims.expires - time.time()))
        if claims.session_id is not None:
            await self.stores.sessions.revoke_by_id(claims.session_id, user_id=claims.user_id)

    async def logout_everywhere(self, user_id: str) -> int:
        """Every token issued until now, every session and every unused link of the user."""
        await self.stores.cache.revoke_user_tokens(user_id, at=datetime.now(UTC))
        await self.stores.links.revoke_user(user_id)
        return await self.stores.sessions.revoke_all(user_id)

    async def devices(self, current: SessionRecord) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "current": s.id == current.id,
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "created_at": s.created_at.isoformat(),
                "last_seen_at": s.last_seen_at.isoformat(),
            }
            for s in await self.stores.sessions.list(current.user_id)
        ]

    async def revoke_device(self, current: SessionRecord, session_id: str) -> bool:
        return await self.stores.sessions.revoke_by_id(session_id, user_id=current.user_id)

    async def revoke_other_devices(self, current: SessionRecord) -> int:
        return await self.stores.sessions.revoke_all(current.user_id, except_id=current.id)

    # -- TOTP ----------------------------------------------------------------------

    # [readme:authflows-failed-attempts]
    @asynccontextmanager
    async def failed_attempts(self, key: str, rule: tuple[int, float]) -> AsyncIterator[None]:
        """Admit a code check while fewer than ``limit`` checks failed in this window.

        Only a ``WrongCode`` raised in the body counts. The check takes a slot first
        (one atomic ``incr``) and gives it back unless the code was wrong, so exactly
        ``limit`` wrong codes are checked per window however many requests run at once
        (reading the count, checking, then counting a failure would let every
        concurrent request through the read). Windows are aligned to the clock (the key
        names the window), so a slot given back never lands in a later window. The
        cost: while a good code is being checked it holds a slot, so with the budget
        nearly spent a concurrent guess may get 429 a moment early.
        """
        limit, window = rule
        index = int(time.time() // window)
        slot = f"failed:{key}:{index}"
        if await self.stores.cache.incr(slot, 1, ttl=2 * window) > limit:
            raise TooManyRequests((index + 1) * window - time.time())
        try:
            yield
        except WrongCode:
            raise  # the slot stays taken: a failed attempt
        except Exception:
            await self.stores.cache.incr(slot, -1)
            raise
        await self.stores.cache.incr(slot, -1)

    # [/readme:authflows-failed-attempts]

    async def enrol(self, user_id: str) -> tuple[str, str]:
        """A new pending secret (encrypted at rest) and its otpauth:// URI for the QR code."""
        secret = pyotp.random_base32()
        await self.stores.totp.save_pending(
            user_id, await self.box.encrypt(user_id, secret.encode())
        )
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=user_id, issuer_name=self.settings.application_id
        )
        return secret, uri

    async def confirm(self, user_id: str, code: str) -> list[str]:
        """Turn 2FA on with a first good code; returns the backup codes, shown once."""
        state = await self.stores.totp.load(user_id)
        if state is None or state.pending_secret is None:
            raise AuthError(400, "no enrolment pending")
        secret = await self.box.decrypt(user_id, state.pending_secret)
        async with self.failed_attempts(f"totp:{user_id}", self.settings.totp_limit):
            if not await self._claim_code(user_id, secret, code):
                raise WrongCode
        await self.stores.totp.enable(user_id)
        codes = [secrets.token_hex(5) for _ in range(BACKUP_CODES)]
        await self.stores.totp.replace_backup_codes(user_id, [hash_backup_code(c) for c in codes])
        return codes

    async def second_factor(
        self, mfa_token: str, code: str, ip: str, user_agent: str | None
    ) -> Login:
        """A TOTP code (once per time step) or a backup code (once) finishes the sign-in.

        The mfa token finishes one sign-in: an atomic ``add`` on its id admits one of any
        number of concurrent requests, even if each brings a different good code.
        """
        claims = await self.check_token(mfa_token, "mfa")
        finished = f"mfa-finished:{claims.jti}"
        if await self.stores.cache.exists(finished):
            raise AuthError(401, "this sign-in is already finished")
        state = await self.stores.totp.load(claims.user_id)
        if state is None or not state.enabled or state.secret is None:
            raise AuthError(401, "2FA is not enabled")
        code = code.strip().replace(" ", "")
        async with self.failed_attempts(f"totp:{claims.user_id}", self.settings.totp_limit):
            if len(code) == 6 and code.isdigit():
                secret = await self.box.decrypt(claims.user_id, state.secret)
                good = await self._claim_code(claims.user_id, secret, code)
            else:
                hashed = hash_backup_code(code)
                good = await self.stores.totp.use_backup_code(claims.user_id, hashed)
            if not good:
                raise WrongCode
        if not await self.stores.cache.add(finished, True, max(1.0, claims.expires - time.time())):
            raise AuthError(401, "this sign-in is already finished")
        return await self.start_session(claims.user_id, ip, user_agent)

    async def _claim_code(self, user_id: str, secret: bytes, code: str) -> bool:
        """The code matches a step within one period of now, and that step was never used."""
        totp = pyotp.TOTP(secret.decode())
        now = int(time.time()) // TOTP_PERIOD
        for step in (now - 1, now, now + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return await self.stores.totp.claim_step(user_id, step)
        return False


@cache
def page() -> str:
    """The HTML front both apps serve at ``/`` and ``/sign-in``: one page, vanilla JS."""
    return (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")


def enrolment(secret: str, uri: str) -> dict[str, str]:
    """What the enrol routes answer: the secret, its URI and the URI as a QR code (SVG)."""
    qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": qr}


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254:
        raise AuthError(422, "not an email address")
    return email


def hash_backup_code(code: str) -> str:
    """Backup codes are 40 random bits: a plain SHA-256 is enough to keep them off the disk."""
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()
