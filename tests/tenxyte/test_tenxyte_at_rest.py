"""No plaintext bearer secret of tenxyte's is stored: after every flow, the raw storage
(the SQLite file, every row of the PostgreSQL and MariaDB tables, every Redis key and
value of the namespace, every object of the memory backend) contains none of the
access and refresh tokens, magic-link token, session ids, backup codes or TOTP secret
that tenxyte handed out."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from tenxyte.core.schemas import UserResponse

from tests.tenxyte.conftest import Tx

pytestmark = pytest.mark.asyncio


def _walk(obj: Any, seen: set[int], out: list[str]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, (bytes, bytearray)):
        out.append(bytes(obj).decode("latin-1"))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _walk(key, seen, out)
            _walk(value, seen, out)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _walk(item, seen, out)
    elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        names = list(getattr(obj, "__dict__", {}))
        for klass in type(obj).__mro__:
            names += [n for n in getattr(klass, "__slots__", ()) if isinstance(n, str)]
        for name in names:
            if hasattr(obj, name) and not callable(getattr(obj, name)):
                _walk(getattr(obj, name), seen, out)


def _memory_dump(tx: Tx) -> str:
    out: list[str] = []
    seen: set[int] = set()
    for store in tx.stores.values():
        runner = store._runner
        data = getattr(runner, "data", None) or runner._sync.data
        _walk(data, seen, out)
    return "\n".join(out)


def _sqlite_dump(tx: Tx) -> str:
    path = Path(urlsplit(tx.url).path)
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
    return "\n".join(f.read_bytes().decode("latin-1") for f in files if f.exists())


def _prefix(tx: Tx) -> str:
    return parse_qs(urlsplit(tx.url).query)["table_prefix"][0]


def _postgres_dump(tx: Tx) -> str:
    import psycopg

    with psycopg.connect(tx.url.split("?")[0], autocommit=True) as connection:
        names = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND starts_with(tablename, %s)",
            [_prefix(tx).lower()],
        ).fetchall()
        assert names, "no table found"
        rows = [
            row[0]
            for (name,) in names
            for row in connection.execute(f'SELECT t::text FROM "{name}" t').fetchall()
        ]
    return "\n".join(rows)


def _mariadb_dump(tx: Tx) -> str:
    from tests.mysql.conftest import admin_connection

    connection = admin_connection(tx.url.split("?")[0])
    out: list[str] = []
    try:
        with connection.cursor() as cursor:
            prefix = _prefix(tx)
            cursor.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND LEFT(table_name, %s) = %s",
                (len(prefix), prefix),
            )
            names = [name for (name,) in cursor.fetchall()]
            assert names, "no table found"
            for name in names:
                cursor.execute(f"SELECT * FROM `{name}`")
                for row in cursor.fetchall():
                    _walk(list(row), set(), out)
                    out.append(repr(row))
    finally:
        connection.close()
    return "\n".join(out)


def _redis_dump(tx: Tx) -> str:
    import redis

    out: list[str] = []
    client = redis.Redis.from_url(tx.url.split("?")[0])
    try:
        for key in client.scan_iter(match=f"*{tx.namespace}*", count=1000):
            out.append(key.decode("latin-1"))
            kind = client.type(key).decode()
            if kind == "string":
                value: Any = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            else:  # pragma: no cover
                value = client.dump(key)
            _walk(value, set(), out)
    finally:
        client.close()
    assert out, "no key found"
    return "\n".join(out)


DUMPS = {
    "memory": _memory_dump,
    "sqlite": _sqlite_dump,
    "postgresql": _postgres_dump,
    "mysql": _mariadb_dump,
    "redis": _redis_dump,
}


async def test_no_plaintext_secret_of_tenxyte_is_stored(tx: Tx) -> None:
    secrets: dict[str, str] = {}
    # JWT: access and refresh tokens, a rotation, a blacklisting, a revoke-all
    pair = await tx.do(tx.jwt, "generate_new_token_pair", "zed", "app1")
    rotated = await tx.do(tx.jwt, "refresh_tokens", pair.refresh_token)
    await tx.do(tx.jwt, "blacklist_token", rotated.access_token)
    await tx.do(tx.jwt, "revoke_all_user_tokens", "nobody")
    secrets |= {
        "access token": pair.access_token,
        "refresh token": pair.refresh_token,
        "rotated refresh token": rotated.refresh_token,
    }
    # magic links: one used, one pending
    await tx.do(tx.links, "request_magic_link", "zed@example.com")
    used = tx.mail.last_token()
    assert (await tx.do(tx.links, "verify_magic_link", used)).success
    await tx.do(tx.links, "request_magic_link", "zed@example.com")
    secrets |= {"used magic link": used, "pending magic link": tx.mail.last_token()}
    # sessions: one live, one revoked
    user = UserResponse(id="zed", email="zed@example.com")
    live = await tx.do(tx.sessions, "create_session", user)
    gone = await tx.do(tx.sessions, "create_session", user)
    await tx.do(tx.sessions, "revoke_session", gone["session_id"])
    secrets |= {"live session id": live["session_id"], "revoked session id": gone["session_id"]}
    # TOTP: secret, backup codes (one used), replay state
    setup = await tx.do(tx.totp, "setup_2fa", "zed", "zed@example.com", tx.totp_storage)
    code = pyotp.TOTP(setup.secret).at(time.time())
    assert (await tx.do(tx.totp, "confirm_2fa_setup", "zed", code, tx.totp_storage))[0]
    assert (await tx.do(tx.totp, "verify_2fa", "zed", setup.backup_codes[0], tx.totp_storage))[0]
    assert await tx.do(tx.replay, "mark_code_used", "zed", code, 120)
    secrets |= {"TOTP secret": setup.secret}
    secrets |= {f"backup code {i}": c for i, c in enumerate(setup.backup_codes)}

    scheme = urlsplit(tx.url).scheme
    dump = DUMPS[{"postgres": "postgresql", "mariadb": "mysql"}.get(scheme, scheme)](tx)
    # the dump does see the stored records: the link's SHA-256 (what is kept) is there
    assert hashlib.sha256(used.encode()).hexdigest() in dump
    found = [name for name, secret in secrets.items() if secret in dump]
    assert not found, f"stored in plaintext: {found}"
