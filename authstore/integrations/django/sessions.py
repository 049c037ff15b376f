"""``SESSION_ENGINE = "authstore.integrations.django.sessions"``: Django's sessions in the
``AUTHSTORE`` cache store.

Why the cache store and not authstore's sessions store: a Django session is a mutable
bag of data, saved whenever a view changes it and often anonymous; the sessions store
keeps authenticated sessions whose record is fixed at creation (no user means no
record, no data update). The cache store gives what Django's SessionBase needs: an
atomic create (``add``), a write with a TTL, reads, deletes.

The session key (the cookie's value) is never stored: the entry's key is the key's
SHA-256, as authstore does with its own tokens. The data is Django's signed encoding
(``SessionBase.encode``, SESSION_SERIALIZER, JSON by default). The entry expires with
the session (``get_expiry_age``). A deleted session leaves a marker for an hour, and a
save checks it after writing, so a request that loaded the session before a logout
cannot write it back (it raises UpdateError, which Django answers with 400).

Sync methods use the sync cache store, the ``a*`` methods the async one of the running
loop.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.utils.crypto import get_random_string

from authstore.integrations._stores import Flow, call, run_async, run_sync
from authstore.integrations.django.config import app_stores

__all__ = ["KEY_PREFIX", "SessionStore", "cache_key"]

KEY_PREFIX = "django_session:"
GONE_PREFIX = "django_session_gone:"
GONE_FOR = 3600.0
"""How long a deleted session's marker stays: longer than any request that loaded it."""
CREATE_ATTEMPTS = 100


def cache_key(session_key: str, prefix: str = KEY_PREFIX) -> str:
    """Where a session lives: the SHA-256 of its key, never the key."""
    return prefix + hashlib.sha256(session_key.encode()).hexdigest()


def _write(session_key: str, data: str, age: float, must_create: bool) -> Flow[bool]:
    key = cache_key(session_key)
    if age <= 0:  # an expiry in the past: the session ends now
        yield from call("delete", key)
        return True
    if must_create:
        added: bool = yield from call("add", key, data, age)
        return added
    yield from call("set", key, data, age)
    if (yield from call("exists", cache_key(session_key, GONE_PREFIX))):
        yield from call("delete", key)  # deleted while this request held it: stay deleted
        raise UpdateError
    return True


def _create(data: str, age: float) -> Flow[str]:
    for _ in range(CREATE_ATTEMPTS):
        session_key = get_random_string(32, VALID_KEY_CHARS)
        if (yield from _write(session_key, data, age, must_create=True)):
            return session_key
    raise RuntimeError(f"no free session key in {CREATE_ATTEMPTS} attempts")


def _delete(session_key: str) -> Flow[None]:
    yield from call("set", cache_key(session_key, GONE_PREFIX), 1, GONE_FOR)
    yield from call("delete", cache_key(session_key))


def _load(session_key: str) -> Flow[Any]:
    data = yield from call("get", cache_key(session_key))
    return data


class SessionStore(SessionBase):
    """Django's SessionBase over authstore's cache store (see the module's docstring)."""

    @staticmethod
    def _store() -> Any:
        return app_stores().sync().cache

    @staticmethod
    async def _astore() -> Any:
        return (await app_stores().aio()).cache

    def _loaded(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, str):
            self._session_key = None
            return {}
        decoded: dict[str, Any] = self.decode(data)
        return decoded

    def load(self) -> dict[str, Any]:
        if not self.session_key:
            return self._loaded(None)
        return self._loaded(run_sync(_load(self.session_key), self._store()))

    async def aload(self) -> dict[str, Any]:
        if not self.session_key:
            return self._loaded(None)
        return self._loaded(await run_async(_load(self.session_key), await self._astore()))

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        return bool(run_sync(call("exists", cache_key(session_key)), self._store()))

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        return bool(await run_async(call("exists", cache_key(session_key)), await self._astore()))

    def create(self) -> None:
        data = self.encode(self._get_session(no_load=True))  # type: ignore[attr-defined]
        self._session_key = run_sync(_create(data, self.get_expiry_age()), self._store())
        self.modified = True

    async def acreate(self) -> None:
        data = self.encode(await self._aget_session(no_load=True))  # type: ignore[attr-defined]
        age = await self.aget_expiry_age()
        self._session_key = await run_async(_create(data, age), await self._astore())
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self.encode(self._get_session(no_load=must_create))  # type: ignore[attr-defined]
        flow = _write(self.session_key, data, self.get_expiry_age(), must_create)
        if not run_sync(flow, self._store()):
            raise CreateError
        return None

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        data = self.encode(await self._aget_session(no_load=must_create))  # type: ignore[attr-defined]
        flow = _write(self.session_key, data, await self.aget_expiry_age(), must_create)
        if not await run_async(flow, await self._astore()):
            raise CreateError
        return None

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            run_sync(_delete(session_key), self._store())

    async def adelete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            await run_async(_delete(session_key), await self._astore())

    @classmethod
    def clear_expired(cls) -> None:
        """Expired sessions are never read; this frees their space now (the whole cache
        store's expired entries)."""
        cls._store().purge_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        await (await cls._astore()).purge_expired()
