"""``durability=replicated`` on MongoDB: every security write is sent with the write
concern ``{w: "majority", j: true}`` (a write command its own, a transaction its
commit's), other commands without one.

What is checked here is what is sent (pymongo's command monitoring): the test server is
a single wire-compatible stand-in without a replica set, which accepts the write concern
and cannot show what it buys (a write on a majority survives an election; one on the
primary alone may be rolled back). That needs a replica set and an election, which this
suite does not start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

import authstore
from authstore import ConfigurationError
from authstore.adapters.mongodb.settings import parse_settings
from authstore.registry import StoreURL
from tests.mongodb.conftest import database_of

MAJORITY = {"w": "majority", "j": True}
WRITES = {"findAndModify", "update", "delete", "insert", "commitTransaction"}


class Sent(monitoring.CommandListener):
    """The commands a client sends: name and document."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        sent, self.sent = self.sent, []
        return [(name, document) for name, document in sent if name not in ("ping", "hello")]


def test_durability_option() -> None:
    assert parse_settings(StoreURL.parse("mongodb://h/db")).write_concern is None
    replicated = parse_settings(StoreURL.parse("mongodb://h/db?durability=replicated"))
    assert replicated.write_concern == MAJORITY
    assert parse_settings(StoreURL.parse("mongodb://h/db?durability=primary")).write_concern is None
    for bad in ("durability=majority", "durability=replicated&replicas=2"):
        with pytest.raises(ConfigurationError):
            parse_settings(StoreURL.parse(f"mongodb://h/db?{bad}"))


def _steps(cache: Any, sessions: Any, totp: Any, links: Any) -> list[tuple[str, bool, Any]]:
    """(name, is a security write, call); calls return None or an awaitable."""
    state: dict[str, Any] = {}

    def keep(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
        async def later(awaitable: Any) -> None:
            state[name] = await awaitable

        def run() -> Any:
            value = call()
            if asyncio.iscoroutine(value) or hasattr(value, "__await__"):
                return later(value)
            state[name] = value
            return None

        return run

    return [
        ("add_to_blacklist", True, lambda: cache.add_to_blacklist("jti", 600)),
        ("is_blacklisted", False, lambda: cache.is_blacklisted("jti")),
        ("revoke_user_tokens", True, lambda: cache.revoke_user_tokens("u", expires_in=600)),
        ("set", False, lambda: cache.set("k", b"v", 60)),
        ("check_rate_limit", False, lambda: cache.check_rate_limit("login", 5, 60)),
        ("remove_from_blacklist", False, lambda: cache.remove_from_blacklist("jti")),
        ("session create", True, keep("s1", lambda: sessions.create("u", ttl=600))),
        ("session create capped", True, lambda: sessions.create("u", ttl=600, max_sessions=1)),
        ("session create 3", True, keep("s3", lambda: sessions.create("u", ttl=600))),
        ("session touch", False, lambda: sessions.touch(state["s3"].token, ttl=900)),
        ("session revoke", True, lambda: sessions.revoke(state["s3"].token)),
        ("session revoke_by_id", True, lambda: sessions.revoke_by_id(state["s1"].record.id)),
        ("session revoke_all", True, lambda: sessions.revoke_all("u")),
        ("totp save_pending", False, lambda: totp.save_pending("u", b"x" * 20)),
        ("totp enable", True, lambda: totp.enable("u")),
        ("totp replace_backup_codes", True, lambda: totp.replace_backup_codes("u", ["c1"])),
        ("totp use_backup_code", True, lambda: totp.use_backup_code("u", "c1")),
        ("totp claim_step", True, lambda: totp.claim_step("u", 1000)),
        ("totp load", False, lambda: totp.load("u")),
        ("totp disable", True, lambda: totp.disable("u")),
        ("link issue", True, keep("l1", lambda: links.issue("u", "a@example.com", ttl=600))),
        ("link issue again", True, keep("l2", lambda: links.issue("u", "a@example.com", ttl=600))),
        ("link peek", False, lambda: links.peek(state["l2"].token)),
        ("link consume", True, lambda: links.consume(state["l2"].token)),
        ("link revoke_user", True, lambda: links.revoke_user("u")),
    ]


def _check(name: str, security: bool, replicated: bool, sent: list[tuple[str, Any]]) -> None:
    writes = [(command, document) for command, document in sent if command in WRITES]
    assert writes or not security, f"{name}: no write sent"
    in_transaction = any(command == "commitTransaction" for command, _ in writes)
    for command, document in sent:
        concern = document.get("writeConcern")
        if (
            security
            and replicated
            and command in WRITES
            and (command == "commitTransaction" or not in_transaction)
        ):
            assert concern == MAJORITY, f"{name}: {command} sent with {concern}"
        else:
            assert concern != MAJORITY, f"{name}: {command} sent with {concern}"


@pytest.fixture
def client(mongo_server: str) -> Iterator[tuple[Any, Sent]]:
    sent = Sent()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_server.split("?", 1)[0], event_listeners=[sent]
    )
    yield client, sent
    client.close()


@pytest.mark.parametrize("replicated", [True, False])
def test_security_writes_carry_the_majority_write_concern(
    client: tuple[Any, Sent], mongo_server: str, fresh_prefix: str, replicated: bool
) -> None:
    given, sent = client
    url = f"mongodb:///{database_of(mongo_server)}?collection_prefix={fresh_prefix}"
    if replicated:
        url += "&durability=replicated"
    stores = [
        opener(url, client=given)
        for opener in (
            authstore.open_cache,
            authstore.open_sessions,
            authstore.open_totp,
            authstore.open_magic_links,
        )
    ]
    try:
        stores[0].ping()  # indexes first
        sent.take()
        commits = 0
        for name, security, call in _steps(*stores):
            call()
            commands = sent.take()
            commits += sum(command == "commitTransaction" for command, _ in commands)
            _check(name, security, replicated, commands)
        assert commits  # a transaction's commit was among them
    finally:
        for store in stores:
            store.close()


def test_async_security_writes_carry_it_too(mongo_server: str, fresh_prefix: str) -> None:
    sent = Sent()

    async def main() -> None:
        given: Any = pymongo.AsyncMongoClient(mongo_server.split("?", 1)[0], event_listeners=[sent])
        url = (
            f"mongodb:///{database_of(mongo_server)}?collection_prefix={fresh_prefix}"
            "&durability=replicated"
        )
        stores = [
            opener(url, client=given)
            for opener in (
                authstore.open_async_cache,
                authstore.open_async_sessions,
                authstore.open_async_totp,
                authstore.open_async_magic_links,
            )
        ]
        try:
            await stores[0].ping()
            sent.take()
            for name, security, call in _steps(*stores):
                await call()
                _check(name, security, True, sent.take())
        finally:
            for store in stores:
                await store.aclose()
            await given.close()

    asyncio.run(main())
