"""Settings of the Django example: authstore is configured here, from the environment.

    AUTHSTORE_URL=sqlite:///auth.db AUTH_JWT_SECRET=... AUTH_TOTP_KEYS="k1:<base64 32 bytes>" \
        DJANGO_SETTINGS_MODULE=django_app.settings uvicorn django_app.asgi:application
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}  # authstore keeps every piece of auth state
USE_TZ = True

# [readme:django-settings]
AUTHSTORE_URL = os.environ.get("AUTHSTORE_URL", "sqlite:///auth.db")
AUTH_JWT_SECRET = os.environ.get("AUTH_JWT_SECRET", "")
AUTH_TOTP_KEYS = os.environ.get("AUTH_TOTP_KEYS", "")  # "id:base64key,...", newest last
AUTH_COOKIE_SECURE = os.environ.get("AUTH_COOKIE_SECURE", "1") != "0"
# [/readme:django-settings]
