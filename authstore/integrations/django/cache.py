# ruff: noqa: ASYNC109  - the async methods keep Django's signatures (a timeout is a TTL)
"""Django's cache API over an authstore cache store.

::

    CACHES = {
        "default": {
            "BACKEND": "authstore.integrations.django.cache.AuthstoreCache",
            "LOCATION": "redis://localhost:6379/0",   # empty: the AUTHSTORE cache's URL
            "OPTIONS": {"namespace": "django_cache"},  # authstore store options
        }
    }

Django's conventions: a timeout of ``DEFAULT_TIMEOUT`` is ``TIMEOUT`` (300 unless set),
None keeps the value forever, 0 or less expires it at once; ``KEY_PREFIX``, ``VERSION``
and ``KEY_FUNCTION`` make the key (``make_and_validate_key``). Keys longer than 1,024
UTF-8 bytes or holding NUL raise ``InvalidCacheKey``.

Values: authstore never pickles. JSON values (dict, list, str, int, float, bool) and
bytes are stored as they are, and ``None`` can be cached; anything else (a tuple, a
datetime, a model instance) raises TypeError before any I/O. ``incr``/``decr`` need a
stored int; ``incr`` of a missing key raises ValueError, as Django's backends do.

Sync methods use the sync store, ``a*`` methods the async store of the running loop
(never a thread), except ``aclear``: deleting a namespace is an administrative call of
the backend, which runs in a thread.

``clear()`` deletes the cache's whole namespace, so the cache gets a namespace of its
own, ``django_cache``, unless the URL or OPTIONS name one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, InvalidCacheKey
from django.core.exceptions import ImproperlyConfigured

from authstore.contracts.errors import UnsupportedOperationError
from authstore.contracts.records import StoreKind
from authstore.contracts.values import MAX_TTL, MIN_TTL, check_key
from authstore.integrations._stores import Flow, StoreSpec, call, run_async, run_sync
from authstore.integrations.django.config import (
    SETTING,
    SharedStores,
    checked_spec,
    shared_stores,
    store_specs,
)
from authstore.registry import NamespaceCleaner, StoreURL, backend_for

__all__ = ["DEFAULT_NAMESPACE", "AuthstoreCache"]

DEFAULT_NAMESPACE = "django_cache"
EXPIRED = 0.0
"""A timeout of 0 or less: the value expires at once (``set`` deletes, ``add`` stores nothing)."""
NONE = b"\x00"
BYTES = b"\x01"
"""authstore does not store None: a cached None is the bytes ``NONE``, and cached bytes get
the ``BYTES`` prefix, so neither can be mistaken for the other."""


def encode(value: Any) -> Any:
    if value is None:
        return NONE
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BYTES + bytes(value)
    return value


def decode(value: Any) -> Any:
    if isinstance(value, bytes):
        if value == NONE:
            return None
        if value[:1] == BYTES:
            return value[1:]
    return value


class AuthstoreCache(BaseCache):
    """A Django cache backend over authstore (see the module's docstring)."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = {
            name: value
            for name, value in (params.get("OPTIONS") or {}).items()
            if name not in ("MAX_ENTRIES", "CULL_FREQUENCY")  # Django's, read by BaseCache
        }
        self._location = location
        self._options = options
        self._stores: SharedStores | None = None

    # -- the store ------------------------------------------------------------------------

    def spec(self) -> StoreSpec:
        url, options = self._location, dict(self._options)
        if not url:  # the AUTHSTORE cache's URL and options, in a namespace of our own
            inherited = store_specs().get(StoreKind.CACHE)
            if inherited is None:
                raise ImproperlyConfigured(f"the cache has no LOCATION and {SETTING} no cache")
            url = inherited.url
            kept = {name: value for name, value in inherited.options if name != "namespace"}
            options = {**kept, **options}
        if "namespace" not in options and "namespace" not in StoreURL.parse(url).options:
            options["namespace"] = DEFAULT_NAMESPACE
        return checked_spec(url, options)

    def _shared(self) -> SharedStores:
        """The stores of this cache, found once (settings do not change while serving; a
        test that changes them gets new backend objects from Django)."""
        if self._stores is None:
            self._stores = shared_stores({StoreKind.CACHE: self.spec()})
        return self._stores

    def _run(self, flow: Flow[Any]) -> Any:
        return run_sync(flow, self._shared().sync().cache)

    async def _arun(self, flow: Flow[Any]) -> Any:
        return await run_async(flow, (await self._shared().aio()).cache)

    # -- keys and timeouts ----------------------------------------------------------------

    def validate_key(self, key: str) -> None:
        try:
            check_key(key)
        except (TypeError, ValueError) as error:
            raise InvalidCacheKey(str(error)) from None

    def ttl_of(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Django's timeout as an authstore TTL: None forever, EXPIRED for 0 or less."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if math.isnan(timeout):
            raise ValueError("timeout must not be NaN")
        if timeout <= 0:
            return EXPIRED
        return float(min(max(timeout, MIN_TTL), MAX_TTL))

    # -- the operations, once for sync and async -------------------------------------------

    def _add(self, key: Any, value: Any, timeout: Any, version: Any) -> Flow[bool]:
        full, ttl, stored = (
            self.make_and_validate_key(key, version),
            self.ttl_of(timeout),
            encode(value),
        )
        if ttl == EXPIRED:  # stored and expired at once: True when it was absent
            return not (yield from call("exists", full))
        added: bool = yield from call("add", full, stored, ttl)
        return added

    def _get(self, key: Any, default: Any, version: Any) -> Flow[Any]:
        value = yield from call("get", self.make_and_validate_key(key, version))
        return default if value is None else decode(value)

    def _set(self, key: Any, value: Any, timeout: Any, version: Any) -> Flow[None]:
        full, ttl, stored = (
            self.make_and_validate_key(key, version),
            self.ttl_of(timeout),
            encode(value),
        )
        if ttl == EXPIRED:
            yield from call("delete", full)
        else:
            yield from call("set", full, stored, ttl)

    def _touch(self, key: Any, timeout: Any, version: Any) -> Flow[bool]:
        full, ttl = self.make_and_validate_key(key, version), self.ttl_of(timeout)
        if ttl == EXPIRED:
            deleted: bool = yield from call("delete", full)
            return deleted
        changed: bool = yield from call("expire", full, ttl)
        return changed

    def _delete(self, key: Any, version: Any) -> Flow[bool]:
        deleted: bool = yield from call("delete", self.make_and_validate_key(key, version))
        return deleted

    def _get_many(self, keys: Iterable[Any], version: Any) -> Flow[dict[Any, Any]]:
        names = {self.make_and_validate_key(key, version): key for key in keys}
        if not names:
            return {}
        found = yield from call("get_many", list(names))
        return {names[full]: decode(value) for full, value in found.items()}

    def _has_key(self, key: Any, version: Any) -> Flow[bool]:
        exists: bool = yield from call("exists", self.make_and_validate_key(key, version))
        return exists

    def _incr(self, key: Any, delta: Any, version: Any) -> Flow[int]:
        full = self.make_and_validate_key(key, version)
        if not (yield from call("exists", full)):
            raise ValueError(f"Key '{key}' not found.")
        # should the key vanish in between, incr makes it again, with the default timeout
        ttl = self.ttl_of()
        value: int = yield from call("incr", full, delta, None if ttl == EXPIRED else ttl)
        return value

    def _set_many(self, data: Mapping[Any, Any], timeout: Any, version: Any) -> Flow[list[Any]]:
        ttl = self.ttl_of(timeout)
        items = {self.make_and_validate_key(key, version): encode(v) for key, v in data.items()}
        if not items:
            return []
        if ttl == EXPIRED:
            yield from call("delete_many", list(items))
        else:
            yield from call("set_many", items, ttl)
        return []

    def _delete_many(self, keys: Iterable[Any], version: Any) -> Flow[None]:
        names = [self.make_and_validate_key(key, version) for key in keys]
        if names:
            yield from call("delete_many", names)

    # -- Django's API ---------------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        return bool(self._run(self._add(key, value, timeout, version)))

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: Any = None,
    ) -> bool:
        return bool(await self._arun(self._add(key, value, timeout, version)))

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._run(self._get(key, default, version))

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return await self._arun(self._get(key, default, version))

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        self._run(self._set(key, value, timeout, version))

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: Any = None,
    ) -> None:
        await self._arun(self._set(key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(self._run(self._touch(key, timeout, version)))

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(await self._arun(self._touch(key, timeout, version)))

    def delete(self, key: Any, version: Any = None) -> bool:
        return bool(self._run(self._delete(key, version)))

    async def adelete(self, key: Any, version: Any = None) -> bool:
        return bool(await self._arun(self._delete(key, version)))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        found: dict[Any, Any] = self._run(self._get_many(keys, version))
        return found

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        found: dict[Any, Any] = await self._arun(self._get_many(keys, version))
        return found

    def has_key(self, key: Any, version: Any = None) -> bool:
        return bool(self._run(self._has_key(key, version)))

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        return bool(await self._arun(self._has_key(key, version)))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        value: int = self._run(self._incr(key, delta, version))
        return value

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        value: int = await self._arun(self._incr(key, delta, version))
        return value

    def decr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return self.incr(key, -delta, version)

    async def adecr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return await self.aincr(key, -delta, version)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        failed: list[Any] = self._run(self._set_many(data, timeout, version))
        return failed

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: Any = None,
    ) -> list[Any]:
        failed: list[Any] = await self._arun(self._set_many(data, timeout, version))
        return failed

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        self._run(self._delete_many(keys, version))

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        await self._arun(self._delete_many(keys, version))

    def clear(self) -> None:
        """Delete every entry of the cache's namespace (not just this KEY_PREFIX's)."""
        spec = self.spec()
        backend, parsed = backend_for(spec.url)
        url = parsed.with_options(dict(spec.options))
        if not isinstance(backend, NamespaceCleaner):
            raise UnsupportedOperationError(f"{parsed.scheme}:// cannot delete a namespace")
        namespace = self._shared().sync().cache.namespace
        backend.clear_namespace(url, namespace)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    def close(self, **kwargs: Any) -> None:
        """Django calls this after each request: the stores stay open for the next one."""

    async def aclose(self, **kwargs: Any) -> None:
        """As ``close``."""
