"""The contract suite once more, async, over a motor ``AsyncIOMotorClient`` given as
``client=`` (motor is being retired in favour of pymongo's AsyncMongoClient, but
existing apps hold one). authstore must use it and never close it. (A sync
``MongoClient`` given as client= is covered in test_mongodb_backend.py.)"""

from __future__ import annotations

import gc
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from authstore.contracts.records import StoreKind
from authstore.contracts.testing import StoreContract
from authstore.contracts.testing.harness import Mode, StoreFactory, open_store

from .conftest import UNREACHABLE_URL, database_of, with_option

motor_asyncio = pytest.importorskip("motor.motor_asyncio")
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class TestMongoDBMotor(StoreContract):
    @pytest.fixture(params=["async"])
    def authstore_mode(self, request: pytest.FixtureRequest) -> Mode:
        mode: Mode = request.param
        return mode

    @pytest.fixture
    def authstore_url(self, mongo_server: str, fresh_prefix: str) -> str:
        return with_option(mongo_server, "collection_prefix", fresh_prefix)

    @pytest.fixture
    def authstore_factory(self, mongo_server: str, fresh_prefix: str) -> Iterator[StoreFactory]:
        namespace = "t" + uuid.uuid4().hex
        address = mongo_server.split("?", 1)[0]
        # the test server is a Python implementation: under a 200-way race of
        # transactions on a loaded machine, write-conflict retries can outlast the
        # default 5 s (an unavailable answer, never a wrong one); races test exactness
        url = f"mongodb:///{database_of(mongo_server)}?collection_prefix={fresh_prefix}"
        url += "&timeout=20"
        clients: list[Any] = []

        def make(kind: StoreKind, asynchronous: bool) -> Any:
            assert asynchronous, "motor is async only"
            client = motor_asyncio.AsyncIOMotorClient(address)
            clients.append(client)
            return open_store(url, kind, asynchronous, namespace=namespace, client=client)

        yield make
        for client in clients:
            client.close()
        clients.clear()
        # motor's close() cannot close the sockets of a loop that has already ended (each
        # test's loop ends before this teardown; a given client is never closed by the
        # store): collect them here, where that is known, instead of in a later test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        return UNREACHABLE_URL
