"""Django for the integration tests: configured here only when nothing configured it yet
(the example app's tests may have, at collection); every test then applies what it needs
with ``override_settings``, so the two coexist in one process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import django
from django.conf import settings

BASE: dict[str, Any] = {
    "SECRET_KEY": "integration-tests-" + "k" * 40,
    "ROOT_URLCONF": "tests.integrations.django_urls",
    "INSTALLED_APPS": ["authstore.integrations.django"],
    "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"],
    "SESSION_ENGINE": "authstore.integrations.django.sessions",
    "ALLOWED_HOSTS": ["*"],
    "USE_TZ": True,
}


@contextlib.contextmanager
def django_settings(url: str, cache_namespace: str, **extra: Any) -> Iterator[None]:
    if not settings.configured:
        settings.configure(**BASE)
        django.setup()
    from django.test import override_settings

    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "authstore": {
            "BACKEND": "authstore.integrations.django.cache.AuthstoreCache",
            "LOCATION": url,
            "OPTIONS": {"namespace": cache_namespace},
        },
    }
    values = {**BASE, "AUTHSTORE": {"URL": url}, "CACHES": caches, **extra}
    with override_settings(**values):
        yield
