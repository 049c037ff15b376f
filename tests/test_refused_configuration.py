"""A configuration the backend refuses is one error class on every backend, sync and async.

Servers that require a password, all private or private to the test: a PostgreSQL
cluster with scram-sha-256 (tests/private_servers.py), a Redis with ``requirepass``
and an ACL user, a secantusdb started with ``--auth`` (SCRAM-SHA-256), and a user with
a password made on the shared MariaDB (a unique name, dropped afterwards). TLS
verification fails against the shared TLS Redis with a CA file that did not sign its
certificate, and against the private PostgreSQL (no TLS) with ``sslmode=require``.

For each: every security read raises the same ``BackendConfigurationError`` subclass
(never ``BackendUnavailableError``: a wrong password does not fix itself), the message
is ``<backend> at <redacted URL>: <one line>`` without the password or a raw server
reply, the authstore logger says it once per failed call and no driver logger adds a
line, and ``authstore migrate`` exits 3.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from authstore.cli import main
from authstore.contracts.errors import (
    AuthenticationFailedError,
    BackendConfigurationError,
    BackendUnavailableError,
    TLSVerificationError,
    UnknownDatabaseError,
)
from authstore.contracts.records import StoreKind
from authstore.contracts.testing import unavailable
from authstore.contracts.testing.harness import Mode, Stores, url_factory
from authstore.registry import StoreURL
from tests.outages import free_port
from tests.private_servers import PRIVATE_SERVERS, private_server

TIMEOUT = "timeout=2&connect_timeout=1"
PASSWORD = "Pw-" + secrets.token_hex(8)
"""The one right password of every private server; wrong ones are made per case."""


@dataclass(frozen=True)
class Refusal:
    backend: str
    url: str
    kind: type[BackendConfigurationError]
    secrets: tuple[str, ...]
    driver_error: bool = True
    """Whether the driver raised (it becomes the __cause__): aiomysql goes on without the
    TLS a URL asks for, and authstore refuses the connection itself."""

    @property
    def display(self) -> str:
        parsed = StoreURL.parse(self.url)
        return StoreURL(
            parsed.scheme, parsed.hosts, parsed.username, parsed.password, parsed.path
        ).redacted()


def _wrong() -> str:
    return "Wrong-" + secrets.token_hex(6)


# --- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_port() -> Iterator[int]:
    reason = PRIVATE_SERVERS["postgres"].available()
    if reason is not None:
        unavailable(f"private postgres server: {reason}")
    with private_server("postgres") as server:
        server.require_password(PASSWORD)
        yield server.port


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    if shutil.which("redis-server") is None:
        unavailable("private redis: no redis-server binary")
    from tests.servers.redis_topology import private_redis

    with private_redis() as node:
        node.execute("ACL", "SETUSER", "alice", "on", f">{PASSWORD}", "~*", "&*", "+@all")
        node.execute("CONFIG", "SET", "requirepass", PASSWORD)
        yield node.port


@pytest.fixture(scope="module")
def mariadb_user(server_url: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """A user with a password on the shared MariaDB, only for this module."""
    import pymysql

    parsed = StoreURL.parse(server_url("mariadb"))
    host, port = parsed.hosts[0]
    user = f"authstore_pw_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(
        host=host,
        port=port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        autocommit=True,
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
            cursor.execute(f"GRANT ALL ON authstore_test.* TO '{user}'@'%'")
        yield user, f"{host}:{port or 3306}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


@pytest.fixture(scope="module")
def mongodb_port() -> Iterator[int]:
    """A private secantusdb with ``--auth``: a user is created on a first start without
    it, then the server restarts on the same folder requiring SCRAM-SHA-256."""
    server = shutil.which("secantusd-py") or os.path.join(
        os.path.dirname(sys.executable), "secantusd-py"
    )
    if not os.path.exists(server):
        unavailable("private mongodb: no secantusd-py (pip install secantusdb)")
    import pymongo

    folder = tempfile.mkdtemp(prefix="authstore-mongodb-auth-")
    port = free_port()
    process: subprocess.Popen[bytes] | None = None

    def start(*extra: str) -> subprocess.Popen[bytes]:
        command = [server, "--host", "127.0.0.1", "--port", str(port)]
        started = subprocess.Popen(
            [*command, "--storage-path", folder, *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                port=port, serverSelectionTimeoutMS=300
            )
            try:
                client.admin.command("ping")
                return started
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
            finally:
                client.close()
        started.kill()
        raise RuntimeError("the private secantusdb did not answer within 30 s")

    try:
        process = start()
        admin: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(port=port)
        admin.admin.command("createUser", "alice", pwd=PASSWORD, roles=["root"])
        admin.close()
        process.terminate()
        process.wait(15)
        process = start("--auth")
        yield port
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(15)
        shutil.rmtree(folder, ignore_errors=True)


# --- cases ------------------------------------------------------------------------------

CASES = [
    "postgres-wrong-password",
    "postgres-no-password",
    "postgres-unknown-database",
    "postgres-tls-required",
    "mariadb-wrong-password",
    "mariadb-no-rights-on-database",
    "mariadb-unknown-database",
    "mariadb-tls-required",
    "redis-wrong-password",
    "redis-acl-user-wrong-password",
    "redis-no-password",
    "redis-tls-wrong-ca",
    "mongodb-wrong-password",
    "mongodb-no-credentials",
]


def _case(name: str, request: pytest.FixtureRequest) -> Refusal:
    wrong = _wrong()
    if name.startswith("postgres"):
        port = request.getfixturevalue("postgres_port")
        where = f"127.0.0.1:{port}"
        urls = {
            "postgres-wrong-password": (f"postgres:{wrong}@{where}/authstore_test", ""),
            "postgres-no-password": (f"postgres@{where}/authstore_test", ""),
            "postgres-unknown-database": (f"postgres:{PASSWORD}@{where}/no_such_db", ""),
            "postgres-tls-required": (
                f"postgres:{PASSWORD}@{where}/authstore_test",
                "&sslmode=require",
            ),
        }
        path, extra = urls[name]
        kinds = {"unknown-database": UnknownDatabaseError, "tls-required": TLSVerificationError}
        kind = kinds.get(name.split("-", 1)[1], AuthenticationFailedError)
        return Refusal(
            "postgresql", f"postgresql://{path}?{TIMEOUT}{extra}", kind, (wrong, PASSWORD)
        )
    if name == "mariadb-tls-required":
        # the shared MariaDB has no TLS: asking for it must fail, sync and async alike
        shared = StoreURL.parse(request.getfixturevalue("server_url")("mariadb"))
        path = f"{_userinfo(shared)}{_hosts(shared)}/authstore_test"
        wrong_ca = "/etc/ssl/certs/ca-certificates.crt"
        url = f"mysql://{path}?ssl_ca={wrong_ca}&{TIMEOUT}"
        return Refusal("mysql", url, TLSVerificationError, (), driver_error=False)
    if name == "mariadb-unknown-database":
        # as the shared server's administrator, who may see every database (a user
        # without rights on it is refused access instead: the next case)
        shared = StoreURL.parse(request.getfixturevalue("server_url")("mariadb"))
        missing = f"/no_such_db_{uuid.uuid4().hex[:6]}"
        url = f"{shared.scheme}://{_userinfo(shared)}{_hosts(shared)}{missing}?{TIMEOUT}"
        secret = (shared.password,) if shared.password else ()
        return Refusal("mysql", url, UnknownDatabaseError, secret)
    if name.startswith("mariadb"):
        user, where = request.getfixturevalue("mariadb_user")
        if name == "mariadb-wrong-password":
            url = f"mysql://{user}:{wrong}@{where}/authstore_test?{TIMEOUT}"
            return Refusal("mysql", url, AuthenticationFailedError, (wrong, PASSWORD))
        url = f"mysql://{user}:{PASSWORD}@{where}/no_such_db_{uuid.uuid4().hex[:6]}?{TIMEOUT}"
        return Refusal("mysql", url, AuthenticationFailedError, (PASSWORD,))
    if name.startswith("redis-tls"):
        shared = StoreURL.parse(request.getfixturevalue("server_url")("redis_tls"))
        host, port = shared.hosts[0]
        wrong_ca = "/etc/ssl/certs/ca-certificates.crt"  # public CAs: not the test CA
        if not os.path.exists(wrong_ca):
            wrong_ca = __file__  # not a certificate at all
        url = f"rediss://{host}:{port}/0?ssl_ca_certs={wrong_ca}&{TIMEOUT}"
        return Refusal("redis", url, TLSVerificationError, ())
    if name.startswith("redis"):
        port = request.getfixturevalue("redis_port")
        users = {
            "redis-wrong-password": f":{wrong}@",
            "redis-acl-user-wrong-password": f"alice:{wrong}@",
            "redis-no-password": "",
        }
        url = f"redis://{users[name]}127.0.0.1:{port}/0?{TIMEOUT}"
        return Refusal("redis", url, AuthenticationFailedError, (wrong, PASSWORD))
    port = request.getfixturevalue("mongodb_port")
    auth = f"alice:{wrong}@" if name == "mongodb-wrong-password" else ""
    url = f"mongodb://{auth}127.0.0.1:{port}/authstore_test?authSource=admin&{TIMEOUT}"
    return Refusal("mongodb", url, AuthenticationFailedError, (wrong, PASSWORD))


def _userinfo(url: StoreURL) -> str:
    if url.username is None:
        return ""
    return f"{url.username}:{url.password}@" if url.password else f"{url.username}@"


def _hosts(url: StoreURL) -> str:
    return ",".join(host if port is None else f"{host}:{port}" for host, port in url.hosts)


@pytest.fixture(params=CASES)
def refusal(request: pytest.FixtureRequest) -> Refusal:
    return _case(request.param, request)


# --- checks -----------------------------------------------------------------------------


def _check(error: BaseException, refusal: Refusal) -> None:
    assert type(error) is refusal.kind, f"{type(error).__name__}: {error}"
    assert not isinstance(error, BackendUnavailableError)
    message = str(error)
    assert re.fullmatch(
        rf"{re.escape(refusal.backend)} at {re.escape(refusal.display)}: .+", message
    )
    assert "\n" not in message
    assert "{" not in message, "a raw server reply leaked into the message"
    assert error.backend == refusal.backend
    assert error.reason in ("authentication", "unknown_database", "tls")
    if refusal.driver_error:
        assert error.__cause__ is not None, "the driver's error is the __cause__"
    chain: BaseException | None = error
    while chain is not None:
        for secret in refusal.secrets:
            assert secret not in str(chain), f"password in {type(chain).__name__}'s text"
        chain = chain.__cause__
    for secret in refusal.secrets:
        assert secret not in repr(error)


def _security_reads(stores: Stores) -> list[Callable[[], object]]:
    """Reads that must never answer during a refused configuration."""
    cache = stores.open(StoreKind.CACHE)
    sessions = stores.open(StoreKind.SESSIONS)
    links = stores.open(StoreKind.MAGIC_LINKS)
    token = "t" * 43
    return [
        lambda: cache.is_blacklisted("jti-1"),
        lambda: cache.user_tokens_revoked_at("user-1"),
        lambda: cache.check_rate_limit("login:alice", 5, 60),
        lambda: sessions.get(token),
        lambda: links.consume(token),
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_security_reads_raise_one_class(
    refusal: Refusal, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    stores = Stores(url_factory(refusal.url, "refused"), mode)
    try:
        reads = _security_reads(stores)
        caplog.set_level(logging.INFO)
        for read in reads:
            caplog.clear()
            with pytest.raises(BackendConfigurationError) as caught:
                read()
            _check(caught.value, refusal)
            package = {"postgresql": "postgres"}.get(refusal.backend, refusal.backend)
            ours = [r for r in caplog.records if r.name == f"authstore.{package}"]
            assert [r.getMessage() for r in ours] == [str(caught.value)]
            drivers = [
                f"{r.name}: {r.getMessage()}"
                for r in caplog.records
                if not r.name.startswith("authstore") and r.levelno >= logging.WARNING
            ]
            assert drivers == [], "a driver logged the failure a second time"
    finally:
        stores.close()


@pytest.mark.parametrize("command", ["migrate", "check"])
def test_cli_exits_3(refusal: Refusal, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """3, not 4 (unavailable): a script must not retry a refused password."""
    assert main([command, refusal.url]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"authstore: configuration error: {refusal.backend} at ")
    for secret in refusal.secrets:
        assert secret not in err
