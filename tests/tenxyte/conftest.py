"""tenxyte's services and storage interfaces over authstore, on every listed backend.

``tx`` is one test's world: the four authstore stores (sync or async, by ``mode``) in a
fresh namespace, tenxyte's storage interfaces over them, authstore's drop-in services,
and a fake user directory and mailbox. ``tx.do(obj, "name", ...)`` calls ``name`` in
sync mode and awaits ``name_async`` in async mode; ``tx.race(n, ...)`` makes the same
call ``n`` times at once (threads behind a barrier, or ``asyncio.gather``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet
from tenxyte.core import Settings

from authstore.contracts.records import StoreKind
from authstore.integrations.tenxyte import (
    AuthstoreCacheService,
    AuthstoreCodeReplayProtection,
    AuthstoreJWTService,
    AuthstoreMagicLinkRepository,
    AuthstoreMagicLinkService,
    AuthstoreSessionRepository,
    AuthstoreSessionService,
    AuthstoreTokenBlacklist,
    AuthstoreTOTPService,
    AuthstoreTOTPStorage,
)
from authstore.registry import open_store
from tests import contention
from tests.backends import backend_fixture

TENXYTE_BACKENDS = ["memory", "sqlite", "postgres", "mariadb", "redis", "mongodb"]
RACERS = 20
SECRET_KEY = "k" * 48


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tenxyte warns that HS256 is symmetric at every JWTService construction: the tests know."""
    for item in items:
        if "tests/tenxyte/" in str(item.path).replace("\\", "/"):
            item.add_marker(
                pytest.mark.filterwarnings("ignore::tenxyte.core.jwt_service.SecurityWarning")
            )


class DictSettings:
    """A tenxyte SettingsProvider over a dict."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def tenxyte_settings(**overrides: Any) -> Settings:
    values = {
        "TENXYTE_JWT_SECRET_KEY": SECRET_KEY,
        "TENXYTE_JWT_ACCESS_TOKEN_LIFETIME": 900,
        "TENXYTE_JWT_REFRESH_TOKEN_LIFETIME": 86400,
        "TENXYTE_MAGIC_LINK_EXPIRY_MINUTES": 15,
    }
    values.update({f"TENXYTE_{k.upper()}": v for k, v in overrides.items()})
    return Settings(provider=DictSettings(values))


class Users:
    """tenxyte's UserLookup (sync and async): every address is an active user."""

    def __init__(self) -> None:
        self.locked: set[str] = set()

    def get_by_email(self, email: str) -> dict[str, Any] | None:
        return {"id": f"user-{email.split('@')[0]}", "email": email}

    def is_active(self, user_id: str) -> bool:
        return True

    def is_locked(self, user_id: str) -> bool:
        return user_id in self.locked

    async def get_by_email_async(self, email: str) -> dict[str, Any] | None:
        return self.get_by_email(email)

    async def is_active_async(self, user_id: str) -> bool:
        return True

    async def is_locked_async(self, user_id: str) -> bool:
        return self.is_locked(user_id)


@dataclass
class Mailbox:
    """tenxyte's EmailService as far as magic links go: keeps the links sent."""

    sent: list[str] = field(default_factory=list)

    def send_magic_link(self, to_email: str, magic_link_url: str, expires_in_minutes: int) -> bool:
        self.sent.append(magic_link_url)
        return True

    async def send_magic_link_async(
        self, to_email: str, magic_link_url: str, expires_in_minutes: int
    ) -> bool:
        return self.send_magic_link(to_email, magic_link_url, expires_in_minutes)

    def last_token(self) -> str:
        return self.sent[-1].split("token=", 1)[1]


@dataclass
class Tx:
    mode: str
    url: str
    namespace: str
    stores: dict[str, Any]
    settings: Settings
    cache: AuthstoreCacheService
    blacklist: AuthstoreTokenBlacklist
    session_repo: AuthstoreSessionRepository
    totp_storage: AuthstoreTOTPStorage
    replay: AuthstoreCodeReplayProtection
    link_repo: AuthstoreMagicLinkRepository
    jwt: AuthstoreJWTService
    totp: AuthstoreTOTPService
    links: AuthstoreMagicLinkService
    sessions: AuthstoreSessionService
    users: Users
    mail: Mailbox
    threads_allowed: bool = False
    """tenxyte's own services run CPU work in threads; authstore's never do."""

    async def do(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return getattr(obj, method)(*args, **kwargs)
        return await getattr(obj, f"{method}_async")(*args, **kwargs)

    async def race(self, n: int, obj: Any, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """``n`` simultaneous calls; their results (an exception fails the test)."""
        if self.mode == "async":
            return list(
                await asyncio.gather(
                    *(getattr(obj, f"{method}_async")(*args, **kwargs) for _ in range(n))
                )
            )
        return contention.race(n, lambda: getattr(obj, method)(*args, **kwargs))

    async def raw(self, kind: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call an authstore store directly (to look behind the services)."""
        result = getattr(self.stores[kind], method)(*args, **kwargs)
        return await result if self.mode == "async" else result


TX_STORES = {
    "cache": StoreKind.CACHE,
    "sessions": StoreKind.SESSIONS,
    "totp": StoreKind.TOTP,
    "links": StoreKind.MAGIC_LINKS,
    "refresh": StoreKind.SESSIONS,
}
"""The stores a ``Tx`` opens, by name, and their kinds: the refresh tokens are sessions
of their own namespace."""


def build(mode: str, url: str, namespace: str, stores: dict[str, Any], **settings: Any) -> Tx:
    def pair(kind: str) -> tuple[Any, Any]:
        return (stores[kind], None) if mode == "sync" else (None, stores[kind])

    blacklist = AuthstoreTokenBlacklist(*pair("cache"), revocation_ttl=86400)
    session_repo = AuthstoreSessionRepository(*pair("sessions"))
    totp_storage = AuthstoreTOTPStorage(*pair("totp"))
    link_repo = AuthstoreMagicLinkRepository(*pair("links"))
    conf = tenxyte_settings(**settings)
    refresh, async_refresh = pair("refresh")
    users, mail = Users(), Mailbox()
    return Tx(
        mode=mode,
        url=url,
        namespace=namespace,
        stores=stores,
        settings=conf,
        cache=AuthstoreCacheService(*pair("cache")),
        blacklist=blacklist,
        session_repo=session_repo,
        totp_storage=totp_storage,
        replay=AuthstoreCodeReplayProtection(*pair("cache")),
        link_repo=link_repo,
        jwt=AuthstoreJWTService(
            conf, blacklist, refresh_tokens=refresh, async_refresh_tokens=async_refresh
        ),
        totp=AuthstoreTOTPService(
            conf,
            encryption_key=Fernet.generate_key().decode(),
            storage=totp_storage,
            backup_code_rounds=4,
        ),
        links=AuthstoreMagicLinkService(conf, link_repo, users, mail),
        sessions=AuthstoreSessionService(conf, None, session_repo),
        users=users,
        mail=mail,
    )


tenxyte_url = backend_fixture("tenxyte_url", TENXYTE_BACKENDS)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@contextlib.asynccontextmanager
async def open_tx(url: str, mode: str, **settings: Any) -> AsyncIterator[Tx]:
    """A ``Tx`` over new stores of ``url`` in a fresh namespace, closed on exit."""
    namespace = f"tx{uuid.uuid4().hex[:10]}"
    stores = {
        name: open_store(
            url,
            kind,
            asynchronous=mode != "sync",
            namespace=namespace + ("r" if name == "refresh" else ""),
        )
        for name, kind in TX_STORES.items()
    }
    try:
        yield build(mode, url, namespace, stores, **settings)
    finally:
        for store in stores.values():
            if mode == "sync":
                store.close()
            else:
                await store.aclose()


@pytest_asyncio.fixture
async def tx(tenxyte_url: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Tx]:
    """In async mode ``asyncio.to_thread`` fails the test unless ``tx.threads_allowed``
    (set by the tests of tenxyte's own services): every ``*_async`` method of the
    integration must await the async stores, never fall back to a thread."""
    async with open_tx(tenxyte_url, mode) as world:
        if mode == "async":
            real = asyncio.to_thread

            def guarded(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
                if not world.threads_allowed:
                    raise AssertionError(f"asyncio.to_thread({fn!r}) in an async flow")
                return real(fn, *args, **kwargs)

            monkeypatch.setattr(asyncio, "to_thread", guarded)
        yield world
