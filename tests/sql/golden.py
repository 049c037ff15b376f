"""The SQL every operation sends, per dialect, as files a reviewer can read.

Regenerate after changing an operation's SQL, then read the diff::

    python -m tests.sql.golden --write

Each file ``tests/sql/golden/<dialect>/<contract>.<operation>.sql`` holds the
statements one operation sends, exactly as the driver receives them: each op is
driven with canned results (no database) through ``statements``, the program the
runners use, so the text is compiled by the dialect (placeholders, MySQL's session
variables, the transaction control around ``Begin``). Where an operation takes
several paths (a transaction or not, a row found or missing), each path is a
``-- branch:`` section; paths that send the same statements share one section.
``tests/sql/test_golden.py`` regenerates in memory and compares.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from authstore.adapters.common.ops import LinkDraft, Op, SessionDraft
from authstore.adapters.mysql.dialect import MySQLDialect
from authstore.adapters.mysql.settings import DEFAULT_TIMEOUT
from authstore.adapters.postgres.dialect import PostgresDialect
from authstore.adapters.sql.commands import Query
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import (
    CHUNK,
    PURGE_BATCH,
    SqlCacheOps,
    SqlMagicLinkOps,
    SqlSessionOps,
    SqlTotpOps,
)
from authstore.adapters.sql.schema import (
    Tables,
    clear_namespace,
    count_namespace,
    migrate,
    migrations,
)
from authstore.adapters.sqlite.dialect import SQLiteDialect
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import RateLimitAlgorithm

try:  # the module that turns an op's commands into a driver's statements
    from authstore.adapters.sql.program import statements  # type: ignore[import-not-found]
except ImportError:  # its earlier name
    from authstore.adapters.sql.program import statements

GOLDEN = Path(__file__).resolve().parent / "golden"
COMMAND = "python -m tests.sql.golden --write"

NOW = 1_000_000_000.0
"""SQLite's clock (the other databases read their own: it is in the SQL)."""
NAMESPACE = "app"
TABLES = Tables()

DIALECTS: dict[str, Callable[[], Dialect]] = {
    # psycopg and asyncpg both bind "$1" (the runners pass "numeric")
    "postgresql": lambda: PostgresDialect("numeric"),
    "mysql": lambda: MySQLDialect(TABLES, DEFAULT_TIMEOUT),
    "sqlite": lambda: SQLiteDialect(clock=lambda: NOW),
}


class Ops(NamedTuple):
    dialect: Dialect
    cache: SqlCacheOps
    sessions: SqlSessionOps
    totp: SqlTotpOps
    links: SqlMagicLinkOps


Respond = Callable[[Dialect, Query], Any]
"""What the database returns for one query."""
Answer = Callable[[], Respond]
"""A fresh ``Respond`` for each rendering of a branch."""


def answers(**by_fetch: list[Any]) -> Answer:
    """What the database returns, per ``fetch`` ("one", "all", "rowcount"), in order;
    the last value repeats. A transaction lock's result is never looked at."""

    def fresh() -> Respond:
        queues = {fetch: list(values) for fetch, values in by_fetch.items()}

        def respond(dialect: Dialect, query: Query) -> Any:
            if query.sql == dialect.transaction_lock or query.fetch == "none":
                return None
            queue = queues.get(query.fetch)
            if not queue:
                raise AssertionError(f"no canned {query.fetch!r} result for {query.sql[:80]!r}")
            return queue.pop(0) if len(queue) > 1 else queue[0]

        return respond

    return fresh


def always(dialect: Dialect) -> bool:
    return True


def local(dialect: Dialect) -> bool:
    """SQLite: the rate limiters decide in Python between a read and a write."""
    return dialect.local


def remote(dialect: Dialect) -> bool:
    return not dialect.local


@dataclass(frozen=True)
class Branch:
    """One path through an operation: how to call it and what the database answers.

    ``when`` picks the dialects that take this path; ``raises`` is the error the path
    ends in (its statements, a ROLLBACK included, are still written out)."""

    name: str
    run: Callable[[Ops], Op[Any]]
    answer: Answer = field(default_factory=answers)
    when: Callable[[Dialect], bool] = always
    raises: type[Exception] | None = None


def _recorded(op: Op[Any], seen: list[Query]) -> Op[Any]:
    """``op`` unchanged, noting each Query it yields (its parameters name the binds)."""
    try:
        command = next(op)
        while True:
            if isinstance(command, Query):
                seen.append(command)
            try:
                result = yield command
            except GeneratorExit:
                op.close()
                raise
            except BaseException as error:
                command = op.throw(error)
            else:
                command = op.send(result)
    except StopIteration as done:
        return done.value


def render_branch(dialect: Dialect, ops: Ops, branch: Branch) -> str:
    """The statements one path sends, each under a comment giving its number, what it
    fetches and its arguments' names in placeholder order."""
    seen: list[Query] = []
    respond = branch.answer()
    program: Generator[Any, Any, Any] = statements(_recorded(branch.run(ops), seen), dialect)
    controls = {dialect.begin, dialect.commit, dialect.rollback}
    lines: list[str] = []
    result: Any = None
    try:
        while True:
            statement = program.send(result)
            number = len(lines) + 1
            if statement.text in controls and not statement.args:
                lines.append(f"-- {number}. transaction control\n{statement.text}")
                result = None
                continue
            query = seen[-1]
            binds = ", ".join(dialect.compile(query.sql).names) or "none"
            lines.append(f"-- {number}. fetch {statement.fetch}; binds: {binds}\n{statement.text}")
            result = respond(dialect, query)
    except StopIteration:
        if branch.raises is not None:
            raise AssertionError(f"{branch.name}: expected {branch.raises.__name__}") from None
    except Exception as error:
        if branch.raises is None or not isinstance(error, branch.raises):
            raise
        lines.append(f"-- then raises {type(error).__name__}")
    finally:
        program.close()
    return "\n\n".join(lines)


def render(dialect_name: str, operation: str, branches: list[Branch]) -> str:
    """One golden file: the branches this dialect takes, those sending the same
    statements merged into one section."""
    dialect = DIALECTS[dialect_name]()
    ops = Ops(
        dialect,
        SqlCacheOps(dialect, TABLES),
        SqlSessionOps(dialect, TABLES, NAMESPACE),
        SqlTotpOps(dialect, TABLES, NAMESPACE),
        SqlMagicLinkOps(dialect, TABLES, NAMESPACE),
    )
    sections: dict[str, list[str]] = {}
    for branch in branches:
        if branch.when(dialect):
            sections.setdefault(render_branch(dialect, ops, branch), []).append(branch.name)
    parts = [f"-- {operation} on {dialect_name}: generated by `{COMMAND}`, do not edit"]
    for text, names in sections.items():
        named = [name for name in names if name]
        parts.append((f"-- branch: {'; '.join(named)}\n" if named else "") + text)
    return "\n\n".join(parts) + "\n"


# --- canned rows ------------------------------------------------------------------------

SESSION_ROW = ("sid", "alice", NOW, NOW, NOW + 60, None, None, None, None, "{}")
LINK_ROW = ("lid", "alice", "alice@example.com", NOW, NOW + 60, None, None, None, None)
TOTP_ROWS = [(True, b"secret", None, 7, NOW, NOW, NOW, "hash-1")]
WINDOW_START = (NOW // 60) * 60
"""The sliding window's start at NOW for a 60-second window."""

CACHE_KEY, FIXED_KEY = f"{NAMESPACE}:k:key", f"{NAMESPACE}:f:key"
SLIDING_KEY, GCRA_KEY = f"{NAMESPACE}:s:key", f"{NAMESPACE}:g:key"


SESSION_DRAFT = SessionDraft(
    token_hash="hash",
    session_id="sid",
    user_id="alice",
    device_id=None,
    application_id=None,
    ip_address=None,
    user_agent=None,
    metadata="{}",
    ttl=60.0,
)
LINK_DRAFT = LinkDraft(
    token_hash="hash",
    link_id="lid",
    user_id="alice",
    email="alice@example.com",
    ttl=60.0,
    application_id=None,
    ip_address=None,
    user_agent=None,
)


def _limiter(
    method: str, key: str, returned: tuple[Any, ...], refused_row: tuple[Any, ...]
) -> list[Branch]:
    """A limiter's paths: one UPSERT where the database decides; SQLite's read, step_*
    in Python, and a compare-and-set write (or none)."""

    def hit(ops: Ops) -> Op[Any]:
        limit: Callable[..., Op[Any]] = getattr(ops.cache, method)
        return limit(key, 5, 60.0, 1)

    changed_row = (1, 0, WINDOW_START, WINDOW_START + 120, NOW - 1)
    return [
        Branch("the database decides: one upsert", hit, answers(one=[returned]), when=remote),
        Branch("no row yet: inserted", hit, answers(one=[None], rowcount=[1]), when=local),
        Branch(
            "a row: updated if unchanged", hit, answers(one=[changed_row], rowcount=[1]), when=local
        ),
        Branch(
            "refused, the row stays as it is: one read", hit, answers(one=[refused_row]), when=local
        ),
        Branch(
            "another writer came first: decided again in a transaction",
            hit,
            answers(one=[None], rowcount=[0, 1]),
            when=local,
        ),
    ]


LATEST = 0
"""For ``_migrate_answers``: the newest version there is."""


def _migrate_answers(version: int | None) -> Answer:
    """A database at ``version`` (None: no schema table yet)."""

    def respond(dialect: Dialect, query: Query) -> Any:
        if query.sql == dialect.table_exists:
            return None if version is None else (1,)
        if query.sql == dialect.migration_lock:
            return (1,)
        if "max(version)" in query.sql:
            return (migrations(dialect, TABLES)[-1][0] if version == LATEST else version,)
        return None

    return lambda: respond


MANY = [f"{NAMESPACE}:k:key{index}" for index in range(CHUNK + 1)]

OPERATIONS: dict[str, list[Branch]] = {
    "health.ping": [Branch("", lambda o: o.cache.ping(), answers(one=[(1,)]))],
    # --- cache
    "cache.get": [Branch("", lambda o: o.cache.get(CACHE_KEY), answers(one=[(b"v",)]))],
    "cache.get_many": [
        Branch(
            "a few keys: one statement",
            lambda o: o.cache.get_many([CACHE_KEY, f"{NAMESPACE}:k:other"]),
            answers(all=[[]]),
        ),
        Branch(
            f"more than {CHUNK} keys: one statement per {CHUNK}, no transaction",
            lambda o: o.cache.get_many(MANY),
            answers(all=[[]]),
        ),
    ],
    "cache.set": [Branch("", lambda o: o.cache.set(CACHE_KEY, b"v", 60.0))],
    "cache.set_many": [
        Branch("a few keys: one statement", lambda o: o.cache.set_many({CACHE_KEY: b"v"}, 60.0)),
        Branch(
            f"more than {CHUNK} keys: one statement per {CHUNK}, in a transaction",
            lambda o: o.cache.set_many({key: b"v" for key in MANY}, 60.0),
        ),
    ],
    "cache.add": [Branch("", lambda o: o.cache.add(CACHE_KEY, b"v", 60.0), answers(rowcount=[1]))],
    "cache.delete": [
        Branch("a cache entry", lambda o: o.cache.delete(CACHE_KEY), answers(rowcount=[1])),
        Branch(
            "a rate limiter's state", lambda o: o.cache.delete(FIXED_KEY), answers(rowcount=[1])
        ),
    ],
    "cache.delete_many": [
        Branch(
            "entries of one table: one statement",
            lambda o: o.cache.delete_many([CACHE_KEY, f"{NAMESPACE}:k:other"]),
            answers(rowcount=[2]),
        ),
        Branch(
            "entries and limiters: one statement per table, in a transaction",
            lambda o: o.cache.delete_many([CACHE_KEY, FIXED_KEY]),
            answers(rowcount=[1]),
        ),
    ],
    "cache.exists": [Branch("", lambda o: o.cache.exists(CACHE_KEY), answers(one=[(1,)]))],
    "cache.incr": [
        Branch("", lambda o: o.cache.incr(CACHE_KEY, 2, 60.0), answers(one=[(b"2",)], rowcount=[1]))
    ],
    "cache.expire": [
        Branch("", lambda o: o.cache.expire(CACHE_KEY, 60.0), answers(one=[(1,)], rowcount=[1]))
    ],
    "cache.ttl": [Branch("", lambda o: o.cache.ttl(CACHE_KEY), answers(one=[(30.0,)]))],
    "cache.raise_to": [
        Branch(
            "",
            lambda o: o.cache.raise_to(CACHE_KEY, NOW, 60.0),
            answers(one=[(NOW,)], rowcount=[1]),
        )
    ],
    "cache.read_epoch": [
        Branch("", lambda o: o.cache.read_epoch(CACHE_KEY), answers(one=[(NOW,)]))
    ],
    "cache.fixed_window": _limiter(
        "fixed_window", FIXED_KEY, (True, 1, NOW + 60, NOW), (5, 0, NOW + 30, NOW + 30, NOW - 1)
    ),
    "cache.sliding_window": _limiter(
        "sliding_window",
        SLIDING_KEY,
        (True, 0, 1, WINDOW_START, NOW),
        (5, 0, WINDOW_START, WINDOW_START + 120, NOW - 1),
    ),
    "cache.gcra": _limiter("gcra", GCRA_KEY, (True, NOW, 1, NOW), (5, 0, NOW, NOW + 120, NOW)),
    "cache.read_limiter": [
        Branch(
            "",
            lambda o: o.cache.read_limiter(FIXED_KEY, RateLimitAlgorithm.FIXED_WINDOW),
            answers(one=[(1, 0, NOW + 60, NOW, NOW)]),
        )
    ],
    "cache.read_record": [
        Branch(
            "", lambda o: o.cache.read_record(f"{NAMESPACE}:r:group"), answers(one=[(b"v", NOW)])
        )
    ],
    "cache.replace_record": [
        Branch(
            "no record read: added",
            lambda o: o.cache.replace_record(f"{NAMESPACE}:r:group", None, b"v", 60.0),
            answers(rowcount=[1]),
        ),
        Branch(
            "a record read: replaced if unchanged",
            lambda o: o.cache.replace_record(f"{NAMESPACE}:r:group", b"old", b"v", 60.0),
            answers(rowcount=[1]),
        ),
    ],
    "cache.purge_expired": [
        Branch("a few expired rows", lambda o: o.cache.purge_expired(), answers(rowcount=[3])),
        Branch(
            f"{PURGE_BATCH} or more: batch after batch",
            lambda o: o.cache.purge_expired(),
            answers(rowcount=[PURGE_BATCH, 3]),
        ),
    ],
    # --- sessions
    "sessions.create": [
        Branch(
            "no cap: one statement",
            lambda o: o.sessions.create(SESSION_DRAFT, None),
            answers(one=[SESSION_ROW], rowcount=[1]),
        ),
        Branch(
            "max_sessions: create and evict under the user's lock, in a transaction",
            lambda o: o.sessions.create(SESSION_DRAFT, 3),
            answers(one=[SESSION_ROW], rowcount=[1]),
        ),
        Branch(
            "no cap, the token is taken",
            lambda o: o.sessions.create(SESSION_DRAFT, None),
            answers(one=[None], rowcount=[0]),
            raises=TokenInUseError,
        ),
        Branch(
            "max_sessions, the token is taken: rolled back",
            lambda o: o.sessions.create(SESSION_DRAFT, 3),
            answers(one=[None], rowcount=[0]),
            raises=TokenInUseError,
        ),
    ],
    "sessions.get": [Branch("", lambda o: o.sessions.get("hash"), answers(one=[SESSION_ROW]))],
    "sessions.touch": [
        Branch("with a ttl", lambda o: o.sessions.touch("hash", 60.0), answers(one=[SESSION_ROW])),
        Branch("without", lambda o: o.sessions.touch("hash", None), answers(one=[SESSION_ROW])),
    ],
    "sessions.revoke": [Branch("", lambda o: o.sessions.revoke("hash"), answers(rowcount=[1]))],
    "sessions.revoke_by_id": [
        Branch("any user", lambda o: o.sessions.revoke_by_id("sid", None), answers(rowcount=[1])),
        Branch(
            "one user's", lambda o: o.sessions.revoke_by_id("sid", "alice"), answers(rowcount=[1])
        ),
    ],
    "sessions.revoke_all": [
        Branch("all", lambda o: o.sessions.revoke_all("alice", None, None), answers(rowcount=[2])),
        Branch(
            "all but one token",
            lambda o: o.sessions.revoke_all("alice", "hash", None),
            answers(rowcount=[2]),
        ),
        Branch(
            "all but one id",
            lambda o: o.sessions.revoke_all("alice", None, "sid"),
            answers(rowcount=[2]),
        ),
        Branch(
            "all but one token and one id",
            lambda o: o.sessions.revoke_all("alice", "hash", "sid"),
            answers(rowcount=[2]),
        ),
    ],
    "sessions.list": [Branch("", lambda o: o.sessions.list("alice"), answers(all=[[SESSION_ROW]]))],
    "sessions.count": [Branch("", lambda o: o.sessions.count("alice"), answers(one=[(1,)]))],
    "sessions.purge_expired": [
        Branch("", lambda o: o.sessions.purge_expired(), answers(rowcount=[3]))
    ],
    # --- TOTP
    "totp.save_pending": [Branch("", lambda o: o.totp.save_pending("alice", b"secret"))],
    "totp.enable": [Branch("", lambda o: o.totp.enable("alice"), answers(rowcount=[1]))],
    "totp.disable": [Branch("", lambda o: o.totp.disable("alice"), answers(rowcount=[1]))],
    "totp.load": [Branch("", lambda o: o.totp.load("alice"), answers(all=[TOTP_ROWS]))],
    "totp.replace_backup_codes": [
        Branch(
            "codes for an enrolled user",
            lambda o: o.totp.replace_backup_codes("alice", ["hash-1", "hash-2"]),
            answers(one=[(1,)]),
        ),
        Branch(
            "no TOTP state: the codes are only deleted",
            lambda o: o.totp.replace_backup_codes("alice", ["hash-1"]),
            answers(one=[None]),
        ),
        Branch("no codes", lambda o: o.totp.replace_backup_codes("alice", [])),
        Branch(
            f"more than {CHUNK} codes: one INSERT per {CHUNK}",
            lambda o: o.totp.replace_backup_codes("alice", [f"hash-{i}" for i in range(CHUNK + 1)]),
            answers(one=[(1,)]),
        ),
    ],
    "totp.use_backup_code": [
        Branch("", lambda o: o.totp.use_backup_code("alice", "hash-1"), answers(rowcount=[1]))
    ],
    "totp.claim_step": [Branch("", lambda o: o.totp.claim_step("alice", 7), answers(rowcount=[1]))],
    # --- magic links
    "links.issue": [
        Branch(
            "one statement",
            lambda o: o.links.issue(LINK_DRAFT, False),
            answers(one=[LINK_ROW], rowcount=[1]),
        ),
        Branch(
            "revoke_previous: revoke and issue under the user's lock, in a transaction",
            lambda o: o.links.issue(LINK_DRAFT, True),
            answers(one=[LINK_ROW], rowcount=[1]),
        ),
        Branch(
            "the token is taken",
            lambda o: o.links.issue(LINK_DRAFT, False),
            answers(one=[None], rowcount=[0]),
            raises=TokenInUseError,
        ),
        Branch(
            "revoke_previous, the token is taken: rolled back",
            lambda o: o.links.issue(LINK_DRAFT, True),
            answers(one=[None], rowcount=[0]),
            raises=TokenInUseError,
        ),
    ],
    "links.peek": [Branch("", lambda o: o.links.peek("hash"), answers(one=[LINK_ROW]))],
    "links.consume": [
        Branch("", lambda o: o.links.consume("hash", None), answers(one=[LINK_ROW], rowcount=[1]))
    ],
    "links.revoke_user": [
        Branch("", lambda o: o.links.revoke_user("alice"), answers(rowcount=[2]))
    ],
    "links.purge_expired": [Branch("", lambda o: o.links.purge_expired(), answers(rowcount=[3]))],
    # --- schema
    "schema.migrate": [
        Branch(
            "a new database: every version",
            lambda o: migrate(o.dialect, TABLES),
            _migrate_answers(None),
        ),
        Branch(
            "at version 1: the later versions",
            lambda o: migrate(o.dialect, TABLES),
            _migrate_answers(1),
        ),
        Branch(
            "up to date: one read, no lock",
            lambda o: migrate(o.dialect, TABLES),
            _migrate_answers(LATEST),
        ),
    ],
    "schema.clear_namespace": [Branch("", lambda o: clear_namespace(TABLES, NAMESPACE))],
    "schema.count_namespace": [
        Branch("", lambda o: count_namespace(TABLES, NAMESPACE), answers(one=[(0,)]))
    ],
}


def generate() -> Iterator[tuple[Path, str]]:
    """Every golden file's path (relative to ``GOLDEN``) and content."""
    for dialect_name in DIALECTS:
        for operation, branches in OPERATIONS.items():
            yield Path(dialect_name, f"{operation}.sql"), render(dialect_name, operation, branches)


def _first_difference(old: str, new: str, context: int = 60) -> str:
    """Where two files first differ, with a little text either side: the statements are
    long lines, on which a line diff alone hides the one word that changed."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (before, after) in enumerate(zip(old_lines, new_lines, strict=False), 1):
        if before != after:
            column = next(
                (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
                min(len(before), len(after)),
            )
            start = max(0, column - context)
            return (
                f"first difference: line {number}, column {column + 1}\n"
                f"  on disk:  ...{before[start : column + context]}\n"
                f"  ops now:  ...{after[start : column + context]}\n"
            )
    return ""


def differences(root: Path = GOLDEN) -> list[str]:
    """A unified diff for each golden file that is missing, stale or unexpected."""
    expected = dict(generate())
    found = {path.relative_to(root) for path in root.rglob("*.sql")} if root.exists() else set()
    problems = []
    for path, text in expected.items():
        on_disk = (root / path).read_text(encoding="utf-8") if path in found else ""
        if on_disk != text:
            diff = difflib.unified_diff(
                on_disk.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{path} (on disk)",
                f"{path} (the ops now)",
            )
            problems.append("".join(diff) + _first_difference(on_disk, text))
    for path in sorted(found - set(expected)):
        problems.append(f"{path}: no operation renders it any more\n")
    return problems


def write(root: Path = GOLDEN) -> int:
    """Write every golden file and remove those no operation renders; how many changed."""
    expected = dict(generate())
    changed = 0
    for path, text in expected.items():
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            changed += 1
    if root.exists():
        for stale in root.rglob("*.sql"):
            if stale.relative_to(root) not in expected:
                stale.unlink()
                changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sql.golden", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the golden files")
    arguments = parser.parse_args(argv)
    if arguments.write:
        print(f"{write()} golden files written under {GOLDEN}")
        return 0
    problems = differences()
    sys.stdout.write("".join(problems) or "the golden files match the operations\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
