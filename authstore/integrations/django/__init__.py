"""authstore in Django: ``"authstore.integrations.django"`` in ``INSTALLED_APPS`` and one
``AUTHSTORE`` setting.

::

    AUTHSTORE = {
        "URL": "postgresql://app@db/app",          # every store, unless it names its own
        "OPTIONS": {"namespace": "myapp"},          # keyword options of every store
        "CACHE": {"URL": "redis://cache:6379/0"},   # per store: URL and OPTIONS, or False
        "MAGIC_LINKS": False,                       # a store the app does not use
    }

Then ``get_stores()`` in sync views, ``await aget_stores()`` in async views (sync
stores are opened once per process, async ones once per event loop); a cache backend
for ``CACHES`` (``authstore.integrations.django.cache.AuthstoreCache``); a session
engine (``SESSION_ENGINE = "authstore.integrations.django.sessions"``); system checks;
``manage.py authstore_check``, ``authstore_migrate`` and ``authstore_purge``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authstore.integrations._stores import StoreSet

__all__ = ["aget_stores", "get_stores"]


def get_stores() -> StoreSet:
    """The sync stores of ``settings.AUTHSTORE`` (``.cache``, ``.sessions``, ``.totp``,
    ``.magic_links``), opened at first use and shared by every thread of the process."""
    from authstore.integrations.django.config import app_stores

    return app_stores().sync()


async def aget_stores() -> StoreSet:
    """The async stores of ``settings.AUTHSTORE`` for the running event loop (an async
    store's connections belong to the loop that opened them)."""
    from authstore.integrations.django.config import app_stores

    return await app_stores().aio()
