"""The whole contract suite, sync and async, against SQLite files."""

from pathlib import Path

import pytest

from authstore.contracts.testing import StoreContract


class TestSqlite(StoreContract):
    @pytest.fixture
    def authstore_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'auth.db'}"

    @pytest.fixture
    def authstore_unreachable_url(self, tmp_path: Path) -> str:
        # A database "inside" a regular file can never be opened.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return f"sqlite:///{blocker / 'auth.db'}"
