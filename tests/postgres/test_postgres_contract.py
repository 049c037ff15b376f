"""The whole contract suite, sync (psycopg) and async (asyncpg), against a real server."""

from __future__ import annotations

import pytest

from authstore.contracts.testing import StoreContract


class TestPostgres(StoreContract):
    @pytest.fixture
    def authstore_url(self, pg_url: str) -> str:
        return pg_url

    @pytest.fixture
    def authstore_unreachable_url(self, table_prefix: str) -> str:
        # Nothing listens on port 1: connections are refused at once.
        return f"postgresql://postgres@127.0.0.1:1/authstore_test?table_prefix={table_prefix}"
