"""Every test session gets a MongoDB test server in a known state: its own fresh
secantusd when the configured server is the shared stand-in, so no test sees what an
earlier run left there. Checked against a private server standing in for the shared one."""

from __future__ import annotations

import os
from collections.abc import Callable

import pymongo
import pytest

from tests.mongodb.private import FRESH, PrivateServer, SessionServer
from tests.servers import SERVERS


def _databases(url: str) -> set[str]:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=5000
    )
    try:
        return set(client.list_database_names()) - {"admin", "config", "local"}
    finally:
        client.close()


def test_this_session_has_its_own_server(server_url: Callable[[str], str]) -> None:
    configured = os.environ.get(SERVERS["mongodb"].env)
    if os.environ.get(FRESH) == "0":
        pytest.skip(f"{FRESH}=0: this run uses {configured} as it is")
    assert server_url("mongodb") != configured


def test_a_shared_stand_in_is_replaced_by_a_fresh_server(
    server: PrivateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``server`` plays the shared stand-in, with the data of an earlier run."""
    admin = server.admin()
    try:
        admin["authstore_test"]["leftover"].insert_one({"_id": 1})
    finally:
        admin.close()
    monkeypatch.delenv(FRESH, raising=False)
    session = SessionServer()
    try:
        fresh = session.url(server.url)
        assert fresh is not None and fresh != server.url
        assert session.url(server.url) == fresh  # one per session
        assert _databases(fresh) == set()
        assert _databases(server.url) == {"authstore_test"}  # the shared one untouched
    finally:
        session.close()
    monkeypatch.setenv(FRESH, "0")
    kept = SessionServer()
    try:
        assert kept.url(server.url) is None  # the configured server as it is
    finally:
        kept.close()
