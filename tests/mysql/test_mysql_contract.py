"""The whole contract suite, sync and async, against MariaDB (and MySQL 8 when configured)."""

from __future__ import annotations

import pytest

from authstore.contracts.testing import StoreContract

from .conftest import UNREACHABLE_URL


class TestMariaDB(StoreContract):
    @pytest.fixture
    def authstore_url(self, mysql_url: str) -> str:
        return mysql_url

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        return UNREACHABLE_URL
