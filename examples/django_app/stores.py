"""authstore in Django: sync stores, opened once per process from settings.

Django runs an async view in the server's event loop under ASGI, but in a new event
loop per request under WSGI and in its sync test client, and an async store's
connections belong to the loop that opened them. Sync stores are thread-safe and work
under both, so the views (async) reach them through ``sync_to_async``: each store call
runs in a worker thread, and the flows (``authflows``, shared with the FastAPI example)
see the async interface they expect.
"""

from __future__ import annotations

import smtplib
import threading
from typing import Any, cast

from asgiref.sync import sync_to_async
from authflows import Auth, MailNotSent, Settings, Stores
from django.conf import settings
from django.core.mail import send_mail
from django.core.signals import setting_changed

from authstore import (
    AsyncCacheStore,
    AsyncMagicLinkStore,
    AsyncSessionStore,
    AsyncTotpStore,
    open_cache,
    open_magic_links,
    open_sessions,
    open_totp,
)


class Threaded:
    """The async face of a sync store: ``await store.get(...)`` runs ``get`` in a thread."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if callable(attribute):
            return sync_to_async(attribute, thread_sensitive=False)
        return attribute


async def mail_link(email: str, link: str) -> None:
    """Send the link with Django's ``EMAIL_BACKEND`` (the console one in this example)."""
    body = f"Sign in: {link}\n\nThe link works once, for 15 minutes.\n"
    try:
        await sync_to_async(send_mail)("Your sign-in link", body, None, [email])
    except (smtplib.SMTPException, OSError) as error:
        raise MailNotSent(str(error)) from error


# -- glue: the stores, opened once per process (authstore.integrations.django will do it) --

_lock = threading.Lock()
_auth: Auth | None = None
_opened: list[Any] = []


# [readme:django-stores]
def get_auth() -> Auth:
    """The flows over four sync stores opened from ``settings.AUTHSTORE_URL``, once."""
    global _auth
    with _lock:
        if _auth is None:
            url = settings.AUTHSTORE_URL
            opened = [open_cache(url), open_sessions(url), open_totp(url), open_magic_links(url)]
            _opened.extend(opened)
            cache, sessions, totp, links = (Threaded(store) for store in opened)
            stores = Stores(
                cast(AsyncCacheStore, cache),
                cast(AsyncSessionStore, sessions),
                cast(AsyncTotpStore, totp),
                cast(AsyncMagicLinkStore, links),
            )
            _auth = Auth(django_settings(), stores, mail_link)
        return _auth


# [/readme:django-stores]


def django_settings() -> Settings:
    return Settings(
        authstore_url=settings.AUTHSTORE_URL,
        jwt_secret=settings.AUTH_JWT_SECRET,
        totp_keys=settings.AUTH_TOTP_KEYS,
        cookie_secure=settings.AUTH_COOKIE_SECURE,
        link_url=settings.AUTH_LINK_URL,
        **getattr(settings, "AUTH_OPTIONS", {}),
    )


def close() -> None:
    """Close the stores; the next ``get_auth`` opens them again from the settings."""
    global _auth
    with _lock:
        while _opened:
            _opened.pop().close()
        _auth = None


def _reload(setting: str, **_: object) -> None:
    if setting.startswith("AUTH"):
        close()


setting_changed.connect(_reload)

# -- end of glue ----------------------------------------------------------------------
