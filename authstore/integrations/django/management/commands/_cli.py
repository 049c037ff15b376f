"""What the three commands share: the ``authstore`` command line (``authstore.cli``) run
once per distinct URL of the ``AUTHSTORE`` setting, its output written to the
command's streams."""

from __future__ import annotations

import contextlib

from django.core.management.base import BaseCommand, CommandError

from authstore import cli
from authstore.integrations.django.config import cli_url, store_specs


def configured_urls() -> list[str]:
    """Each distinct store URL of the setting (options written as query options)."""
    urls: list[str] = []
    for spec in store_specs().values():
        url = cli_url(spec)
        if url not in urls:
            urls.append(url)
    return urls


def run(command: BaseCommand, name: str, *extra: str) -> None:
    failed: list[int] = []
    for url in configured_urls():
        with contextlib.redirect_stdout(command.stdout), contextlib.redirect_stderr(command.stderr):  # type: ignore[type-var]
            code = cli.main([name, *extra, url])
        if code:
            failed.append(code)
    if failed:
        raise CommandError(
            f"authstore {name} failed (exit code {max(failed)})", returncode=max(failed)
        )
