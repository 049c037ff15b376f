"""``manage.py authstore_migrate``: create or upgrade the schema of every configured store
(``authstore migrate URL`` for each URL of ``AUTHSTORE``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from authstore.integrations.django.management.commands._cli import run


class Command(BaseCommand):
    help = "Create or upgrade the schema behind each AUTHSTORE URL."

    def handle(self, *args: Any, **options: Any) -> None:
        run(self, "migrate")
