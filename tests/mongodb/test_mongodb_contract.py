"""The whole contract suite, sync (MongoClient) and async (AsyncMongoClient), against a
real server (the wire-compatible test server here, MongoDB through testcontainers
where Docker answers).

Each test gets collections of its own, dropped afterwards: the test server scans a
collection for every findAndModify (MongoDB uses the _id index), so a collection
holding the earlier tests' megabyte values would slow the timing-sensitive rate-limit
tests down past their windows.
"""

from __future__ import annotations

import pytest

from authstore.contracts.testing import StoreContract

from .conftest import UNREACHABLE_URL, with_option


class TestMongoDB(StoreContract):
    @pytest.fixture
    def authstore_url(self, mongo_server: str, fresh_prefix: str) -> str:
        return with_option(mongo_server, "collection_prefix", fresh_prefix)

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        return UNREACHABLE_URL
