"""tenxyte's single-use flows under 20 simultaneous callers: tenxyte's own services
over authstore (BEFORE) against authstore's drop-in services (AFTER).

Both run over the same storage interfaces (``authstore.integrations.tenxyte``'s
AuthstoreMagicLinkRepository, AuthstoreTOTPStorage, AuthstoreCodeReplayProtection,
AuthstoreCacheService ...) on the same stores; only the service differs. Each trial
starts 20 callers at once (threads behind a barrier in sync mode, ``asyncio.gather`` in
async mode) and counts how many the service let through:

- magic link: ``verify_magic_link`` of one link (exactly 1 is right);
- TOTP code: ``verify_2fa`` with one code (1 is right);
- backup code: ``verify_2fa`` with one backup code (1 is right);
- rate limit: ``check_rate_limit`` with a limit of 5 (5 is right; BEFORE is tenxyte's
  ``CacheService.check_rate_limit``, get-then-increment, over the same cache).

It also checks tenxyte's two storage-fixable defects once per backend and mode: a token
issued in the same second as ``revoke_all_user_tokens`` (accepted?) and a session
revoked by ``revoke_all_sessions`` (still validates?).

Run: ``eval "$(scripts/services env)"; python benchmarks/tenxyte_races.py [backends...]``
(default: memory sqlite postgres mariadb redis mongodb; AUTHSTORE_TEST_*_URL name the
servers).
Not a test: BEFORE is expected to let too many through.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bcrypt
import pyotp
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tenxyte.core.cache_service import CacheService  # noqa: E402
from tenxyte.core.jwt_service import JWTService  # noqa: E402
from tenxyte.core.magic_link_service import MagicLinkService  # noqa: E402
from tenxyte.core.schemas import UserResponse  # noqa: E402
from tenxyte.core.session_service import SessionService  # noqa: E402
from tenxyte.core.totp_service import TOTPService  # noqa: E402

from tests.backends import CLEANUPS  # noqa: E402
from tests.tenxyte.conftest import RACERS, Tx, open_tx  # noqa: E402

TRIALS = int(os.environ.get("TENXYTE_RACE_TRIALS", "5"))
LIMIT = 5
SERVERS = {
    "postgres": "AUTHSTORE_TEST_POSTGRES_URL",
    "mariadb": "AUTHSTORE_TEST_MARIADB_URL",
    "redis": "AUTHSTORE_TEST_REDIS_URL",
    "mongodb": "AUTHSTORE_TEST_MONGODB_URL",
}


def _drop_mongodb(url: str, prefix: str) -> None:
    from tests.mongodb.conftest import drop_collections

    drop_collections(url, prefix)


DROP = {**CLEANUPS, "mongodb": _drop_mongodb}
OPTION = {"postgres": "table_prefix", "mariadb": "table_prefix", "mongodb": "collection_prefix"}


class TenxyteLimiter:
    """tenxyte's own rate limiter (CacheService's get-then-increment) over a cache service."""

    def __init__(self, cache: CacheService) -> None:
        self.cache = cache

    def check_rate_limit(self, key: str, limit: int, window: int) -> tuple[bool, int, int]:
        result: tuple[bool, int, int] = CacheService.check_rate_limit(
            self.cache, key, limit, window
        )
        return result

    async def check_rate_limit_async(
        self, key: str, limit: int, window: int
    ) -> tuple[bool, int, int]:
        result: tuple[bool, int, int] = await CacheService.check_rate_limit_async(
            self.cache, key, limit, window
        )
        return result


class Failed:
    """What a caller got when the call raised (counted apart, never as a pass)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.success = False

    def __getitem__(self, index: int) -> bool:
        return False


class Tolerant:
    """``obj`` whose methods return ``Failed`` instead of raising: one caller's error
    (tenxyte's concurrent ``save_backup_codes`` can hit one) must not stop the trial."""

    def __init__(self, obj: Any, errors: list[BaseException]) -> None:
        self._obj, self._errors = obj, errors

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._obj, name)
        if name.endswith("_async"):

            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(*args, **kwargs)
                except Exception as error:
                    self._errors.append(error)
                    return Failed(error)

            return guarded_async

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as error:
                self._errors.append(error)
                return Failed(error)

        return guarded


ERRORS: list[BaseException] = []


def plain(tx: Tx) -> dict[str, Any]:
    return {
        "links": MagicLinkService(tx.settings, tx.link_repo, tx.users, tx.mail),
        "totp": TOTPService(
            tx.settings, encryption_key=Fernet.generate_key().decode(), replay_protection=tx.replay
        ),
        "limiter": TenxyteLimiter(tx.cache),
        "sessions": SessionService(tx.settings, tx.cache, tx.session_repo),
        "jwt": JWTService(tx.settings, tx.blacklist),
    }


def ours(tx: Tx) -> dict[str, Any]:
    return {
        "links": tx.links,
        "totp": tx.totp,
        "limiter": tx.cache,
        "sessions": tx.sessions,
        "jwt": tx.jwt,
    }


async def enrolled(tx: Tx, totp: TOTPService, user: str) -> tuple[str, list[str]]:
    """An enabled TOTP user (cheap bcrypt backup codes), its secret and backup codes."""
    secret = pyotp.random_base32()
    await tx.do(tx.totp_storage, "save_totp_secret", user, totp._encrypt_secret(secret))
    await tx.do(tx.totp_storage, "enable_2fa", user)
    codes = [f"{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    hashed = [bcrypt.hashpw(c.encode(), bcrypt.gensalt(rounds=4)).decode() for c in codes]
    await tx.do(tx.totp_storage, "save_backup_codes", user, hashed)
    return secret, codes


async def magic_link(tx: Tx, s: dict[str, Any]) -> int:
    await tx.do(s["links"], "request_magic_link", f"{uuid.uuid4().hex[:8]}@example.com")
    results = await tx.race(
        RACERS, Tolerant(s["links"], ERRORS), "verify_magic_link", tx.mail.last_token()
    )
    return sum(r.success for r in results)


async def totp_code(tx: Tx, s: dict[str, Any]) -> int:
    user = f"t{uuid.uuid4().hex[:8]}"
    secret, _codes = await enrolled(tx, s["totp"], user)
    code = pyotp.TOTP(secret).at(time.time())
    results = await tx.race(
        RACERS, Tolerant(s["totp"], ERRORS), "verify_2fa", user, code, tx.totp_storage
    )
    return sum(bool(r[0]) for r in results)


async def backup_code(tx: Tx, s: dict[str, Any]) -> int:
    user = f"b{uuid.uuid4().hex[:8]}"
    _secret, codes = await enrolled(tx, s["totp"], user)
    results = await tx.race(
        RACERS, Tolerant(s["totp"], ERRORS), "verify_2fa", user, codes[0], tx.totp_storage
    )
    return sum(bool(r[0]) for r in results)


async def rate_limit(tx: Tx, s: dict[str, Any]) -> int:
    key = f"rl:{uuid.uuid4().hex}"
    results = await tx.race(
        RACERS, Tolerant(s["limiter"], ERRORS), "check_rate_limit", key, LIMIT, 60
    )
    return sum(bool(r[0]) for r in results)


FLOWS: dict[str, tuple[Callable[[Tx, dict[str, Any]], Awaitable[int]], int]] = {
    "magic link sign-ins": (magic_link, 1),
    "TOTP code verifies": (totp_code, 1),
    "backup code verifies": (backup_code, 1),
    f"rate limit {LIMIT}: passes": (rate_limit, LIMIT),
}


async def same_second(tx: Tx, s: dict[str, Any]) -> str:
    """Is a token issued in the second of a revocation (after it) accepted?"""
    jwt = s["jwt"]
    for _ in range(50):
        user = f"j{uuid.uuid4().hex[:8]}"
        if isinstance(jwt, type(tx.jwt)):
            await tx.do(jwt, "revoke_all_user_tokens", user)
        else:
            await tx.do(tx.blacklist, "revoke_all_user_tokens", user)
        revoked = await tx.raw("cache", "user_tokens_revoked_at", user)
        token, _jti, _exp = jwt.generate_access_token(user, "app")
        if int(time.time()) == int(revoked.timestamp()):
            decoded = await tx.do(jwt, "decode_token", token)
            return "accepted" if decoded.is_valid else "REFUSED"
    return "n/a"


async def stale_session(tx: Tx, s: dict[str, Any]) -> str:
    user = UserResponse(id=f"s{uuid.uuid4().hex[:8]}", email="s@example.com")
    session = await tx.do(s["sessions"], "create_session", user)
    await tx.do(s["sessions"], "validate_session", session["session_id"])
    await tx.do(s["sessions"], "revoke_all_sessions", user.id)
    still = await tx.do(s["sessions"], "validate_session", session["session_id"])
    return "STILL VALID" if still else "refused"


async def one_mode(url: str, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with open_tx(url, mode) as tx:
        before, after = plain(tx), ours(tx)
        for name, (flow, _right) in FLOWS.items():
            start = len(ERRORS)
            b = [await flow(tx, before) for _ in range(TRIALS)]
            middle = len(ERRORS)
            a = [await flow(tx, after) for _ in range(TRIALS)]
            out[name] = (b, a, middle - start, len(ERRORS) - middle)
        out["token issued in the revocation second"] = (
            await same_second(tx, before),
            await same_second(tx, after),
            0,
            0,
        )
        out["session after revoke_all_sessions"] = (
            await stale_session(tx, before),
            await stale_session(tx, after),
            0,
            0,
        )
    return out


def shown(counts: list[int] | str) -> str:
    if isinstance(counts, str):
        return counts
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}-{high}"


def backend_url(name: str, folder: Path) -> tuple[str, str | None]:
    if name == "memory":
        return "memory://", None
    if name == "sqlite":
        return f"sqlite:///{folder / 'tenxyte.db'}", None
    base = os.environ.get(SERVERS[name])
    if not base:
        raise SystemExit(f'{SERVERS[name]} is not set: eval "$(scripts/services env)"')
    if name not in OPTION:
        return base, None
    prefix = f"b{uuid.uuid4().hex[:8]}_"
    return f"{base}{'&' if '?' in base else '?'}{OPTION[name]}={prefix}", prefix


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)
    backends = sys.argv[1:] or ["memory", "sqlite", "postgres", "mariadb", "redis", "mongodb"]
    print(
        f"{RACERS} simultaneous callers, {TRIALS} trials each; BEFORE = tenxyte's services,"
        " AFTER = authstore.integrations.tenxyte; min-max over the trials\n"
    )
    print(
        f"{'backend':9} {'mode':5} {'flow':38} {'right':>5} {'BEFORE':>11} {'AFTER':>11}"
        "  errors (raised calls, BEFORE/AFTER)"
    )
    for name in backends:
        with tempfile.TemporaryDirectory() as folder:
            url, prefix = backend_url(name, Path(folder))
            try:
                for mode in ("sync", "async"):
                    results = asyncio.run(one_mode(url, mode))
                    for flow, (b, a, eb, ea) in results.items():
                        right = FLOWS[flow][1] if flow in FLOWS else ""
                        errors = f"  {eb}/{ea}" if eb or ea else ""
                        print(
                            f"{name:9} {mode:5} {flow:38} {right!s:>5} {shown(b):>11} {shown(a):>11}"
                            + errors
                        )
            finally:
                if prefix is not None:
                    DROP[name](url.split("?")[0], prefix)


if __name__ == "__main__":
    main()
