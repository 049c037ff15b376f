"""Importing authstore (or the Django app's package, as INSTALLED_APPS does before the app
registry is ready) imports neither web framework."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["authstore", "authstore.integrations.django"])
def test_import_pulls_in_no_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('fastapi', 'starlette', 'django') if m in sys.modules)\n"
        "print(','.join(loaded))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "", f"importing {module} imported {found}"
