"""No bearer secret rests in plaintext, caller-supplied ones included.

A core with its own token scheme hands authstore its session ids and magic-link tokens
(``create(token=)``, ``issue(token=)``) or only their hashes (``issue_hashed``). Each test
writes such tokens, and authstore's own, through every store kind of a backend, then
reads the backend's raw storage behind the store's back (every table, key or document
of the test's prefix or namespace) and looks for each token's text: only its SHA-256
may be there. Sync and async stores write the same way; both are checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import authstore
from tests.backends import backend_url

BACKENDS_WITH_SECRETS = ["memory", "sqlite", "postgres", "mariadb", "redis", "mongodb"]
"""Every backend that keeps sessions and magic links (memcached is a cache only)."""


def _token(label: str) -> str:
    return f"CANARY-{label}-{uuid.uuid4().hex}{uuid.uuid4().hex}"


def _write_secrets(url: str, namespace: str, asynchronous: bool) -> list[str]:
    """Create sessions and links with caller tokens, a hashed link and generated ones;
    use and revoke some. Returns every plaintext token written."""
    caller = {name: _token(name) for name in ("session", "revoked", "link", "used", "hashed")}

    def sync() -> list[str]:
        with (
            authstore.open_sessions(url, namespace=namespace) as sessions,
            authstore.open_magic_links(url, namespace=namespace) as links,
        ):
            generated = sessions.create("alice", ttl=600).token
            sessions.create("alice", ttl=600, token=caller["session"], max_sessions=5)
            sessions.create("alice", ttl=600, token=caller["revoked"])
            assert sessions.revoke(caller["revoked"]) is True
            assert sessions.get(caller["session"]) is not None
            link = links.issue("alice", "a@example.com", ttl=600).token
            links.issue("bob", "b@example.com", ttl=600, token=caller["link"])
            links.issue("carol", "c@example.com", ttl=600, token=caller["used"])
            assert links.consume(caller["used"]) is not None
            digest = hashlib.sha256(caller["hashed"].encode()).hexdigest()
            links.issue_hashed("dave", "d@example.com", digest, ttl=600)
            assert links.peek(caller["hashed"]) is not None
            return [*caller.values(), generated, link]

    async def run_async() -> list[str]:
        async with (
            authstore.open_async_sessions(url, namespace=namespace) as sessions,
            authstore.open_async_magic_links(url, namespace=namespace) as links,
        ):
            generated = (await sessions.create("alice", ttl=600)).token
            await sessions.create("alice", ttl=600, token=caller["session"], max_sessions=5)
            await sessions.create("alice", ttl=600, token=caller["revoked"])
            assert await sessions.revoke(caller["revoked"]) is True
            link = (await links.issue("alice", "a@example.com", ttl=600)).token
            await links.issue("bob", "b@example.com", ttl=600, token=caller["link"])
            await links.issue("carol", "c@example.com", ttl=600, token=caller["used"])
            assert await links.consume(caller["used"]) is not None
            digest = hashlib.sha256(caller["hashed"].encode()).hexdigest()
            await links.issue_hashed("dave", "d@example.com", digest, ttl=600)
            return [*caller.values(), generated, link]

    return asyncio.run(run_async()) if asynchronous else sync()


# --- each backend's raw storage, as bytes ------------------------------------------------


def _memory(url: str, namespace: str) -> bytes:
    from authstore.adapters.memory import backend

    data, _ = backend._data(url.removeprefix("memory://"), None)  # the named data set
    return repr(vars(data)).encode()


def _sqlite(url: str, namespace: str) -> bytes:
    with sqlite3.connect(url.removeprefix("sqlite:///").split("?", 1)[0]) as connection:
        return "\n".join(connection.iterdump()).encode()


def _table_prefix(url: str) -> str:
    return url.split("table_prefix=", 1)[1].split("&", 1)[0]


def _postgres(url: str, namespace: str) -> bytes:
    import psycopg

    prefix = _table_prefix(url)
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as connection:
        names = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND starts_with(tablename, %s)",
            [prefix],
        ).fetchall()
        assert len(names) >= 6, names
        dump = [connection.execute(f'SELECT * FROM "{name}"').fetchall() for (name,) in names]
    return repr(dump).encode()


def _mariadb(url: str, namespace: str) -> bytes:
    from tests.mysql.conftest import admin_connection, table_names

    prefix = _table_prefix(url)
    connection = admin_connection(url.split("?", 1)[0])
    try:
        with connection.cursor() as cursor:
            names = table_names(cursor, prefix)
            assert len(names) >= 6, names
            dump = []
            for name in names:
                cursor.execute(f"SELECT * FROM `{name}`")
                dump.append(cursor.fetchall())
    finally:
        connection.close()
    return repr(dump).encode()


def _redis(url: str, namespace: str) -> bytes:
    """Every key of the namespace and its value as Redis gives it back, by type.

    Not ``DUMP``: its RDB encoding LZF-compresses values, so a plaintext session id
    inside a JSON value does not show (a planted one passed a DUMP reader).
    """
    import redis

    client = redis.Redis.from_url(url.split("?", 1)[0])
    out: list[bytes] = []
    try:
        for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                parts = [client.get(key) or b""]
            elif kind == "hash":
                parts = [b for item in client.hgetall(key).items() for b in item]
            elif kind == "zset":
                parts = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "set":
                parts = list(client.smembers(key))
            else:
                parts = list(client.lrange(key, 0, -1))
            out += [key, *parts]
    finally:
        client.close()
    assert out, "the stores wrote under their namespace"
    return b"\n".join(out)


def _mongodb(url: str, namespace: str) -> bytes:
    import bson
    import pymongo

    from tests.mongodb.conftest import database_of

    prefix = url.split("collection_prefix=", 1)[1].split("&", 1)[0]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url.split("?", 1)[0], serverSelectionTimeoutMS=5000
    )
    try:
        database = client[database_of(url)]
        names = [n for n in database.list_collection_names() if n.startswith(prefix)]
        assert names, "the stores made their collections"
        return b"\n".join(
            bson.encode(document) for name in names for document in database[name].find()
        )
    finally:
        client.close()


RAW: dict[str, Callable[[str, str], bytes]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
    "mariadb": _mariadb,
    "redis": _redis,
    "mongodb": _mongodb,
}


@pytest.fixture(params=BACKENDS_WITH_SECRETS)
def backend_at_rest(
    request: pytest.FixtureRequest, server_url: Callable[[str], str], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    name: str = request.param
    if name == "memory":
        memory_name = f"at-rest-{uuid.uuid4().hex}"
        yield name, f"memory://{memory_name}"
        from authstore.adapters.memory import backend

        backend.forget(memory_name)
        return
    if name == "mongodb":
        from tests.mongodb.conftest import drop_collections, new_prefix, with_option

        base, prefix = server_url("mongodb"), new_prefix()
        try:
            yield name, with_option(base, "collection_prefix", prefix)
        finally:
            drop_collections(base, prefix)
        return
    with backend_url(name, server_url, tmp_path) as url:
        yield name, url


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_no_token_rests_in_plaintext(backend_at_rest: tuple[str, str], asynchronous: bool) -> None:
    name, url = backend_at_rest
    namespace = f"rest{uuid.uuid4().hex[:10]}"
    tokens = _write_secrets(url, namespace, asynchronous)
    raw = RAW[name](url, namespace)
    assert namespace.encode() in raw, "the dump holds what the stores wrote"
    for token in tokens:
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        assert token.encode() not in raw, f"{name}: a token rests in plaintext"
        assert token[: len(token) // 2].encode() not in raw, f"{name}: half a token rests"
        assert digest in raw, f"{name}: its hash is what is kept"
