"""tenxyte's storage interfaces, as tenxyte's own services use them (sequentially), and
their edge semantics, on every backend, sync and async."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import bcrypt
import pyotp
import pytest
from cryptography.fernet import Fernet
from tenxyte.core.jwt_service import AsyncTokenBlacklistService, JWTService, TokenBlacklistService
from tenxyte.core.magic_link_service import AsyncMagicLinkRepository, MagicLinkService
from tenxyte.core.schemas import UserResponse
from tenxyte.core.session_service import AsyncSessionRepository, SessionService
from tenxyte.core.totp_service import (
    AsyncCodeReplayProtection,
    AsyncTOTPStorage,
    TOTPService,
)

from authstore import ConfigurationError
from authstore.integrations.tenxyte import (
    AuthstoreCacheService,
    AuthstoreJWTService,
    AuthstoreSessionService,
    AuthstoreTOTPService,
)
from tests.tenxyte.conftest import Tx, tenxyte_settings

pytestmark = pytest.mark.asyncio


async def test_the_classes_are_tenxytes_interfaces(tx: Tx) -> None:
    assert isinstance(tx.blacklist, TokenBlacklistService)
    assert isinstance(tx.blacklist, AsyncTokenBlacklistService)
    assert isinstance(tx.session_repo, AsyncSessionRepository)
    assert isinstance(tx.totp_storage, AsyncTOTPStorage)
    assert isinstance(tx.replay, AsyncCodeReplayProtection)
    assert isinstance(tx.link_repo, AsyncMagicLinkRepository)


async def test_tenxytes_jwt_service_over_the_blacklist(tx: Tx) -> None:
    tx.threads_allowed = True  # tenxyte's service, not ours
    jwt = JWTService(tx.settings, tx.blacklist)
    pair = jwt.generate_new_token_pair("amy", "app1")
    assert (await tx.do(jwt, "decode_token", pair.access_token)).is_valid
    assert await tx.do(jwt, "blacklist_token", pair.access_token)
    assert (await tx.do(jwt, "decode_token", pair.access_token)).is_blacklisted
    at = await tx.do(tx.blacklist, "revoke_all_user_tokens", "amy")
    assert at.microsecond or at.second  # an instant, not a day
    assert await tx.do(tx.blacklist, "is_user_revoked", "amy", at - timedelta(microseconds=1))
    assert not await tx.do(tx.blacklist, "is_user_revoked", "amy", at + timedelta(microseconds=1))
    assert not await tx.do(tx.blacklist, "is_user_revoked", "ben", at)
    # an expiry already past stores nothing and is not an error
    past = datetime.now(UTC) - timedelta(seconds=5)
    assert await tx.do(tx.blacklist, "blacklist_token", "old-jti", past)
    assert not await tx.do(tx.blacklist, "is_blacklisted", "old-jti")


async def test_tokens_of_either_service_decode_in_the_other(tx: Tx) -> None:
    """Drop-in: a sub-second ``iat`` is a valid JWT NumericDate for tenxyte's own service,
    and tenxyte's whole-second tokens decode in authstore's."""
    tx.threads_allowed = True  # tenxyte's service, not ours
    plain = JWTService(tx.settings, tx.blacklist)
    ours = (await tx.do(tx.jwt, "generate_new_token_pair", "ida", "app1")).access_token
    theirs = plain.generate_new_token_pair("ida", "app1").access_token
    decoded = await tx.do(plain, "decode_token", ours)
    assert decoded.is_valid and isinstance(decoded.claims["iat"], float)
    assert decoded.iat == datetime.fromtimestamp(decoded.claims["iat"], UTC)
    assert (await tx.do(tx.jwt, "decode_token", theirs)).is_valid


async def test_tenxytes_totp_service_over_the_storage(tx: Tx) -> None:
    tx.threads_allowed = True  # tenxyte's service, not ours
    key = Fernet.generate_key()  # the storage keeps only ciphertext
    totp = TOTPService(tx.settings, encryption_key=key.decode(), replay_protection=tx.replay)
    secret = pyotp.random_base32()
    encrypted = Fernet(key).encrypt(secret.encode()).decode()
    assert await tx.do(tx.totp_storage, "save_totp_secret", "cid", encrypted)
    codes = ["aaaaaaaa-bbbbbbbb", "cccccccc-dddddddd"]
    hashed = [bcrypt.hashpw(c.encode(), bcrypt.gensalt(rounds=4)).decode() for c in codes]
    assert await tx.do(tx.totp_storage, "save_backup_codes", "cid", hashed)
    data = await tx.do(tx.totp_storage, "load_user_data", "cid")
    assert data.totp_secret == encrypted and not data.is_2fa_enabled and data.backup_codes == hashed
    code = pyotp.TOTP(secret).at(time.time())
    assert await tx.do(totp, "confirm_2fa_setup", "cid", code, tx.totp_storage) == (True, "")
    assert await tx.do(tx.replay, "is_code_used", "cid", code)
    assert (await tx.do(totp, "verify_2fa", "cid", code, tx.totp_storage))[0] is False  # replay
    assert await tx.do(totp, "verify_2fa", "cid", codes[1], tx.totp_storage) == (True, "")
    left = await tx.do(tx.totp_storage, "load_user_data", "cid")
    assert left.is_2fa_enabled and left.backup_codes == hashed[:1]
    assert await tx.do(tx.totp_storage, "disable_2fa", "cid")
    assert await tx.do(tx.totp_storage, "load_user_data", "nobody") is None


async def test_replay_keys_are_single_use_and_unicode_blind(tx: Tx) -> None:
    assert await tx.do(tx.replay, "mark_code_used", "dan", "123456", 60)
    assert not await tx.do(tx.replay, "mark_code_used", "dan", "123456", 60)
    # pyotp accepts full-width digits as the same code: so must the replay key
    assert await tx.do(tx.replay, "is_code_used", "dan", "\uff11\uff12\uff13\uff14\uff15\uff16")
    assert not await tx.do(tx.replay, "is_code_used", "eve", "123456")


async def test_tenxytes_magic_link_service_over_the_repository(tx: Tx) -> None:
    tx.threads_allowed = True  # tenxyte's service, not ours
    links = MagicLinkService(tx.settings, tx.link_repo, tx.users, tx.mail)
    assert await tx.do(links, "request_magic_link", "gil@example.com") == (True, "")
    token = tx.mail.last_token()
    found = await tx.do(tx.link_repo, "get_by_token", token)
    assert found.user_id == "user-gil" and found.token == "" and found.is_valid()
    assert (await tx.do(links, "verify_magic_link", token)).success
    assert not (await tx.do(links, "verify_magic_link", token)).success
    assert not await tx.do(tx.link_repo, "consume", found.id)  # only by this task's last read


async def test_tenxytes_session_service_over_the_repository(tx: Tx) -> None:
    tx.threads_allowed = True  # tenxyte's service, not ours
    sessions = SessionService(tx.settings, tx.cache, tx.session_repo)
    user = UserResponse(id="hugo", email="hugo@example.com")
    made = await tx.do(sessions, "create_session", user, ip_address="10.0.0.1")
    assert (await tx.do(sessions, "validate_session", made["session_id"]))["user_id"] == "hugo"
    listed = await tx.do(tx.session_repo, "get_user_sessions", "hugo")
    assert len(listed) == 1 and "session_id" not in listed[0]
    assert (await tx.do(tx.session_repo, "get", made["session_id"]))["ip_address"] == "10.0.0.1"
    assert await tx.do(sessions, "revoke_session", made["session_id"])
    assert await tx.do(sessions, "validate_session", made["session_id"]) is None


async def test_cache_service_semantics(tx: Tx) -> None:
    c = tx.cache
    assert await tx.do(c, "set", "k", {"a": 1}, 0)  # 0: no expiry, as in tenxyte
    assert await tx.do(c, "get", "k") == {"a": 1} and await tx.do(c, "ttl", "k") == -1
    assert await tx.do(c, "ttl", "missing") == -2 and await tx.do(c, "get", "missing") is None
    assert await tx.do(c, "set", "t", "v", 100) and 0 < await tx.do(c, "ttl", "t") <= 100
    assert await tx.do(c, "expire", "k", 50) and 0 < await tx.do(c, "ttl", "k") <= 50
    assert not await tx.do(c, "expire", "missing", 50)
    assert await tx.do(c, "increment", "n") == 1 and await tx.do(c, "increment", "n", 4) == 5
    assert await tx.do(c, "exists", "n") and await tx.do(c, "delete", "n")
    assert not await tx.do(c, "exists", "n") and await tx.do(c, "delete", "n")  # tenxyte: True
    assert await tx.do(c, "add", "once", 1) and not await tx.do(c, "add", "once", 2)
    assert await tx.do(c, "set", "gone", 1, -1) and not await tx.do(c, "exists", "gone")
    assert await tx.do(c, "add_to_blacklist", "j1", 60) and await tx.do(c, "is_blacklisted", "j1")
    assert await tx.do(c, "add_to_blacklist", "j2", 0) and await tx.do(c, "is_blacklisted", "j2")
    assert await tx.do(c, "remove_from_blacklist", "j1")
    assert not await tx.do(c, "is_blacklisted", "j1")
    with pytest.raises(ValueError, match="None is not a storable value"):
        await tx.do(c, "set", "bad", None)  # None is not a storable value


async def test_bad_wiring_fails_before_any_io(tx: Tx) -> None:
    settings = tenxyte_settings()
    with pytest.raises(TypeError):
        AuthstoreJWTService(settings, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AuthstoreSessionService(settings, None, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backup_code_rounds"):
        AuthstoreTOTPService(settings, backup_code_rounds=3)
    with pytest.raises(TypeError):
        AuthstoreCacheService()
    with pytest.raises(TypeError):
        await tx.do(tx.totp, "verify_2fa", "x", "123456", object())
    if tx.mode == "async":  # a sync method of an object given only async stores says so
        with pytest.raises(ConfigurationError, match="only an async cache store"):
            tx.cache.get("k")
    else:  # given only sync stores, *_async runs them in a worker thread, as tenxyte would
        tx.cache.set("k", "v")
        assert await tx.cache.get_async("k") == "v"
