"""Settings of the Django example: authstore is configured here, from the environment.

How to install and run it: ``examples/README.md`` (``python manage.py runserver`` from
``examples/``, or ``uvicorn django_app.asgi:application`` for an ASGI server).
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = False
ALLOWED_HOSTS = ["*"]  # the mailed link comes from AUTH_LINK_URL, never from the Host header
ROOT_URLCONF = "django_app.urls"
DATABASES: dict[str, object] = {}  # authstore keeps every piece of auth state
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING = {  # tracebacks of 500s on the console (Django's default mails them to ADMINS)
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}

# Sign-in mails: printed on the console unless EMAIL_BACKEND says otherwise, e.g.
# EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend with Django's EMAIL_HOST,
# EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS settings.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "1") != "0"
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("MAIL_FROM", "auth@localhost")

# [readme:django-settings]
INSTALLED_APPS = ["authstore.integrations.django"]  # the stores, checks, manage.py commands
MIDDLEWARE = [  # no CSRF middleware: JSON bodies and SameSite=Lax cookies
    "authstore.integrations.django.middleware.BackendUnavailableMiddleware",  # 503, not 500
]
AUTHSTORE = {"URL": os.environ.get("AUTHSTORE_URL", "sqlite:///auth.db")}
AUTH_JWT_SECRET = os.environ.get("AUTH_JWT_SECRET", "")
AUTH_TOTP_KEYS = os.environ.get("AUTH_TOTP_KEYS", "")  # "id:base64key,...", newest last
AUTH_COOKIE_SECURE = os.environ.get("AUTH_COOKIE_SECURE", "1") != "0"
AUTH_LINK_URL = os.environ.get("AUTH_LINK_URL", "http://127.0.0.1:8000/sign-in")
# [/readme:django-settings]
