"""20 simultaneous callers on tenxyte's single-use flows through authstore's services
(threads in sync mode, ``asyncio.gather`` in async mode), on every backend: one magic
link signs in once, one TOTP code or backup code verifies once, one refresh token
rotates once, and a limit of N lets exactly N through.

tenxyte's own services over the same stores let many through: they check, then
consume, and ignore what the consume answers.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from tenxyte.core.schemas import UserResponse

from authstore import ConfigurationError
from authstore.integrations.tenxyte import AuthstoreTOTPService
from tests.tenxyte.conftest import RACERS, Tx
from tests.tenxyte.test_tenxyte_flows import codes_from

pytestmark = pytest.mark.asyncio


async def test_one_magic_link_signs_in_once(tx: Tx) -> None:
    await tx.do(tx.links, "request_magic_link", "race@example.com")
    results = await tx.race(RACERS, tx.links, "verify_magic_link", tx.mail.last_token())
    assert sum(r.success for r in results) == 1
    assert {r.error for r in results if not r.success} <= {
        "Magic link has expired or already been used.",
        "Invalid or expired magic link.",
    }


async def test_one_totp_code_confirms_and_verifies_once(tx: Tx) -> None:
    user, storage = "racer", tx.totp_storage
    setup = await tx.do(tx.totp, "setup_2fa", user, "racer@example.com", storage)
    now_code, next_code = codes_from(setup.secret)
    confirmed = await tx.race(RACERS, tx.totp, "confirm_2fa_setup", user, now_code, storage)
    assert sum(ok for ok, _ in confirmed) == 1
    verified = await tx.race(RACERS, tx.totp, "verify_2fa", user, next_code, storage)
    assert sum(ok for ok, _ in verified) == 1


async def test_one_backup_code_verifies_once(tx: Tx) -> None:
    user, storage = "backup-racer", tx.totp_storage
    setup = await tx.do(tx.totp, "setup_2fa", user, "b@example.com", storage)
    now_code, _ = codes_from(setup.secret)
    assert (await tx.do(tx.totp, "confirm_2fa_setup", user, now_code, storage))[0]
    results = await tx.race(RACERS, tx.totp, "verify_2fa", user, setup.backup_codes[0], storage)
    assert sum(ok for ok, _ in results) == 1
    assert (await tx.raw("totp", "load", user)).backup_codes_left == 9


async def test_a_limit_of_n_lets_exactly_n_through(tx: Tx) -> None:
    results = await tx.race(RACERS, tx.cache, "check_rate_limit", "login:racer", 5, 60)
    assert sum(allowed for allowed, _, _ in results) == 5


async def test_one_refresh_token_rotates_once(tx: Tx) -> None:
    pair = await tx.do(tx.jwt, "generate_new_token_pair", "refresher", "app1")
    results = await tx.race(RACERS, tx.jwt, "refresh_tokens", pair.refresh_token)
    assert sum(r is not None for r in results) == 1


async def test_one_session_revocation_counts_once(tx: Tx) -> None:
    user = UserResponse(id="sess-racer", email="s@example.com")
    session = await tx.do(tx.sessions, "create_session", user)
    results = await tx.race(RACERS, tx.sessions, "revoke_session", session["session_id"])
    assert sum(results) == 1


async def test_one_code_verifies_once_through_the_replay_protection(tx: Tx) -> None:
    """Without a TOTP store, ``verify_code`` decides with the replay protection's ``add``."""
    service = AuthstoreTOTPService(tx.settings, replay_protection=tx.replay)
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).at(time.time())
    results = await tx.race(RACERS, service, "verify_code", secret, code, user_id="no-store")
    assert sum(results) == 1
    assert await tx.do(service, "verify_code", secret, code) is True  # no user: no replay check
    with pytest.raises(ConfigurationError, match="no 'totp' store"):
        await tx.do(AuthstoreTOTPService(tx.settings), "verify_code", secret, code, user_id="u")
