"""How the tenxyte adapters are wired: required revocation lifetime, ciphertext-only TOTP
secrets, tenxyte's own async services over sync-only stores, ids as strings."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pyotp
import pytest
from cryptography.fernet import Fernet
from tenxyte.core.jwt_service import JWTService
from tenxyte.core.totp_service import TOTPService

from authstore import ConfigurationError, open_cache, open_magic_links, open_totp
from authstore.crypto import KeyRing, SecretBox, generate_key
from authstore.integrations.tenxyte import (
    AuthstoreMagicLinkRepository,
    AuthstoreMagicLinkService,
    AuthstoreTokenBlacklist,
    AuthstoreTOTPStorage,
)
from tests.tenxyte.conftest import Mailbox, Users, tenxyte_settings


def memory() -> str:
    return f"memory://wiring-{uuid.uuid4().hex}"


def test_revocation_lifetime_is_required_and_checked() -> None:
    with open_cache(memory()) as cache:
        with pytest.raises(TypeError, match="revocation_ttl"):
            AuthstoreTokenBlacklist(cache)  # type: ignore[call-arg]
        with pytest.raises(ValueError):
            AuthstoreTokenBlacklist(cache, revocation_ttl=-1)
        blacklist = AuthstoreTokenBlacklist(cache, revocation_ttl=3600)
        blacklist.revoke_all_user_tokens("u")
        left = cache.ttl  # the user revocation expires with the longest token lifetime
        assert blacklist.revocation_ttl == 3600.0 and callable(left)
        forever = AuthstoreTokenBlacklist(cache, revocation_ttl=None)  # an explicit choice
        assert forever.revocation_ttl is None


def test_a_plaintext_totp_secret_is_refused_before_any_io() -> None:
    with open_totp(memory()) as totp:
        storage = AuthstoreTOTPStorage(totp)
        with pytest.raises(ConfigurationError, match="not ciphertext"):
            storage.save_totp_secret("u", pyotp.random_base32())
        assert totp.load("u") is None, "nothing was stored"
        fernet = Fernet(Fernet.generate_key()).encrypt(b"JBSWY3DPEHPK3PXP").decode()
        assert storage.save_totp_secret("u", fernet)
        assert storage.load_user_data("u").totp_secret == fernet  # type: ignore[union-attr]
        opted_out = AuthstoreTOTPStorage(totp, allow_plaintext_secrets=True)
        assert opted_out.save_totp_secret("v", "JBSWY3DPEHPK3PXP")


def test_a_secret_box_seals_what_tenxyte_gives_in_plaintext() -> None:
    box = SecretBox(KeyRing({"k1": generate_key()}))
    with open_totp(memory()) as totp:
        storage = AuthstoreTOTPStorage(totp, box=box)
        secret = pyotp.random_base32()
        service = TOTPService(tenxyte_settings())  # no Fernet key: tenxyte hands plaintext
        assert storage.save_totp_secret("u", secret)
        raw = totp.load("u")
        assert raw is not None and raw.pending_secret is not None
        assert secret.encode() not in raw.pending_secret, "stored sealed, never as given"
        assert box.decrypt("u", raw.pending_secret) == secret.encode()
        code = pyotp.TOTP(secret).now()
        assert service.confirm_2fa_setup("u", code, storage) == (True, "")
        assert storage.load_user_data("u").totp_secret == secret  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_tenxytes_own_async_services_work_over_sync_only_stores() -> None:
    # tenxyte's async services call x_async() when the object has it: with only sync
    # stores, the adapters run them in a worker thread instead of raising.
    with open_cache(memory()) as cache:
        blacklist = AuthstoreTokenBlacklist(cache, revocation_ttl=86400)
        jwt = JWTService(tenxyte_settings(), blacklist)
        token, jti, _ = jwt.generate_access_token("u", "app")
        assert (await jwt.decode_token_async(token)).is_valid
        assert await jwt.blacklist_token_async(token, user_id="u")
        assert blacklist.is_blacklisted(jti)  # written through the sync store
        decoded = await jwt.decode_token_async(token)
        assert decoded is None or not decoded.is_valid


def test_ids_are_strings_everywhere() -> None:
    with open_magic_links(memory()) as links:
        mailbox = Mailbox()
        service = AuthstoreMagicLinkService(
            tenxyte_settings(), AuthstoreMagicLinkRepository(links), Users(), mailbox
        )
        assert service.request_magic_link("a@example.com", application_id=42) == (True, "")  # type: ignore[arg-type]
        token = mailbox.sent[-1].split("token=")[1]
        result = service.verify_magic_link(token, application_id=42)  # type: ignore[arg-type]
        assert result.success and result.user_id == "user-a"


def test_async_only_adapters_still_refuse_sync_calls() -> None:
    async def opened() -> Any:
        from authstore import open_async_cache

        return open_async_cache(memory())

    cache = asyncio.run(opened())
    blacklist = AuthstoreTokenBlacklist(async_cache=cache, revocation_ttl=60)
    with pytest.raises(ConfigurationError, match="only an async cache store"):
        blacklist.is_blacklisted("jti")
