"""The mysql:// backend: URLs, options, secrets, given clients, migrations, exact keys,
the database clock, and SQL that computes exactly what the reference arithmetic does."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiomysql
import pymysql
import pytest
from pymysql.constants import CLIENT

import authstore
from authstore.adapters.common.ops import Op
from authstore.adapters.mysql.settings import parse_settings
from authstore.adapters.mysql.sync import SyncMySQLRunner
from authstore.adapters.sql import Query, SqlCacheOps
from authstore.contracts.errors import BackendError, ConfigurationError
from authstore.registry import StoreURL
from tests.backends import new_prefix, with_options
from tests.fresh_imports import loaded_after_import
from tests.limiter_replay import expected_hit, hit

from .conftest import UNREACHABLE_URL, admin_connection, drop_tables

PASSWORD = "s3cr3t-P@ss-w0rd"


def test_importing_the_backend_imports_no_driver() -> None:
    assert loaded_after_import("authstore.adapters.mysql", ["aiomysql", "pymysql"]) == []


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("mysql://h/db?colour=blue", {}, "unknown option"),
        ("mysql://h/db", {"pool_size": 0}, "pool_size"),
        ("mysql://h/db", {"pool_size": "many"}, "pool_size"),
        ("mysql://h/db", {"timeout": 0}, "timeout"),
        ("mysql://h/db", {"connect_timeout": "soon"}, "connect_timeout"),
        ("mysql://h/db", {"charset": "latin1"}, "utf8mb4"),
        ("mysql://h/db", {"namespace": "a:b"}, "namespace"),
        ("mysql://h/db", {"table_prefix": "bad-prefix"}, "table_prefix"),
        ("mysql://h/db", {"ssl_verify": "maybe"}, "ssl_verify"),
        ("mysql://h/db", {"ssl_key": "/k.pem"}, "ssl_cert"),
        ("mysql://h/db", {"ssl_ca": "/no/such/ca.pem"}, "TLS"),
        ("mysql://h", {}, "needs a database"),
        ("mysql://h/", {}, "needs a database"),
        ("mysql:///db", {}, "exactly one server"),
        ("mysql://a,b/db", {}, "exactly one server"),
        (f"mysql://u:{PASSWORD}@h/db", {"client": object()}, "not both"),
        ("mysql://", {"client": object(), "pool_size": 3}, "pool_size"),
        ("mysql://", {"client": object(), "timeout": 3}, "timeout"),
        ("mariadb://", {"client": "not a client"}, "pymysql Connection"),
    ],
)
def test_bad_configuration_is_refused_before_any_io(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        authstore.open_cache(url, **options)
    assert PASSWORD not in str(raised.value)


def test_settings() -> None:
    settings = parse_settings(
        StoreURL.parse(
            f"mariadb://app:{PASSWORD}@db.example:3307/auth?pool_size=3&timeout=2.5"
            "&connect_timeout=1&namespace=tenant&table_prefix=x_&charset=UTF8MB4"
        )
    )
    assert (settings.host, settings.port, settings.user, settings.database) == (
        "db.example",
        3307,
        "app",
        "auth",
    )
    assert (settings.pool_size, settings.timeout, settings.connect_timeout) == (3, 2.5, 1.0)
    assert (settings.namespace, settings.tables.prefix, settings.ssl) == ("tenant", "x_", None)
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.display
    assert settings.display == "mariadb://app:***@db.example:3307/auth"
    default = parse_settings(StoreURL.parse("mysql://localhost/auth"))
    assert (default.port, default.pool_size, default.timeout) == (3306, 20, 5.0)
    tls = parse_settings(StoreURL.parse("mysql://h/db?ssl_verify=false"))
    assert isinstance(tls.ssl, ssl.SSLContext) and tls.ssl.verify_mode == ssl.CERT_NONE
    verified = parse_settings(StoreURL.parse("mysql://h/db?ssl_verify=true"))
    assert verified.ssl is not None and verified.ssl.check_hostname


def _read(store: Any, asynchronous: bool) -> Any:
    return asyncio.run(store.get("k")) if asynchronous else store.get("k")


def test_the_password_never_shows(mysql_server: str) -> None:
    """Not in an error (refused, or denied by the real server), a repr, or a str."""
    unreachable = f"mysql://app:{PASSWORD}@127.0.0.1:1/authstore_test?connect_timeout=1"
    parts = StoreURL.parse(mysql_server)
    host, port = parts.hosts[0]
    denied = f"mysql://nobody:{PASSWORD}@{host}:{port or 3306}/authstore_test"
    for url in (unreachable, denied):
        for asynchronous in (False, True):
            store = (authstore.open_async_cache if asynchronous else authstore.open_cache)(url)
            assert PASSWORD not in repr(store) and PASSWORD not in str(store)
            with pytest.raises(BackendError) as raised:
                _read(store, asynchronous)
            error: BaseException | None = raised.value
            while error is not None:  # the whole chain, driver errors included
                assert PASSWORD not in str(error) and PASSWORD not in repr(error)
                error = error.__cause__
            if not asynchronous:
                store.close()


def test_migrate_is_idempotent_and_makes_innodb_binary_keyed_tables(
    mysql_server: str, fresh_prefix: str, admin: pymysql.Connection[Any]
) -> None:
    url = with_options(mysql_server, table_prefix=fresh_prefix)
    assert authstore.migrate(url) == ["mysql: schema at version 3 (applied 3)"]
    assert authstore.migrate(url) == ["mysql: schema at version 3 (applied 0)"]
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, engine FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND LEFT(table_name, %s) = %s",
            (len(fresh_prefix), fresh_prefix),
        )
        engines = dict(cursor.fetchall())
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s",
            (f"{fresh_prefix}sessions",),
        )
        types = dict(cursor.fetchall())
        cursor.execute(f"SELECT version FROM {fresh_prefix}schema_version")
        versions = cursor.fetchall()
    assert set(engines.values()) == {"InnoDB"} and len(engines) == 7, engines
    assert versions == ((1,), (2,), (3,))
    for column in ("namespace", "token_hash", "id", "user_id", "device_id", "ip_address"):
        assert types[column] == "varbinary", (column, types[column])


def _explain(admin: pymysql.Connection[Any], sql: str, args: tuple[object, ...]) -> list[Any]:
    with admin.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute(f"EXPLAIN {sql}", args)
        return list(cursor.fetchall())


def test_every_lookup_uses_an_index(mysql_url: str, admin: pymysql.Connection[Any]) -> None:
    """EXPLAIN each statement's table access: a key, never a full scan."""
    authstore.migrate(mysql_url)
    prefix = parse_settings(StoreURL.parse(mysql_url)).tables.prefix
    now = "UNIX_TIMESTAMP()"
    lookups = {
        "cache get": (f"SELECT value FROM {prefix}cache WHERE cache_key = %s", ("k",)),
        "rate limit": (f"SELECT hits FROM {prefix}rate_limits WHERE cache_key = %s", ("k",)),
        "cache purge": (f"DELETE FROM {prefix}cache WHERE expires_at <= {now} LIMIT 10", ()),
        "session by token": (
            f"SELECT id FROM {prefix}sessions WHERE namespace = %s AND token_hash = %s",
            ("n", "h"),
        ),
        "session by id": (
            f"DELETE FROM {prefix}sessions WHERE namespace = %s AND id = %s",
            ("n", "i"),
        ),
        "sessions of a user": (
            f"SELECT id FROM {prefix}sessions WHERE namespace = %s AND user_id = %s "
            "ORDER BY created_at DESC",
            ("n", "u"),
        ),
        "session purge": (
            f"DELETE FROM {prefix}sessions WHERE expires_at <= {now} LIMIT 10",
            (),
        ),
        "totp": (
            f"SELECT enabled FROM {prefix}totp WHERE namespace = %s AND user_id = %s",
            ("n", "u"),
        ),
        "backup code": (
            f"DELETE FROM {prefix}totp_backup_codes WHERE namespace = %s AND user_id = %s "
            "AND code_hash = %s",
            ("n", "u", "c"),
        ),
        "link by token": (
            f"SELECT id FROM {prefix}magic_links WHERE namespace = %s AND token_hash = %s",
            ("n", "h"),
        ),
        "links of a user": (
            f"DELETE FROM {prefix}magic_links WHERE namespace = %s AND user_id = %s",
            ("n", "u"),
        ),
        "link purge": (
            f"DELETE FROM {prefix}magic_links WHERE expires_at <= {now} LIMIT 10",
            (),
        ),
    }
    for name, (sql, args) in lookups.items():
        plan = _explain(admin, sql, args)
        assert plan, name
        # an empty table may be "Impossible WHERE" (no table access at all): fine too
        for step in plan:
            assert step["type"] != "ALL" or step["table"] is None, (name, plan)
            if step["table"]:
                assert step["possible_keys"], (name, plan)


def _migrate_then_use(url: str, worker: int, start: float) -> tuple[str, bool]:
    time.sleep(max(0.0, start - time.time()))
    report = authstore.migrate(url)[0]
    with authstore.open_cache(url, timeout=30) as cache:
        cache.set(f"worker-{worker}", worker)
        return report, cache.get(f"worker-{worker}") == worker


def test_processes_migrating_a_fresh_prefix_at_once(mysql_server: str, fresh_prefix: str) -> None:
    """DDL commits by itself: GET_LOCK, not a transaction, lets exactly one apply."""
    url = with_options(mysql_server, table_prefix=fresh_prefix, timeout=30)
    processes = 4
    start = time.time() + 2.0  # time for spawned interpreters to import authstore
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            _migrate_then_use, [(url, n, start) for n in range(processes)], chunksize=1
        )
    assert all(ok for _, ok in results), results
    assert sorted(report for report, _ in results) == ["mysql: schema at version 3 (applied 0)"] * (
        processes - 1
    ) + ["mysql: schema at version 3 (applied 3)"]


def test_keys_ids_and_tokens_are_exact(mysql_url: str) -> None:
    """Case, trailing spaces and accents all count: the server's default collations
    would make 'Token' = 'token' and 'a' = 'a ', letting one user's entry answer for
    another's."""
    alike = ["a", "A", "a ", " a", "á", "a\t", "😀", "😁"]
    with authstore.open_cache(mysql_url, namespace="exact") as cache:
        for index, key in enumerate(alike):
            cache.set(key, index)
        assert [cache.get(key) for key in alike] == list(range(len(alike)))
        assert cache.get_many(alike) == {key: index for index, key in enumerate(alike)}
        cache.add_to_blacklist("Token", 60)
        assert cache.is_blacklisted("Token")
        assert not cache.is_blacklisted("token") and not cache.is_blacklisted("Token ")
        for key in alike:
            assert cache.check_rate_limit(f"rl{key}", 1, 60).allowed, key
        assert cache.delete("a ") and cache.get("a") == 0
    with authstore.open_sessions(mysql_url, namespace="exact") as sessions:
        for user in alike:
            sessions.create(user, ttl=60)
        assert [sessions.count(user) for user in alike] == [1] * len(alike)
        assert {s.user_id for s in sessions.list("a ")} == {"a "}
        assert sessions.revoke_all("a") == 1 and sessions.count("A") == 1
    with authstore.open_totp(mysql_url, namespace="exact") as totp:
        totp.save_pending("bob", b"one")
        totp.save_pending("Bob", b"two")
        totp.replace_backup_codes("bob", ["Code", "code "])
        assert totp.use_backup_code("bob", "code") is False
        assert totp.use_backup_code("Bob", "Code") is False
        assert totp.use_backup_code("bob", "code ") is True
        state = totp.load("Bob")
        assert state is not None and state.pending_secret == b"two"
    with authstore.open_magic_links(mysql_url, namespace="exact") as links:
        link = links.issue("bob", "bob@example.com", ttl=60, application_id="App")
        assert links.consume(link.token, application_id="app") is None
        assert links.revoke_user("Bob") == 0 and links.revoke_user("bob ") == 0
        assert links.consume(link.token, application_id="App") is not None


@pytest.fixture
def given(mysql_server: str, table_prefix: str) -> Iterator[pymysql.Connection[Any]]:
    """A caller's own connection, as an application would open it."""
    connection = admin_connection(mysql_server, client_flag=CLIENT.MULTI_STATEMENTS)
    yield connection
    connection.close()


def test_an_existing_connection_is_used_and_left_open(
    given: pymysql.Connection[Any], table_prefix: str
) -> None:
    with authstore.open_cache("mysql://", client=given, table_prefix=table_prefix) as cache:
        cache.set("k", "v")
        assert cache.get("k") == "v"
    with given.cursor() as cursor:  # still open, and in UTC
        cursor.execute("SELECT @@session.time_zone")
        assert cursor.fetchone() == ("+00:00",)
    with authstore.open_cache("mysql://", client=given, table_prefix=table_prefix) as again:
        assert again.get("k") == "v"


def test_a_given_connection_must_suit(mysql_server: str, table_prefix: str) -> None:
    manual = admin_connection(mysql_server)
    manual.autocommit(False)
    with (
        authstore.open_cache("mysql://", client=manual, table_prefix=table_prefix) as cache,
        pytest.raises(ConfigurationError, match="autocommit"),
    ):
        cache.get("k")
    manual.close()
    found = admin_connection(mysql_server, client_flag=CLIENT.FOUND_ROWS)
    with (
        authstore.open_cache("mysql://", client=found, table_prefix=table_prefix) as cache,
        pytest.raises(ConfigurationError, match="FOUND_ROWS"),
    ):
        cache.get("k")
    found.close()


def test_a_given_connection_without_multi_statements_gets_the_same_answers(
    mysql_server: str, table_prefix: str
) -> None:
    """Each statement of a write-then-read then goes on its own: more round trips,
    the same transaction, the same results."""
    plain = admin_connection(mysql_server)  # no CLIENT.MULTI_STATEMENTS
    with (
        authstore.open_cache("mysql://", client=plain, table_prefix=table_prefix) as cache,
        authstore.open_magic_links("mysql://", client=plain, table_prefix=table_prefix) as links,
    ):
        results = [cache.check_rate_limit("plain", 3, 60).allowed for _ in range(5)]
        assert results == [True, True, True, False, False]
        assert cache.incr("plain-n", 0) == 0 and cache.incr("plain-n", 5) == 5
        assert cache.expire("plain-n", None) is True
        token = links.issue("u", "u@example.com", ttl=60).token
        assert links.consume(token) is not None and links.consume(token) is None
    plain.close()


def test_an_existing_async_pool_is_used_and_left_open(mysql_server: str, table_prefix: str) -> None:
    async def scenario() -> Any:
        parts = StoreURL.parse(mysql_server)
        host, port = parts.hosts[0]
        pool = await aiomysql.create_pool(
            host=host,
            port=port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            db=parts.path.lstrip("/"),
            autocommit=True,
            maxsize=2,
        )
        try:
            with pytest.raises(ConfigurationError, match="aiomysql Pool"):
                authstore.open_async_cache("mysql://", client=object())
            async with authstore.open_async_cache(
                "mysql://", client=pool, table_prefix=table_prefix
            ) as cache:
                await cache.set("k", [1, 2])
                value = await cache.get("k")
            async with pool.acquire() as connection, connection.cursor() as cursor:
                await cursor.execute("SELECT 1")  # still open
                assert await cursor.fetchone() == (1,)
            return value
        finally:
            pool.close()
            await pool.wait_closed()

    assert asyncio.run(scenario()) == [1, 2]


def test_store_time_is_the_database_clock_with_microseconds(
    given: pymysql.Connection[Any], table_prefix: str
) -> None:
    """Set the session's clock on a given connection: the store follows the server,
    not this process, to the microsecond; and whatever zone the session had, the
    store reads it in UTC."""
    with given.cursor() as cursor:
        cursor.execute("SET time_zone = '-05:00', timestamp = 2000000000.123456")
    with (
        authstore.open_cache("mysql://", client=given, table_prefix=table_prefix) as cache,
        authstore.open_sessions("mysql://", client=given, table_prefix=table_prefix) as sessions,
    ):
        at = cache.revoke_user_tokens("clock")
        assert at.timestamp() == 2000000000.123456
        assert at.microsecond == 123456
        record = sessions.create("clock", ttl=60).record
        assert record.created_at.timestamp() == 2000000000.123456
        assert record.expires_at.timestamp() == 2000000060.123456
    with given.cursor() as cursor:
        cursor.execute("SET timestamp = DEFAULT")


def _at(moment: float, op: Op[Any]) -> Op[Any]:
    """``op`` with the database clock stopped at ``moment`` (the same connection)."""
    yield Query("SET timestamp = :moment", {"moment": moment})
    return (yield from op)


@pytest.fixture
def clocked(mysql_url: str) -> Iterator[tuple[SyncMySQLRunner, SqlCacheOps]]:
    settings = parse_settings(StoreURL.parse(mysql_url).with_options({"pool_size": 1}))
    runner = SyncMySQLRunner(settings)
    yield runner, SqlCacheOps(runner.dialect, settings.tables)
    runner.close()  # its connection, clock and all, goes away


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_sql_computes_exactly_what_step_computes(
    clocked: tuple[SyncMySQLRunner, SqlCacheOps], algorithm: str, seed: int
) -> None:
    """MySQL assigns ON DUPLICATE KEY UPDATE left to right: the ordered formulation
    must still equal ratelimit.step_* bit for bit, boundaries and lowered limits too.

    Now and then a hit's clock is older than the row's last hit (a statement reads the
    clock when it starts, then may wait for the row's lock): the row's clock must not
    run backwards, so it is step_* at the later of the two."""
    runner, ops = clocked
    rng = random.Random(seed)
    window = rng.choice([0.1, 1.0, 7.3, 60.0])
    state: Any = None
    moment = last = 1_700_000_000.0
    key = f"ns:{algorithm[0]}:{seed}-{rng.random()}"
    limit = rng.choice([1, 3, 10, 1000])
    for _ in range(200):
        if rng.random() < 0.1:  # a changed limit, GCRA's "lowered limit" arm included
            limit = rng.choice([1, 3, 10, 1000])
        moment = round(
            moment + rng.choice([0.0, rng.uniform(0, window / limit), rng.uniform(0, window)]),
            6,
        )
        clock = moment
        if state is not None and rng.random() < 0.15:
            clock = round(moment - rng.uniform(0, window), 6)  # it waited for the lock
        now = last = clock if state is None else max(clock, last)
        cost = rng.randint(1, min(limit, 3))
        state, expected = expected_hit(algorithm, state, now, limit, window, cost)
        got = runner.run(_at(clock, hit(ops, algorithm, key, limit, window, cost)))
        assert got == expected


def test_a_hit_that_waited_for_the_lock_keeps_the_sliding_window(
    clocked: tuple[SyncMySQLRunner, SqlCacheOps],
) -> None:
    """Found here: a hit whose clock predates the row's last hit (by the lock wait) took
    the window back to the previous one and forgot both windows' hits."""
    runner, ops = clocked
    base, key = 1_700_000_000.0, f"ns:s:{random.random()}"
    for offset in (0.5, 0.6, 0.7):  # three hits in [1000, 1010)
        runner.run(_at(base + 1000 + offset, ops.sliding_window(key, 5, 10.0, 1)))
    assert runner.run(_at(base + 1010.001, ops.sliding_window(key, 5, 10.0, 1)))[:3] == (
        True,
        3,
        1,
    )
    stale = runner.run(_at(base + 1009.999, ops.sliding_window(key, 5, 10.0, 1)))
    assert stale[:3] == (True, 3, 2) and stale[4] == base + 1010.001
    assert runner.run(_at(base + 1010.002, ops.sliding_window(key, 5, 10.0, 1)))[0] is False


def test_writes_that_change_nothing_still_answer(
    given: pymysql.Connection[Any], table_prefix: str
) -> None:
    """Affected rows count changed rows: with the clock stopped, a second touch, a
    refused hit, an expire to the same expiry, an incr by 0 change nothing, and must
    still be told apart from a write that found no row."""
    with given.cursor() as cursor:
        cursor.execute("SET timestamp = 2000000000.5")
    with (
        authstore.open_cache("mysql://", client=given, table_prefix=table_prefix) as cache,
        authstore.open_sessions("mysql://", client=given, table_prefix=table_prefix) as sessions,
    ):
        token = sessions.create("still", ttl=60).token
        assert sessions.touch(token) is not None and sessions.touch(token) is not None
        assert sessions.touch(token, ttl=30) is not None
        assert sessions.touch(token, ttl=30) is not None
        cache.set("persistent", 1)
        assert cache.expire("persistent", None) is True
        assert cache.expire("persistent", 10) is True and cache.expire("persistent", 10) is True
        assert cache.expire("absent", None) is False
        assert cache.incr("n", 0) == 0 and cache.incr("n", 0) == 0
        for algorithm in ("fixed_window", "sliding_window", "gcra"):
            hits = [
                cache.check_rate_limit(f"still-{algorithm}", 2, 60, algorithm=algorithm)
                for _ in range(4)
            ]
            assert [h.allowed for h in hits] == [True, True, False, False], algorithm
        first = cache.revoke_user_tokens("still")
        assert cache.revoke_user_tokens("still") == first  # raise_to to the same instant
    with given.cursor() as cursor:
        cursor.execute("SET timestamp = DEFAULT")


def test_unreachable_server_fails_fast(mysql_server: str) -> None:
    started = time.monotonic()
    with authstore.open_cache(UNREACHABLE_URL) as cache, pytest.raises(BackendError):
        cache.is_blacklisted("jti")
    assert time.monotonic() - started < 1.0


def test_tables_of_other_prefixes_are_left_alone(mysql_server: str) -> None:
    one, two = new_prefix(), new_prefix()
    try:
        with (
            authstore.open_cache(with_options(mysql_server, table_prefix=one)) as first,
            authstore.open_cache(with_options(mysql_server, table_prefix=two)) as second,
        ):
            first.set("k", "one")
            assert second.get("k") is None
    finally:
        drop_tables(mysql_server, one)
        drop_tables(mysql_server, two)


def test_a_database_name_has_no_slash() -> None:
    with pytest.raises(ConfigurationError, match="needs a database"):
        authstore.open_cache("mysql://h/a/b")


def test_an_async_store_stays_on_its_event_loop(mysql_url: str) -> None:
    store = authstore.open_async_cache(mysql_url, namespace="loops")
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(store.get("k")) is None
        with pytest.raises(BackendError, match="event loop"):
            asyncio.run(store.get("k"))  # another loop: a clear error, not a hang
    finally:
        first.run_until_complete(store.aclose())
        first.close()


def test_closing_an_async_store_lets_running_operations_finish(mysql_url: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        store = authstore.open_async_cache(mysql_url, namespace="closing")
        await store.set("k", "v")
        runner = store._runner  # a closed store runs on a closed runner: keep the real one
        running = asyncio.ensure_future(runner.run(_slow_read()))
        await asyncio.sleep(0.05)
        await store.aclose()  # waits for the running operation's connection
        with pytest.raises(BackendError, match="closed"):
            await store.get("k")
        return await running, runner._pool

    row, pool = asyncio.run(scenario())
    assert row == (1,) and pool is None


def _slow_read() -> Op[Any]:
    row = yield Query("SELECT SLEEP(0.2) + 1", fetch="one")
    return row


def test_a_password_beyond_latin1_signs_in_sync_and_async(
    admin: pymysql.Connection[Any], mysql_server: str, fresh_prefix: str
) -> None:
    """Both drivers encode a str password as latin-1: one outside it raised
    UnicodeEncodeError (its repr holding the password). The server, like the mysql
    client, takes the UTF-8 bytes: such a user signs in, sync and async."""
    from urllib.parse import quote, urlsplit

    password = "Pässwörd-ключ-🔑"
    user = f"u{uuid.uuid4().hex[:12]}"
    parts = urlsplit(mysql_server)
    database = parts.path.lstrip("/")
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        cursor.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
    try:
        url = f"{parts.scheme}://{user}:{quote(password)}@{parts.hostname}:{parts.port or 3306}"
        url = with_options(f"{url}/{database}", table_prefix=fresh_prefix)
        with authstore.open_cache(url) as store:
            store.set("k", 1)
            assert store.get("k") == 1

        async def main() -> Any:
            async with authstore.open_async_cache(url) as store:
                return await store.get("k")

        assert asyncio.run(main()) == 1
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER '{user}'@'%'")
