"""``manage.py authstore_check``: authstore's contract suite against each configured URL
(``authstore check URL``: every test works in a namespace of its own and removes what
it wrote)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from authstore.integrations.django.management.commands._cli import run


class Command(BaseCommand):
    help = "Run authstore's contract suite against each AUTHSTORE URL."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-k", dest="select", metavar="EXPRESSION", help="pytest -k")
        parser.add_argument("--show-tests", action="store_true", help="show every test")

    def handle(self, *args: Any, **options: Any) -> None:
        extra = ["-v"] if options.get("show_tests") else []
        if options.get("select"):
            extra += ["-k", options["select"]]
        run(self, "check", *extra)
