"""The Django app: registers authstore's system checks; opens nothing at startup."""

from __future__ import annotations

from django.apps import AppConfig


class AuthstoreConfig(AppConfig):
    name = "authstore.integrations.django"
    label = "authstore"
    verbose_name = "authstore"

    def ready(self) -> None:
        from authstore.integrations.django import checks  # noqa: F401 - registers the checks
        from authstore.integrations.django.config import forget_on_setting_change

        forget_on_setting_change()
