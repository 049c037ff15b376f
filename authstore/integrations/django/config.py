"""The ``AUTHSTORE`` setting, and the stores opened from it (shared by the process).

Sync stores are thread-safe: one set per process. An async store's connections belong
to the event loop that opened them, and Django runs async code in the server's loop
under ASGI but in a new loop per request under WSGI and in its test client: one async
set per loop, and the sets of loops that have closed are closed at the next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from authstore.contracts.errors import ConfigurationError
from authstore.contracts.records import StoreKind
from authstore.integrations._stores import (
    StoreSet,
    StoreSpec,
    open_async_store_set,
    open_store_set,
)
from authstore.registry import StoreURL

__all__ = [
    "CHECK_TIMEOUT",
    "SETTING",
    "SharedStores",
    "app_stores",
    "cli_url",
    "shared_stores",
    "store_specs",
]

SETTING = "AUTHSTORE"
CHECK_TIMEOUT = 2.0
"""Seconds the reachability check waits (``AUTHSTORE["CHECK_TIMEOUT"]``)."""
STORE_KEYS = {kind.value.upper(): kind for kind in StoreKind}
TOP_KEYS = {"URL", "OPTIONS", "CHECK_TIMEOUT", *STORE_KEYS}


def _setting() -> Mapping[str, Any]:
    value = getattr(settings, SETTING, None)
    if value is None:
        raise ImproperlyConfigured(
            f'settings.{SETTING} is not set: e.g. {SETTING} = {{"URL": "sqlite:///auth.db"}}'
        )
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(value).__name__}")
    unknown = sorted(set(value) - TOP_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.{SETTING} has unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(TOP_KEYS))})"
        )
    return value


def store_specs() -> dict[StoreKind, StoreSpec]:
    """Each store the settings open, with its URL and options (ImproperlyConfigured for a
    setting of the wrong shape, ConfigurationError for a bad URL or unknown scheme)."""
    setting = _setting()
    base_options = setting.get("OPTIONS") or {}
    if not isinstance(base_options, Mapping):
        raise ImproperlyConfigured(f'{SETTING}["OPTIONS"] must be a dict')
    specs: dict[StoreKind, StoreSpec] = {}
    for name, kind in STORE_KEYS.items():
        own = setting.get(name, {})
        if own is False:
            continue
        if not isinstance(own, Mapping) or set(own) - {"URL", "OPTIONS"}:
            raise ImproperlyConfigured(
                f'{SETTING}["{name}"] must be False or a dict with "URL" and/or "OPTIONS"'
            )
        url = own.get("URL", setting.get("URL"))
        if not url:
            raise ImproperlyConfigured(f'{SETTING} needs a "URL" (or one in {SETTING}["{name}"])')
        options = {**base_options, **(own.get("OPTIONS") or {})}
        specs[kind] = checked_spec(url, options)
    return specs


def checked_spec(url: object, options: Mapping[str, Any]) -> StoreSpec:
    """A spec whose URL parses and names a known backend; a plain ``memory://`` is refused
    (each of its stores has data of its own, so sync and async views would not share it)."""
    spec = StoreSpec.of(url, options)
    parsed = StoreURL.parse(spec.url)
    if parsed.scheme == "memory" and not parsed.hosts:
        raise ConfigurationError(
            "memory:// gives each store its own data, so Django's sync and async code would "
            "not share it: name the data set, memory://NAME"
        )
    return spec


def check_timeout() -> float:
    timeout = _setting().get("CHECK_TIMEOUT", CHECK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ImproperlyConfigured(f'{SETTING}["CHECK_TIMEOUT"] must be a positive number')
    return float(timeout)


def cli_url(spec: StoreSpec) -> str:
    """The spec as one URL for ``authstore`` commands: its options as query options."""
    extra = []
    for name, value in spec.options:
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise ImproperlyConfigured(
                f"store option {name!r} is a {type(value).__name__}: the authstore commands "
                "take options that can be written in a URL"
            )
        extra.append(f"{name}={value}")
    if not extra:
        return spec.url
    return spec.url + ("&" if "?" in spec.url else "?") + "&".join(extra)


async def _closing_at_loop_end(stores: StoreSet) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await stores.aclose()


class SharedStores:
    """The stores of one set of specs: one sync set per process, one async set per loop."""

    def __init__(self, specs: Mapping[StoreKind, StoreSpec]) -> None:
        self.specs = dict(specs)
        self._lock = threading.Lock()
        self._sync: StoreSet | None = None
        self._async: dict[asyncio.AbstractEventLoop, StoreSet] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}

    def sync(self) -> StoreSet:
        stores = self._sync
        if stores is not None:
            return stores
        with self._lock:
            if self._sync is None:
                self._sync = open_store_set(self.specs)
            return self._sync

    async def aio(self) -> StoreSet:
        loop = asyncio.get_running_loop()
        created = False
        with self._lock:
            stores = self._async.get(loop)
            ended = [old for old in self._async if old.is_closed()]
            left = [self._async.pop(old) for old in ended]
            for old in ended:
                self._keepers.pop(old, None)
            if stores is None:
                stores = self._async[loop] = open_async_store_set(self.specs)
                created = True
        if created:
            # Under WSGI or Django's sync client every request runs in a loop of its own
            # (asgiref), which ends with shutdown_asyncgens: this generator's finally then
            # closes the loop's stores on that loop, before it closes, so no connection
            # outlives it. Under ASGI the loop lives as long as the server.
            keeper = _closing_at_loop_end(stores)
            await keeper.__anext__()
            self._keepers[loop] = keeper
        for old_set in left:  # their loop is gone: they close without awaiting it
            await old_set.aclose()
        return stores

    def close(self) -> None:
        """Close the sync stores (the next use opens them again); async ones of other
        loops are dropped (their loop closes their connections)."""
        with self._lock:
            stores, self._sync = self._sync, None
            self._async.clear()
            self._keepers.clear()
        if stores is not None:
            stores.close()


_lock = threading.Lock()
_shared: dict[tuple[tuple[StoreKind, StoreSpec], ...], SharedStores] = {}


def shared_stores(specs: Mapping[StoreKind, StoreSpec]) -> SharedStores:
    key = tuple(sorted(specs.items(), key=lambda item: item[0]))
    with _lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = SharedStores(specs)
        return found


_app: SharedStores | None = None


def app_stores() -> SharedStores:
    """The stores of ``settings.AUTHSTORE``, read once (again after a settings change)."""
    global _app
    found = _app
    if found is None:
        try:
            found = _app = shared_stores(store_specs())
        except ConfigurationError as error:
            raise ImproperlyConfigured(f"settings.{SETTING}: {error}") from None
    return found


def forget_all() -> None:
    """Close every store opened from settings (a test changed the settings)."""
    global _app
    with _lock:
        _app = None
        opened = list(_shared.values())
        _shared.clear()
    for stores in opened:
        with contextlib.suppress(Exception):
            stores.close()


def forget_on_setting_change() -> None:
    from django.core.signals import setting_changed

    def changed(setting: str, **_: object) -> None:
        if setting == SETTING:
            forget_all()

    setting_changed.connect(changed, weak=False, dispatch_uid="authstore-setting-changed")
