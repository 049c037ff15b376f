"""authstore in Django: the flows over the async stores of ``settings.AUTHSTORE``.

``authstore.integrations.django`` (in ``INSTALLED_APPS``) opens the stores: the views
are async and take ``await aget_stores()``, the async stores of the running event
loop. Django runs an async view in the server's loop under ASGI (one set of stores for
the process) but in a new loop per request under WSGI (``runserver``) and in its test
clients, and an async store's connections belong to the loop that opened them; the
integration keeps one set per loop and closes the sets of loops that have ended.
"""

from __future__ import annotations

import smtplib

from asgiref.sync import sync_to_async
from authflows import Auth, MailNotSent, Settings, Stores
from django.conf import settings
from django.core.mail import send_mail

from authstore.integrations.django import aget_stores


async def mail_link(email: str, link: str) -> None:
    """Send the link with Django's ``EMAIL_BACKEND`` (the console one in this example)."""
    body = f"Sign in: {link}\n\nThe link works once, for 15 minutes.\n"
    try:
        await sync_to_async(send_mail)("Your sign-in link", body, None, [email])
    except (smtplib.SMTPException, OSError) as error:
        raise MailNotSent(str(error)) from error


# [readme:django-stores]
async def get_auth() -> Auth:
    """The flows over the async stores of ``settings.AUTHSTORE`` for this event loop."""
    opened = await aget_stores()
    stores = Stores(opened.cache, opened.sessions, opened.totp, opened.magic_links)
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
