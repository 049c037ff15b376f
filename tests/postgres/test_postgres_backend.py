"""The postgresql:// backend: URLs and options, migrations and indexes, existing clients,
the database clock, and passwords kept out of every error and repr."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import pytest

import authstore
from authstore.adapters.postgres.aio import connect_kwargs as async_connect_kwargs
from authstore.adapters.postgres.settings import parse_settings
from authstore.adapters.postgres.sync import connect_kwargs as sync_connect_kwargs
from authstore.contracts.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    TLSVerificationError,
    UnknownDatabaseError,
)
from authstore.registry import StoreURL
from tests.fresh_imports import loaded_after_import
from tests.limiter_replay import ALGORITHMS, expected_hit, hit
from tests.outages import free_port

SECRET = "Sup3r-Secret-Pw"

Admin = psycopg.Connection[tuple[Any, ...]]


def test_importing_the_backend_imports_no_driver() -> None:
    assert (
        loaded_after_import("authstore.adapters.postgres", ["asyncpg", "psycopg", "psycopg_pool"])
        == []
    )


@pytest.mark.parametrize(
    ("blocked", "opener"), [("psycopg", "open_cache"), ("asyncpg", "open_async_cache")]
)
def test_a_missing_driver_names_the_extra(blocked: str, opener: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import authstore\n"
        "try:\n"
        f"    authstore.{opener}('postgresql://localhost/db')\n"
        "except authstore.MissingDriverError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert 'pip install "authstore[postgres]"' in result.stdout, result.stdout + result.stderr


# --- URL and options ------------------------------------------------------------------


def test_url_and_options_are_parsed() -> None:
    url = StoreURL.parse(
        f"postgresql://app:{SECRET}@db1:5433,db2/auth%20db?pool_size=20&pool_min=2"
        "&timeout=1.5&connect_timeout=3&sslmode=verify-full&sslrootcert=/ca.pem"
        "&application_name=web&namespace=tenant&table_prefix=x_"
    )
    settings = parse_settings(url)
    assert settings.hosts == (("db1", 5433), ("db2", None))
    assert (settings.user, settings.password, settings.database) == ("app", SECRET, "auth db")
    assert (settings.pool_size, settings.pool_min) == (20, 2)
    assert (settings.timeout, settings.connect_timeout) == (1.5, 3.0)
    assert settings.ssl == (("sslmode", "verify-full"), ("sslrootcert", "/ca.pem"))
    assert (settings.application_name, settings.namespace) == ("web", "tenant")
    assert settings.tables.prefix == "x_"
    assert SECRET not in repr(settings) and SECRET not in settings.display


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pool_size=0", "pool_size"),
        ("pool_size=2&pool_min=3", "pool_min"),
        ("timeout=-1", "timeout"),
        ("connect_timeout=abc", "connect_timeout"),
        ("sslmode=sometimes", "sslmode"),
        ("colour=blue", "unknown option"),
        ("table_prefix=bad-prefix", "table_prefix"),
        ("namespace=", "namespace"),
        ("target_session_attrs=standby", "target_session_attrs"),
        ("target_session_attrs=prefer-standby", "target_session_attrs"),
        ("target_session_attrs=read-only", "target_session_attrs"),
    ],
)
def test_bad_options_are_configuration_errors(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        authstore.open_cache(f"postgresql://u:{SECRET}@localhost/db?{query}")


def test_keywords_override_and_both_schemes_work(pg_url: str) -> None:
    short = pg_url.replace("postgresql://", "postgres://", 1)
    with (
        authstore.open_cache(short, namespace="kw") as cache,
        authstore.open_cache(pg_url, namespace="kw") as same,
    ):
        cache.set("k", 1)
        assert same.get("k") == 1
        assert cache.namespace == "kw"


def test_several_hosts_connect_to_the_primary_by_default() -> None:
    """Both drivers get every host and, with several, ``read-write``: libpq's and
    asyncpg's default (``any``) would keep a store on a standby listed first."""
    several = parse_settings(StoreURL.parse("postgresql://u@db1:5433,db2/db"))
    assert several.target_session_attrs == "read-write"
    assert parse_settings(StoreURL.parse("postgresql://u@db1/db")).target_session_attrs is None
    chosen = StoreURL.parse("postgresql://u@db1,db2/db?target_session_attrs=any")
    assert parse_settings(chosen).target_session_attrs == "any"
    psycopg_kwargs = sync_connect_kwargs(several)
    assert (psycopg_kwargs["host"], psycopg_kwargs["port"]) == ("db1,db2", "5433,")
    assert psycopg_kwargs["target_session_attrs"] == "read-write"
    asyncpg_kwargs = async_connect_kwargs(several)
    assert (asyncpg_kwargs["host"], asyncpg_kwargs["port"]) == (["db1", "db2"], [5433, 5432])
    assert asyncpg_kwargs["target_session_attrs"] == "read-write"
    with pytest.raises(ConfigurationError, match="target_session_attrs apply to connections"):
        authstore.open_cache("postgresql://", client=object(), target_session_attrs="any")


def test_a_store_skips_a_host_that_refuses(postgres_server: str) -> None:
    """The first host listed is down: sync and async stores connect to the next one."""
    url = StoreURL.parse(postgres_server)
    hosts = (("127.0.0.1", free_port()), *url.hosts)
    several = StoreURL(url.scheme, hosts, url.username, url.password, url.path, url.options)
    with authstore.open_cache(several, namespace="hosts") as cache:
        cache.set("k", 1)
        assert cache.get("k") == 1

    async def scenario() -> Any:
        async with authstore.open_async_cache(several, namespace="hosts") as store:
            return await store.get("k")

    assert asyncio.run(scenario()) == 1


def test_password_given_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="password"):
        authstore.open_cache(f"postgresql://u:{SECRET}@localhost/db", password="other")


# --- passwords never shown ------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:1/authstore_test?timeout=2",
        f"postgresql://postgres@127.0.0.1:1/authstore_test?timeout=2&password={SECRET}",
        f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_database_here?timeout=2",
    ],
    ids=["refused", "password-option", "no-such-database"],
)
def test_password_never_in_errors_reprs_or_logs(
    url: str, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    opener = authstore.open_async_cache if asynchronous else authstore.open_cache
    store: Any = opener(url)
    assert SECRET not in repr(store)

    async def attempt() -> BaseException:
        try:
            await store.get("k")
        except BackendError as error:
            await store.aclose()
            return error
        raise AssertionError("an unreachable store answered")

    if asynchronous:
        error = asyncio.run(attempt())
    else:
        with pytest.raises(BackendError) as caught:
            store.get("k")
        store.close()
        error = caught.value
    # a database that does not exist is a configuration to fix, not an outage to wait out
    expected = UnknownDatabaseError if "no_such_database" in url else BackendUnavailableError
    assert isinstance(error, expected), error
    shown = [str(error), repr(error), caplog.text]
    cause: BaseException | None = error
    while cause is not None:
        shown.append(str(cause))
        cause = cause.__cause__
    assert not [text for text in shown if SECRET in text]


# --- schema ---------------------------------------------------------------------------


def test_migrate_is_idempotent_and_indexes_every_lookup(
    postgres_server: str, fresh_prefix: str, admin: Admin
) -> None:
    prefix = fresh_prefix
    url = f"{postgres_server}?table_prefix={prefix}"
    assert authstore.migrate(url) == ["postgresql: schema at version 3 (applied 3)"]
    assert authstore.migrate(url) == ["postgresql: schema at version 3 (applied 0)"]
    indexes = {
        (table, definition.split(" USING ")[1])
        for table, definition in admin.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE starts_with(tablename, %s)",
            [prefix],
        )
    }
    expected = {
        ("cache", "btree (cache_key)"),
        ("cache", "btree (expires_at)"),
        ("rate_limits", "btree (cache_key)"),
        ("rate_limits", "btree (expires_at)"),
        ("sessions", "btree (seq)"),
        ("sessions", "btree (token_hash, namespace)"),
        ("sessions", "btree (id, namespace)"),
        ("sessions", "btree (user_id, namespace, created_at)"),
        ("sessions", "btree (expires_at)"),
        ("totp", "btree (namespace, user_id)"),
        ("totp_backup_codes", "btree (namespace, user_id, code_hash)"),
        ("magic_links", "btree (seq)"),
        ("magic_links", "btree (token_hash, namespace)"),
        ("magic_links", "btree (id, namespace)"),
        ("magic_links", "btree (user_id, namespace)"),
        ("magic_links", "btree (expires_at)"),
        ("schema_version", "btree (version)"),
    }
    assert {(table.removeprefix(prefix), index) for table, index in indexes} == expected


def test_table_prefixes_keep_apps_apart(
    postgres_server: str, table_prefix: str, fresh_prefix: str
) -> None:
    with (
        authstore.open_cache(postgres_server, table_prefix=table_prefix) as first,
        authstore.open_cache(postgres_server, table_prefix=fresh_prefix) as second,
    ):
        first.set("apart", "one")
        assert second.get("apart") is None


# --- the database clock ---------------------------------------------------------------


def _db_now(admin: Admin) -> float:
    row = admin.execute("SELECT extract(epoch FROM statement_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def test_expiry_is_measured_on_the_database_clock(
    pg_url: str, table_prefix: str, admin: Admin
) -> None:
    with authstore.open_cache(pg_url, namespace="clock") as cache:
        before = _db_now(admin)
        cache.set("k", 1, ttl=100)
        after = _db_now(admin)
        row = admin.execute(
            f"SELECT expires_at FROM {table_prefix}cache WHERE cache_key = 'clock:k:k'"
        ).fetchone()
        assert row is not None
        assert before + 100 <= row[0] <= after + 100
        # microseconds, not whole seconds
        assert row[0] != int(row[0])


def test_a_statement_after_a_lock_wait_reads_the_clock_after_the_wait(
    pg_url: str, admin: Admin
) -> None:
    """statement_timestamp(), not now(): now() would date the session to the BEGIN,
    before the wait, and its expiry would come early by as long as the wait."""
    with authstore.open_sessions(pg_url, namespace="lockclock") as sessions:
        sessions.count("warm-up")
        lock = "authstore:sessions:lockclock:alice"
        admin.execute("BEGIN")
        admin.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [lock])
        created: list[Any] = []
        worker = threading.Thread(
            target=lambda: created.append(sessions.create("alice", ttl=60, max_sessions=2))
        )
        worker.start()
        time.sleep(1.0)
        released = _db_now(admin)
        admin.execute("COMMIT")
        worker.join()
        record = created[0].record
        assert record.created_at.timestamp() >= released - 0.05
        assert abs((record.expires_at - record.created_at).total_seconds() - 60) < 0.01


# --- existing clients -----------------------------------------------------------------


@pytest.mark.parametrize("autocommit", [True, False])
def test_an_existing_psycopg_pool_is_used_and_left_open(
    postgres_server: str, pg_url: str, autocommit: bool
) -> None:
    prefix = parse_settings(StoreURL.parse(pg_url)).tables.prefix
    with psycopg_pool.ConnectionPool(
        postgres_server, kwargs={"autocommit": autocommit}, min_size=1, max_size=2, open=True
    ) as pool:
        with authstore.open_sessions("postgresql://", client=pool, table_prefix=prefix) as store:
            new = store.create("alice", ttl=60, max_sessions=1)
            assert store.get(new.token) is not None
            assert store.count("alice") == 1
        assert not pool.closed
        with pool.connection() as connection:
            assert connection.autocommit is autocommit
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("autocommit", [True, False])
def test_an_existing_psycopg_connection_is_used_and_left_open(
    postgres_server: str, table_prefix: str, autocommit: bool
) -> None:
    with psycopg.connect(postgres_server, autocommit=autocommit) as connection:
        cache = authstore.open_cache("postgresql://", client=connection, table_prefix=table_prefix)
        links = authstore.open_magic_links(
            "postgresql://", client=connection, table_prefix=table_prefix
        )
        cache.set("k", [1, 2])
        assert cache.get("k") == [1, 2]
        link = links.issue("bob", "bob@example.com", ttl=60)
        assert links.consume(link.token) is not None
        cache.close()
        links.close()
        assert not connection.closed
        assert connection.autocommit is autocommit
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_caller_connection_with_its_own_row_and_cursor_factories_still_works(
    postgres_server: str, table_prefix: str
) -> None:
    """The runner's cursors are raw ($1 placeholders) and return tuples whatever the
    caller's connection makes by default."""
    from psycopg.rows import dict_row

    with psycopg.connect(
        postgres_server, autocommit=True, row_factory=dict_row, cursor_factory=psycopg.ClientCursor
    ) as connection:
        cache = authstore.open_cache("postgresql://", client=connection, table_prefix=table_prefix)
        cache.set("k", {"a": 1})
        assert cache.get("k") == {"a": 1}
        assert cache.check_rate_limit("r", 1, 60, algorithm="gcra").allowed
        assert not cache.check_rate_limit("r", 1, 60, algorithm="gcra").allowed
        cache.close()
        assert connection.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_existing_asyncpg_pool_and_connection_are_used_and_left_open(
    postgres_server: str, table_prefix: str
) -> None:
    async def scenario() -> None:
        pool = await asyncpg.create_pool(postgres_server, min_size=1, max_size=2)
        connection = await asyncpg.connect(postgres_server)
        try:
            for client in (pool, connection):
                async with authstore.open_async_totp(
                    "postgresql://", client=client, table_prefix=table_prefix
                ) as totp:
                    await totp.save_pending("carol", b"secret")
                    assert await totp.enable("carol")
                    assert await totp.claim_step("carol", 5)
                    assert not await totp.claim_step("carol", 5)
                    await totp.disable("carol")
            assert not connection.is_closed()
            assert await pool.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
            await pool.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client": object()}, "client must be"),
        ({"client": "not a pool"}, "client must be"),
    ],
)
def test_a_wrong_client_is_a_configuration_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        authstore.open_cache("postgresql://", **options)
    with pytest.raises(ConfigurationError, match=message):
        authstore.open_async_cache("postgresql://", **options)


def test_a_client_with_server_options_is_a_configuration_error(postgres_server: str) -> None:
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        with pytest.raises(ConfigurationError, match="either in the URL or as client"):
            authstore.open_cache(postgres_server, client=connection)
        with pytest.raises(ConfigurationError, match="pool_size"):
            authstore.open_cache("postgresql://", client=connection, pool_size=3)


# --- closing --------------------------------------------------------------------------


def test_a_closed_store_refuses_work_without_connecting(pg_url: str) -> None:
    cache = authstore.open_cache(pg_url)
    cache.set("k", 1)
    cache.close()
    with pytest.raises(BackendError, match="closed"):
        cache.get("k")

    async def scenario() -> None:
        store = authstore.open_async_cache(pg_url)
        await store.set("k", 1)
        await store.aclose()
        with pytest.raises(BackendError, match="closed"):
            await store.get("k")

    asyncio.run(scenario())


def test_an_async_store_follows_a_new_event_loop(pg_url: str) -> None:
    """asyncpg pools belong to one loop: after asyncio.run() ends, the next loop gets a
    new pool instead of a 'different loop' error."""
    store = authstore.open_async_cache(pg_url, namespace="loops")

    async def use(value: int) -> Any:
        await store.set("k", value)
        return await store.get("k")

    assert asyncio.run(use(1)) == 1
    assert asyncio.run(use(2)) == 2
    asyncio.run(store.aclose())


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncpg: see the end of the test
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_options_reach_both_drivers(pg_url: str, admin: Admin) -> None:
    row = admin.execute("SHOW ssl").fetchone()
    server_has_tls = row is not None and row[0] == "on"
    for mode, works in (("disable", True), ("require", server_has_tls)):
        url = f"{pg_url}&sslmode={mode}&timeout=2"

        def sync_exists(url: str = url) -> bool:
            with authstore.open_cache(url) as cache:
                return cache.exists("tls")

        async def async_exists(url: str = url) -> bool:
            async with authstore.open_async_cache(url) as cache:
                return await cache.exists("tls")

        def run_async(url: str = url) -> bool:
            return asyncio.run(async_exists(url))

        for call in (sync_exists, run_async):
            if works:
                assert call() is False
            else:
                with pytest.raises(TLSVerificationError, match="SSL"):
                    call()
    # asyncpg leaves the socket of a refused SSL upgrade to the garbage collector: collect
    # it here, where its ResourceWarning is known and not authstore's (it would otherwise
    # surface in whichever later test the collector happens to run in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rate_limit_sql_computes_exactly_what_step_computes(
    pg_url: str, algorithm: str, seed: int
) -> None:
    """PostgreSQL's UPSERTs (raw cursors, $n placeholders, floor and float8) equal
    ratelimit.step_* bit for bit, changed limits and a clock behind the row's included.

    The database clock is replaced by a bound ``:now`` (the dialect's ``clock``), so the
    test decides every instant; a clock behind the row's last hit stands for a statement
    that waited for the row's lock: step_* then runs at the row's clock."""
    from authstore.adapters.postgres.sync import SyncPostgresRunner
    from authstore.adapters.sql import SqlCacheOps

    runner = SyncPostgresRunner(parse_settings(StoreURL.parse(pg_url)))
    moment = [1_700_000_000.0]
    runner.dialect.now = ":now"
    runner.dialect.clock = lambda: moment[0]
    ops = SqlCacheOps(runner.dialect, runner.settings.tables)
    rng = random.Random(seed)
    window = rng.choice([0.1, 1.0, 7.3, 60.0])
    limit = rng.choice([1, 3, 10, 1000])
    key = f"ns:{algorithm[0]}:{seed}-{rng.random()}"
    state: Any = None
    last = moment[0]
    try:
        for _ in range(150):
            if rng.random() < 0.1:
                limit = rng.choice([1, 3, 10, 1000])
            step = rng.choice([0.0, rng.uniform(0, window / limit), rng.uniform(0, window)])
            ahead = round(last + step, 6)
            clock = ahead
            if state is not None and rng.random() < 0.15:
                clock = round(ahead - rng.uniform(0, window), 6)
            moment[0] = clock
            now = last = clock if state is None else max(clock, last)
            cost = rng.randint(1, min(limit, 3))
            state, expected = expected_hit(algorithm, state, now, limit, window, cost)
            got = runner.run(hit(ops, algorithm, key, limit, window, cost))
            assert got == expected
    finally:
        runner.close()
