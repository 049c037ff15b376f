"""The SQL schema as versioned data, and the operation that brings a database up to date.

Each migration is a version number and its statements, built from the dialect
(column types, index syntax) and a table prefix. Migrating is idempotent and safe
when several processes start at once: the version is checked and the missing
steps applied inside one transaction that serializes writers (SQLite's BEGIN
IMMEDIATE; elsewhere the dialect's transaction lock as well).

Every time column holds epoch seconds as a float on the store's clock.
"""

# SQL text is assembled from identifiers checked by Tables and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

import re
from dataclasses import dataclass

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query
from authstore.adapters.sql.dialect import Dialect
from authstore.contracts.errors import BackendUnavailableError, ConfigurationError

__all__ = [
    "DEFAULT_TABLE_PREFIX",
    "Migration",
    "MigrationReport",
    "Tables",
    "migrate",
    "migrations",
]

DEFAULT_TABLE_PREFIX = "authstore_"
_PREFIX = re.compile(r"[A-Za-z0-9_]{1,32}")

# Column sizes follow the checks in contracts.values and adapters.common.logic.
CACHE_KEY_LENGTH = 1100  # namespace (64) + ":k:" + key (1024 bytes)
NAMESPACE_LENGTH = 64
ID_LENGTH = 255
HASH_LENGTH = 64  # SHA-256 hex of a token
PUBLIC_ID_LENGTH = 64
CODE_HASH_LENGTH = 512
IP_LENGTH = 64


@dataclass(frozen=True)
class Tables:
    """Table names under one prefix, so several apps can share a database."""

    prefix: str = DEFAULT_TABLE_PREFIX

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError("table_prefix must be 1-32 characters of A-Z a-z 0-9 _")

    @property
    def schema_version(self) -> str:
        return f"{self.prefix}schema_version"

    @property
    def cache(self) -> str:
        return f"{self.prefix}cache"

    @property
    def rate_limits(self) -> str:
        return f"{self.prefix}rate_limits"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}sessions"

    @property
    def totp(self) -> str:
        return f"{self.prefix}totp"

    @property
    def backup_codes(self) -> str:
        return f"{self.prefix}totp_backup_codes"

    @property
    def magic_links(self) -> str:
        return f"{self.prefix}magic_links"

    @property
    def analyzed(self) -> tuple[str, ...]:
        """The tables of the stores (``migrate`` refreshes their statistics)."""
        return (
            self.cache,
            self.rate_limits,
            self.sessions,
            self.totp,
            self.backup_codes,
            self.magic_links,
        )


Migration = tuple[int, tuple[str, ...]]


def migrations(dialect: Dialect, tables: Tables) -> list[Migration]:
    """Every version in order; a new version is appended, never edited."""
    return [
        (1, _version_1(dialect, tables)),
        (2, _version_2(dialect, tables)),
        (3, _version_3(dialect, tables)),
    ]


def _version_1(d: Dialect, t: Tables) -> tuple[str, ...]:
    key, real, p = d.key, d.real, t.prefix
    return (
        # Cache entries. ``value`` holds the codec's bytes; ``epoch`` holds the instants of
        # user-wide revocations (a float kept exact, which text would not be).
        f"CREATE TABLE IF NOT EXISTS {t.cache} ("
        f"cache_key {key(CACHE_KEY_LENGTH)} NOT NULL PRIMARY KEY, "
        f"value {d.blob}, epoch {real}, expires_at {real})",
        d.create_index(f"{p}cache_expires", t.cache, ["expires_at"]),
        # Rate-limit state, one row per limiter key. ``mark`` is the fixed window's end, the
        # sliding window's start or the GCRA theoretical arrival time; ``allowed`` is the
        # decision of the last hit, computed in the same statement so RETURNING can read it.
        f"CREATE TABLE IF NOT EXISTS {t.rate_limits} ("
        f"cache_key {key(CACHE_KEY_LENGTH)} NOT NULL PRIMARY KEY, "
        f"hits {d.bigint} NOT NULL, previous_hits {d.bigint} NOT NULL, mark {real} NOT NULL, "
        f"allowed {d.boolean} NOT NULL, touched_at {real} NOT NULL, expires_at {real} NOT NULL)",
        d.create_index(f"{p}rate_limits_expires", t.rate_limits, ["expires_at"]),
        f"CREATE TABLE IF NOT EXISTS {t.sessions} ("
        f"seq {d.serial_key}, "
        f"namespace {key(NAMESPACE_LENGTH)} NOT NULL, "
        f"token_hash {key(HASH_LENGTH)} NOT NULL, "
        f"id {key(PUBLIC_ID_LENGTH)} NOT NULL, "
        f"user_id {key(ID_LENGTH)} NOT NULL, "
        f"device_id {key(ID_LENGTH)}, application_id {key(ID_LENGTH)}, "
        f"ip_address {key(IP_LENGTH)}, user_agent {d.text}, metadata {d.text} NOT NULL, "
        f"created_at {real} NOT NULL, last_seen_at {real} NOT NULL, expires_at {real} NOT NULL, "
        f"UNIQUE (namespace, token_hash), UNIQUE (namespace, id))",
        d.create_index(f"{p}sessions_user", t.sessions, ["namespace", "user_id", "created_at"]),
        d.create_index(f"{p}sessions_expires", t.sessions, ["expires_at"]),
        f"CREATE TABLE IF NOT EXISTS {t.totp} ("
        f"namespace {key(NAMESPACE_LENGTH)} NOT NULL, user_id {key(ID_LENGTH)} NOT NULL, "
        f"secret {d.blob}, pending_secret {d.blob}, enabled {d.boolean} NOT NULL, "
        f"enabled_at {real}, last_step {d.bigint}, "
        f"created_at {real} NOT NULL, updated_at {real} NOT NULL, "
        f"PRIMARY KEY (namespace, user_id))",
        f"CREATE TABLE IF NOT EXISTS {t.backup_codes} ("
        f"namespace {key(NAMESPACE_LENGTH)} NOT NULL, user_id {key(ID_LENGTH)} NOT NULL, "
        f"code_hash {key(CODE_HASH_LENGTH)} NOT NULL, "
        f"PRIMARY KEY (namespace, user_id, code_hash))",
        f"CREATE TABLE IF NOT EXISTS {t.magic_links} ("
        f"seq {d.serial_key}, "
        f"namespace {key(NAMESPACE_LENGTH)} NOT NULL, "
        f"token_hash {key(HASH_LENGTH)} NOT NULL, "
        f"id {key(PUBLIC_ID_LENGTH)} NOT NULL, "
        f"user_id {key(ID_LENGTH)} NOT NULL, email {d.text} NOT NULL, "
        f"application_id {key(ID_LENGTH)}, ip_address {key(IP_LENGTH)}, user_agent {d.text}, "
        f"created_at {real} NOT NULL, expires_at {real} NOT NULL, consumed_at {real}, "
        f"UNIQUE (namespace, token_hash), UNIQUE (namespace, id))",
        d.create_index(f"{p}magic_links_user", t.magic_links, ["namespace", "user_id"]),
        d.create_index(f"{p}magic_links_expires", t.magic_links, ["expires_at"]),
    )


def _version_2(d: Dialect, t: Tables) -> tuple[str, ...]:
    return (
        # A revoked session or link keeps its row, so its token hash stays taken until it
        # expires: a caller-supplied token can never revive it (TokenInUseError).
        f"ALTER TABLE {t.sessions} ADD COLUMN revoked_at {d.real}",
        f"ALTER TABLE {t.magic_links} ADD COLUMN revoked_at {d.real}",
        # Backup codes come back from load() in the order replace_backup_codes got them.
        f"ALTER TABLE {t.backup_codes} ADD COLUMN code_order {d.bigint}",
    )


def _version_3(d: Dialect, t: Tables) -> tuple[str, ...]:
    """Sessions and magic links keyed token hash first, so a lookup by hash is the
    unique-key lookup whatever the planner's statistics say (``Dialect.token_first``).

    Every index of version 1 led with ``namespace``: on a table never analyzed,
    PostgreSQL costs ``namespace = :namespace`` on the user index as cheap as the
    unique token-hash key and then filters every session of the namespace. With no
    index leading with ``namespace`` only the unique key answers the equality on the
    token hash; the other indexes could serve it only by a scan of the whole index.
    The user index keeps both equalities and ``created_at``'s order. The new indexes
    are built before the old ones are dropped (under the migration's lock: writers
    wait for the build); the data is already unique on the same column sets.
    """
    if not d.token_first:
        return ()
    p, sessions, links = t.prefix, t.sessions, t.magic_links
    return (
        d.create_index(f"{p}sessions_token", sessions, ["token_hash", "namespace"], unique=True),
        d.create_index(f"{p}sessions_public_id", sessions, ["id", "namespace"], unique=True),
        d.create_index(f"{p}sessions_by_user", sessions, ["user_id", "namespace", "created_at"]),
        d.drop_unique(sessions, ["namespace", "token_hash"]),
        d.drop_unique(sessions, ["namespace", "id"]),
        d.drop_index(f"{p}sessions_user", sessions),
        d.create_index(f"{p}magic_links_token", links, ["token_hash", "namespace"], unique=True),
        d.create_index(f"{p}magic_links_public_id", links, ["id", "namespace"], unique=True),
        d.create_index(f"{p}magic_links_by_user", links, ["user_id", "namespace"]),
        d.drop_unique(links, ["namespace", "token_hash"]),
        d.drop_unique(links, ["namespace", "id"]),
        d.drop_index(f"{p}magic_links_user", links),
    )


@dataclass(frozen=True)
class MigrationReport:
    version: int
    """The schema version the database is at now."""
    applied: tuple[int, ...]
    """The versions this run applied (none when the database was up to date)."""
    known: int
    """The latest version this authstore knows."""

    def describe(self, backend: str) -> str:
        line = f"{backend}: schema at version {self.version} (applied {len(self.applied)})"
        if self.version > self.known:
            line += f"; newer than this authstore's version {self.known}"
        return line


def migrate(dialect: Dialect, tables: Tables) -> Op[MigrationReport]:
    steps = migrations(dialect, tables)
    latest = steps[-1][0]
    current = yield from _current_version(dialect, tables)
    if current is not None and current >= latest:
        return MigrationReport(current, (), latest)
    lock_name = f"authstore:migrate:{tables.prefix}"
    if dialect.migration_lock is not None:
        # DDL commits by itself (MySQL): a session lock serializes migrating processes
        # instead; a failure leaves it to the connection's end, which the runner forces.
        taken = yield Query(dialect.migration_lock, {"lock_name": lock_name}, "one")
        if taken is None or taken[0] != 1:
            raise BackendUnavailableError(
                f"another process is still migrating tables {tables.prefix}*; try again"
            )
    else:
        yield Begin()
        if dialect.transaction_lock is not None:
            yield Query(dialect.transaction_lock, {"lock_name": lock_name}, "all")
    yield Query(
        f"CREATE TABLE IF NOT EXISTS {tables.schema_version} "
        f"(version {dialect.integer} NOT NULL PRIMARY KEY, applied_at {dialect.real} NOT NULL)"
    )
    # Checked again under the lock: another process may have migrated meanwhile.
    row = yield Query(f"SELECT max(version) FROM {tables.schema_version}", fetch="one")
    current = int(row[0]) if row and row[0] is not None else 0
    applied: list[int] = []
    for version, statements in steps:
        if version <= current:
            continue
        for statement in statements:
            yield Query(statement)
        yield Query(
            f"INSERT INTO {tables.schema_version} (version, applied_at) "
            f"VALUES (:version, {dialect.now})",
            {"version": version},
        )
        applied.append(version)
    if applied:
        # The planner's statistics of what was created or rekeyed (a lookup planned on
        # none may filter a whole namespace); a table filled later still needs the
        # server's autovacuum / auto-recalculation, or an ANALYZE after a bulk load.
        for statement in dialect.analyze(tables.analyzed):
            yield Query(statement)
    if dialect.migration_unlock is not None:
        yield Query(dialect.migration_unlock, {"lock_name": lock_name}, "all")
    return MigrationReport(max(current, latest), tuple(applied), latest)


def _current_version(dialect: Dialect, tables: Tables) -> Op[int | None]:
    """The version without taking any lock, None when the schema table is missing."""
    exists = yield Query(dialect.table_exists, {"name": tables.schema_version}, "one")
    if exists is None:
        return None
    row = yield Query(f"SELECT max(version) FROM {tables.schema_version}", fetch="one")
    return None if row is None or row[0] is None else int(row[0])


def _namespace_filters(tables: Tables, namespace: str) -> list[tuple[str, str, dict[str, object]]]:
    """(table, condition, params) selecting what ``namespace`` holds in each table."""
    escaped = namespace.replace("!", "!!").replace("_", "!_").replace("%", "!%")
    by_key = (
        # NS:kind:key, and the per-user lock rows of a dialect's transaction_lock
        # (MySQL: authstore:sessions:NS:user in the cache table, expired at once)
        "(cache_key LIKE :prefix ESCAPE '!' OR cache_key LIKE :sessions ESCAPE '!' "
        "OR cache_key LIKE :links ESCAPE '!' OR cache_key LIKE :totp ESCAPE '!')",
        {
            "prefix": f"{escaped}:%",
            "sessions": f"authstore:sessions:{escaped}:%",
            "links": f"authstore:magic!_links:{escaped}:%",
            "totp": f"authstore:totp:{escaped}:%",
        },
    )
    by_column = ("namespace = :namespace", {"namespace": namespace})
    keyed = [(table, *by_key) for table in (tables.cache, tables.rate_limits)]
    owned = [
        (table, *by_column)
        for table in (tables.sessions, tables.totp, tables.backup_codes, tables.magic_links)
    ]
    return keyed + owned  # type: ignore[return-value]


def clear_namespace(tables: Tables, namespace: str) -> Op[None]:
    """Delete every row of ``namespace`` (``authstore check`` cleans up with it)."""
    yield Begin()
    for table, condition, params in _namespace_filters(tables, namespace):
        yield Query(f"DELETE FROM {table} WHERE {condition}", params)


def count_namespace(tables: Tables, namespace: str) -> Op[int]:
    """How many rows ``namespace`` holds in all the tables."""
    total = 0
    for table, condition, params in _namespace_filters(tables, namespace):
        row = yield Query(f"SELECT count(*) FROM {table} WHERE {condition}", params, "one")
        total += int(row[0])
    return total
