"""The authstore contract suite on dbmstore: every store, sync and async, strict."""

from pathlib import Path

import pytest

from authstore.contracts.testing import StoreContract


class TestDbmStore(StoreContract):
    @pytest.fixture
    def authstore_url(self, tmp_path: Path) -> str:
        return f"dbmstore://{tmp_path}/data"

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        # a directory under a regular file can never be created: opens lazily, fails on use
        return "dbmstore:///dev/null/unreachable?timeout=1"
