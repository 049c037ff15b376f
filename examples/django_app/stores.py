"""authstore in Django: the flows over the stores of ``settings.AUTHSTORE``.

``authstore.integrations.django`` (in ``INSTALLED_APPS``) opens the stores, once per
process: ``get_stores()``, the **sync** stores, thread-safe. Django runs an async view
in the server's event loop under ASGI but in a new loop per request under WSGI
(``runserver``) and in its test clients, and an async store's connections belong to
the loop that opened them, so async stores (``aget_stores()``) would open new
connections for every request under ``runserver``.
The views (async) reach the sync stores through ``sync_to_async``: each store call
runs in a worker thread, and the flows (``authflows``, shared with the FastAPI
example) see the async interface they expect.
"""

from __future__ import annotations

import smtplib
from typing import Any, cast

from asgiref.sync import sync_to_async
from authflows import Auth, MailNotSent, Settings, Stores
from django.conf import settings
from django.core.mail import send_mail

from authstore import AsyncCacheStore, AsyncMagicLinkStore, AsyncSessionStore, AsyncTotpStore
from authstore.integrations.django import get_stores


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


# [readme:django-stores]
def get_auth() -> Auth:
    """The flows over the sync stores of ``settings.AUTHSTORE``, each call in a thread."""
    opened = get_stores()  # opened at first use, shared by the process
    stores = Stores(
        cast(AsyncCacheStore, Threaded(opened.cache)),
        cast(AsyncSessionStore, Threaded(opened.sessions)),
        cast(AsyncTotpStore, Threaded(opened.totp)),
        cast(AsyncMagicLinkStore, Threaded(opened.magic_links)),
    )
    return Auth(flow_settings(), stores, mail_link)


# [/readme:django-stores]


def flow_settings() -> Settings:
    """The flows' settings, read from Django's at each request (tests override them)."""
    return Settings(
        authstore_url=settings.AUTHSTORE["URL"],
        jwt_secret=settings.AUTH_JWT_SECRET,
        totp_keys=settings.AUTH_TOTP_KEYS,
        cookie_secure=settings.AUTH_COOKIE_SECURE,
        link_url=settings.AUTH_LINK_URL,
        **getattr(settings, "AUTH_OPTIONS", {}),
    )
