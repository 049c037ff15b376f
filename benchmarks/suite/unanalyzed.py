"""PostgreSQL session get on a sessions table the server has no statistics for.

The suite ANALYZEs every table before it measures (``targets.analyze``); a table filled
by a bulk import or a restore, with autovacuum off, has none. Here a separate sessions
table (its own table prefix, which starts with the run's tag: the target's cleanup drops
it if this does not) is migrated (which analyzes the empty tables), autovacuum is turned
off for it, and ``ROWS`` sessions of one namespace and many users are inserted directly,
with no ANALYZE since: what a bulk import or a restore leaves. Then
``sessions.get`` on it and ``cache.get`` (the suite's value) take turns in alternating
slices (``measure.measure_sync``), with the same session get on an analyzed twin of the
table: the row's ratios are session get's time over cache get's (the goal wants session
get's throughput at least ``GOAL`` of cache get's) and over the twin's.

Each store has a connection (a server process) of its own, and the interleaving cancels
load that varies in time, not a difference between connections that lasts the whole row:
on a loaded machine both ratios move from run to run by more than their rounds' error.
A twin's ratio far from 1 says that happened in this run.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import authstore
from authstore.adapters.sql.schema import Tables
from benchmarks.suite import measure
from benchmarks.suite.measure import Budget, Contender, Measurement
from benchmarks.suite.ops import PAYLOAD
from tests.sql.plans import NAMESPACE, TOKEN, fill_rows, session_insert

if TYPE_CHECKING:
    from benchmarks.suite.session import Results
    from benchmarks.suite.targets import Target

__all__ = ["GOAL", "OP", "REFERENCE", "TWIN", "measure_unanalyzed"]

OP = "session get, never analyzed"
REFERENCE = "cache get"
"""The other contender's label (kind ``baseline``): authstore's own cache get."""
TWIN = "session get, analyzed twin"
"""A third contender (kind ``analyzed twin``, no goal): the same fill in a table of its
own, ANALYZEd. Near 1, what is left of the gap to cache get is not the statistics'."""
GOAL = 0.8
"""Session get's throughput over cache get's, at least."""


def measure_unanalyzed(target: Target, budget: Budget, results: Results) -> None:
    """Fill, measure and drop the never-analyzed table and its analyzed twin; a row in
    ``results``."""
    from benchmarks.suite.session import progress, record_row

    prefixes = [f"{target.tag}u_", f"{target.tag}a_"]  # never analyzed, analyzed twin
    opened: list[Any] = []
    try:
        for prefix in prefixes:
            opened += _filled(target, prefix, analyzed=prefix == prefixes[1])
        sessions, cache, twin, _ = opened
        cache.set("hot", PAYLOAD, ttl=3600)
        found: list[Measurement] = measure.measure_sync(
            [
                Contender("authstore", "authstore", lambda i: sessions.get(TOKEN)),
                Contender(REFERENCE, "baseline", lambda i: cache.get("hot")),
                Contender(TWIN, "analyzed twin", lambda i: twin.get(TOKEN)),
            ],
            budget,
        )
        record_row(results, target.name, "sync", OP, found)
    except Exception as error:
        results.failures.append(f"{target.name} {OP}: {error!r:.300}")
        progress(f"  {target.name} {OP} FAILED: {error!r:.300}")
    finally:
        for store in opened:
            with contextlib.suppress(Exception):
                store.close()
        _drop(target, prefixes)


def _filled(target: Target, prefix: str, analyzed: bool) -> tuple[Any, Any]:
    """Sessions and cache stores on ``prefix``'s tables, the sessions table bulk-filled
    (and then ANALYZEd when ``analyzed``)."""
    import psycopg

    tables = Tables(prefix)
    url = f"{target.server}{'&' if '?' in target.server else '?'}"
    url += f"table_prefix={prefix}&namespace={NAMESPACE}"
    authstore.migrate(url)
    with psycopg.connect(target.server, autocommit=True) as admin:
        for table in (tables.sessions, tables.cache):
            admin.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        with admin.cursor() as cursor:
            cursor.executemany(session_insert(tables, "%s"), list(fill_rows(time.time())))
        if analyzed:
            admin.execute(f"ANALYZE {tables.sessions}")
    sessions = authstore.open_sessions(url)
    if sessions.get(TOKEN) is None:
        sessions.close()
        raise RuntimeError(f"the filled table has no session for {TOKEN!r}")
    return sessions, authstore.open_cache(url)


def _drop(target: Target, prefixes: list[str]) -> None:
    import psycopg

    with psycopg.connect(target.server, autocommit=True) as admin:
        for prefix in prefixes:
            rows = admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND starts_with(tablename, %s)",
                [prefix],
            ).fetchall()
            for (name,) in rows:
                admin.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
