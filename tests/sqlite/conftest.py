"""Fixtures shared by the SQLite-specific tests: a fresh database file per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "auth.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    # four slashes: an absolute path
    return f"sqlite:///{db_path}"
