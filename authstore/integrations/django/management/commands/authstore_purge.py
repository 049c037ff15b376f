"""``manage.py authstore_purge``: delete expired entries now (``authstore purge URL`` for
each URL of ``AUTHSTORE``); reads never depend on it, it frees space."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from authstore.integrations.django.management.commands._cli import run


class Command(BaseCommand):
    help = "Delete expired entries of every AUTHSTORE store now."

    def handle(self, *args: Any, **options: Any) -> None:
        run(self, "purge")
