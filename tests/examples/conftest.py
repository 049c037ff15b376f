"""The example apps (``examples/``) tested end to end on SQLite and PostgreSQL.

``examples/`` goes on ``sys.path`` so the apps import as they do when run from that
folder (``fastapi_app``, ``django_app``, ``authflows``). Each test gets a fresh
namespace on the server, so runs never see each other's users.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(params=["sqlite", "postgres"])
def example_url(
    request: pytest.FixtureRequest, tmp_path: Path, server_url: Callable[[str], str]
) -> str:
    """``AUTHSTORE_URL`` for one app: a SQLite file, or PostgreSQL in a new namespace."""
    namespace = f"ex_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}?namespace={namespace}"
    base = server_url("postgres")
    return f"{base}{'&' if '?' in base else '?'}namespace={namespace}"
