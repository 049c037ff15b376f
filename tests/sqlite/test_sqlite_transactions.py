"""A failure in the middle of a transaction leaves nothing half-written, and the store usable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import authstore
from authstore.adapters.common.ops import LinkDraft, Op
from authstore.adapters.sql import Begin, Query, SqlMagicLinkOps, Tables
from authstore.adapters.sql.program import Statement
from authstore.adapters.sqlite.settings import SQLiteSettings
from authstore.adapters.sqlite.sync import SyncSQLiteRunner, execute
from authstore.contracts.errors import BackendError, BackendUnavailableError
from authstore.contracts.values import hash_token


@pytest.fixture
def runner(db_path: Path) -> SyncSQLiteRunner:
    return SyncSQLiteRunner(SQLiteSettings(str(db_path)))


def _count(db_path: Path, sql: str) -> int:
    with sqlite3.connect(db_path) as check:
        value: int = check.execute(sql).fetchone()[0]
    return value


def _write_then(failure: BaseException | Query) -> Op[None]:
    """A transaction that writes a cache row, then sends ``failure`` (a statement the
    driver refuses) or raises it (the application failing between two statements)."""
    yield Begin()
    yield Query(
        "INSERT INTO authstore_cache (cache_key, value) VALUES (:key, :value)",
        {"key": "first", "value": b"1"},
    )
    if isinstance(failure, Query):
        yield failure
    else:
        raise failure


def test_constraint_failure_after_a_delete_rolls_the_delete_back(
    runner: SyncSQLiteRunner, db_url: str
) -> None:
    with authstore.open_magic_links(db_url) as links:
        victim = links.issue("victim", "victim@example.com", ttl=60)
        other = links.issue("other", "other@example.com", ttl=60)
    ops = SqlMagicLinkOps(runner.dialect, Tables(), "authstore")
    # issue(revoke_previous=True) revokes the victim's unused links, then inserts; the
    # insert reuses another link's public id, so the UNIQUE constraint rejects it.
    with pytest.raises(BackendError) as raised:
        runner.run(
            ops.issue(
                LinkDraft(
                    token_hash=hash_token("a-fresh-token-nobody-has-used-yet-0123456789"),
                    link_id=other.record.id,
                    user_id="victim",
                    email="victim@example.com",
                    ttl=60,
                    application_id=None,
                    ip_address=None,
                    user_agent=None,
                ),
                revoke_previous=True,
            )
        )
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert runner.connection is not None and not runner.connection.in_transaction
    with authstore.open_magic_links(db_url) as links:
        assert links.peek(victim.token) is not None  # the DELETE did not survive
        assert links.peek(other.token) is not None
    runner.close()


def test_an_operation_raising_mid_transaction_writes_nothing(
    runner: SyncSQLiteRunner, db_path: Path
) -> None:
    runner.run(one_row("SELECT 1"))  # migrate first
    with pytest.raises(RuntimeError):
        runner.run(_write_then(RuntimeError("the application failed between two statements")))
    assert runner.connection is not None and not runner.connection.in_transaction
    assert _count(db_path, "SELECT COUNT(*) FROM authstore_cache") == 0
    assert runner.run(one_row("SELECT 42")) == (42,)  # still usable
    runner.close()


def test_a_driver_error_in_the_second_statement_rolls_back_the_first(
    runner: SyncSQLiteRunner, db_path: Path
) -> None:
    runner.run(one_row("SELECT 1"))
    with pytest.raises(BackendError) as raised:
        runner.run(_write_then(Query("INSERT INTO no_such_table VALUES (1)")))
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert _count(db_path, "SELECT COUNT(*) FROM authstore_cache") == 0
    runner.close()


def test_an_interrupt_mid_transaction_rolls_back(runner: SyncSQLiteRunner, db_path: Path) -> None:
    runner.run(one_row("SELECT 1"))
    with pytest.raises(KeyboardInterrupt):
        runner.run(_write_then(KeyboardInterrupt()))
    assert _count(db_path, "SELECT COUNT(*) FROM authstore_cache") == 0
    runner.close()


def test_a_locked_database_is_unavailable_to_writers_and_still_read(
    db_url: str, db_path: Path
) -> None:
    with authstore.open_cache(db_url, timeout=0.2) as cache:
        cache.add_to_blacklist("jti", 60)
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(BackendUnavailableError) as raised:
                cache.check_rate_limit("k", 5, 60)
            assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(BackendUnavailableError):
                cache.add_to_blacklist("other", 60)
            assert cache.is_blacklisted("jti") is True  # WAL: readers never wait
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert cache.check_rate_limit("k", 5, 60).allowed


def test_an_unopenable_database_fails_closed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with authstore.open_cache(f"sqlite:///{blocker / 'auth.db'}") as cache:
        with pytest.raises(BackendUnavailableError) as raised:
            cache.is_blacklisted("jti")
        assert isinstance(raised.value.__cause__, sqlite3.Error)


def test_a_closed_store_refuses_work(db_url: str) -> None:
    cache = authstore.open_cache(db_url)
    cache.set("k", 1)
    cache.close()
    cache.close()  # closing twice is harmless
    with pytest.raises(BackendError):
        cache.get("k")


def one_row(sql: str) -> Op[object]:
    row = yield Query(sql, fetch="one")
    return row


def test_stores_sharing_a_given_connection_never_interleave_transactions(
    db_path: Path,
) -> None:
    connection = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    totp = authstore.open_totp("sqlite://", connection=connection)
    links = authstore.open_magic_links("sqlite://", connection=connection)
    totp.load("warm-up")
    totp.save_pending("u", b"ciphertext")  # backup codes belong to a TOTP state
    errors: list[BaseException] = []

    def hammer(action: Callable[[int], object]) -> None:
        try:
            for round_number in range(150):
                action(round_number)
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [
        threading.Thread(target=hammer, args=(lambda n: totp.replace_backup_codes("u", [str(n)]),)),
        threading.Thread(
            target=hammer, args=(lambda n: links.issue("u", "u@example.com", ttl=60),)
        ),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    state = totp.load("u")
    assert state is not None and len(state.backup_code_hashes) == 1  # replaced each round
    assert _count(db_path, "SELECT COUNT(*) FROM authstore_totp_backup_codes") == 1
    usable = "SELECT COUNT(*) FROM authstore_magic_links WHERE revoked_at IS NULL"
    assert _count(db_path, usable) == 1  # revoked rows stay (their hashes taken) until expiry
    totp.close()
    links.close()
    connection.close()


@pytest.mark.parametrize("reused", [False, True], ids=["own cursor", "reused cursor"])
def test_a_statement_failing_part_way_through_its_rows_leaves_nothing_open(
    reused: bool,
) -> None:
    """``execute`` reads a SELECT's rows one step at a time: one that fails on its second
    row (text that is not UTF-8) leaves its statement reset, on a cursor of its own or
    on a reused one (closed, for its caller to replace), so nothing keeps reading the
    table (dropping it would fail: "database table is locked"), even while the error,
    and so the cursor, is still around."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        connection.execute("CREATE TABLE t (v TEXT)")
        connection.execute("INSERT INTO t VALUES ('a'), (CAST(x'ff' AS TEXT)), ('b')")
        cursor = connection.cursor() if reused else None
        with pytest.raises(BackendError, match="UTF-8") as failed:
            execute(connection, Statement("SELECT v FROM t", (), "all"), cursor)
        # while the error lives, its traceback holds the cursor execute made
        assert failed.tb is not None
        execute(connection, Statement("DROP TABLE t", (), "none"))
        if cursor is not None:
            with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
                cursor.execute("SELECT 1")
    finally:
        connection.close()
