"""Fixtures for the MongoDB tests: the server's URL and throwaway collection prefixes.

The URL comes from ``AUTHSTORE_TEST_MONGODB_URL`` (``scripts/services`` starts the
wire-compatible test server), else a testcontainers ``mongo`` image where Docker
answers. Every module works under its own collection prefix and drops its
collections at the end: the test server slows down as its data grows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest

from tests.mongodb.private import PrivateServer

UNREACHABLE_URL = "mongodb://127.0.0.1:1/authstore_test?timeout=0.25"
"""Nothing listens on port 1: server selection fails within the timeout."""


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


def with_option(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def database_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0] or "authstore"


def drop_collections(url: str, prefix: str) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url.split("?", 1)[0], serverSelectionTimeoutMS=5000
    )
    try:
        database = client[database_of(url)]
        for name in database.list_collection_names():
            if name.startswith(prefix):
                database.drop_collection(name)
    finally:
        client.close()


@pytest.fixture(scope="session")
def mongo_server(server_url: Callable[[str], str]) -> str:
    return server_url("mongodb")


@pytest.fixture(scope="module")
def collection_prefix(mongo_server: str) -> Iterator[str]:
    prefix = new_prefix()
    yield prefix
    drop_collections(mongo_server, prefix)


@pytest.fixture(scope="module")
def mongo_url(mongo_server: str, collection_prefix: str) -> str:
    """The server URL with this module's collection prefix."""
    return with_option(mongo_server, "collection_prefix", collection_prefix)


@pytest.fixture
def fresh_prefix(mongo_server: str) -> Iterator[str]:
    """A prefix of this test alone (dropped afterwards): collections with no index yet."""
    prefix = new_prefix()
    yield prefix
    drop_collections(mongo_server, prefix)


@pytest.fixture
def admin(mongo_server: str) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    """A plain client's database, for looking behind the store's back."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_server.split("?", 1)[0], serverSelectionTimeoutMS=5000
    )
    yield client[database_of(mongo_server)]
    client.close()


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    """A private secantusd of this test alone, for freezing, killing and restarting."""
    private = PrivateServer()
    private.start()
    yield private
    private.close()
