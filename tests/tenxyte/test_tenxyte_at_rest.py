"""No plaintext bearer secret of tenxyte's is stored: after every flow, the raw storage
of each backend (read as tests/test_tokens_at_rest.py reads it, Redis by value: the SQLite dump, every
row of the PostgreSQL and MariaDB tables, every Redis key of the namespace, every
MongoDB document, the memory backend's data) contains none of the access and refresh
tokens, magic-link tokens, session ids, backup codes or TOTP secret tenxyte handed out."""

from __future__ import annotations

import hashlib
import time

import pyotp
import pytest
from tenxyte.core.schemas import UserResponse

from tests import test_tokens_at_rest as at_rest
from tests.tenxyte.conftest import Tx, open_tx
from tests.test_tokens_at_rest import backend_at_rest  # noqa: F401 - each backend's URL

pytestmark = pytest.mark.asyncio


READERS = at_rest.RAW


async def test_no_plaintext_secret_of_tenxyte_is_stored(
    backend_at_rest: tuple[str, str],  # noqa: F811 - the fixture imported above
    mode: str,
) -> None:
    name, url = backend_at_rest
    async with open_tx(url, mode) as tx:
        await _flows_then_scan(tx, name, url)


async def _flows_then_scan(tx: Tx, name: str, url: str) -> None:
    secrets: dict[str, str] = {}
    # JWT: access and refresh tokens, a rotation, a blacklisting, a revoke-all
    pair = await tx.do(tx.jwt, "generate_new_token_pair", "zed", "app1")
    rotated = await tx.do(tx.jwt, "refresh_tokens", pair.refresh_token)
    await tx.do(tx.jwt, "blacklist_token", rotated.access_token)
    await tx.do(tx.jwt, "revoke_all_user_tokens", "nobody")
    secrets |= {
        "access token": pair.access_token,
        "refresh token": pair.refresh_token,
        "rotated refresh token": rotated.refresh_token,
    }
    # magic links: one used, one pending
    await tx.do(tx.links, "request_magic_link", "zed@example.com")
    used = tx.mail.last_token()
    assert (await tx.do(tx.links, "verify_magic_link", used)).success
    await tx.do(tx.links, "request_magic_link", "zed@example.com")
    secrets |= {"used magic link": used, "pending magic link": tx.mail.last_token()}
    # sessions: one live, one revoked
    user = UserResponse(id="zed", email="zed@example.com")
    live = await tx.do(tx.sessions, "create_session", user)
    gone = await tx.do(tx.sessions, "create_session", user)
    await tx.do(tx.sessions, "revoke_session", gone["session_id"])
    secrets |= {"live session id": live["session_id"], "revoked session id": gone["session_id"]}
    # TOTP: secret, backup codes (one used), replay state
    setup = await tx.do(tx.totp, "setup_2fa", "zed", "zed@example.com", tx.totp_storage)
    code = pyotp.TOTP(setup.secret).at(time.time())
    assert (await tx.do(tx.totp, "confirm_2fa_setup", "zed", code, tx.totp_storage))[0]
    assert (await tx.do(tx.totp, "verify_2fa", "zed", setup.backup_codes[0], tx.totp_storage))[0]
    assert await tx.do(tx.replay, "mark_code_used", "zed", code, 120)
    secrets |= {"TOTP secret": setup.secret}
    secrets |= {f"backup code {i}": c for i, c in enumerate(setup.backup_codes)}

    dump = READERS[name](url, tx.namespace).decode("latin-1")
    # the dump does see the stored records: the link's SHA-256 (what is kept) is there
    assert hashlib.sha256(used.encode()).hexdigest() in dump
    found = [name for name, secret in secrets.items() if secret in dump]
    assert not found, f"stored in plaintext: {found}"
