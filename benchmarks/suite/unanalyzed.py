"""PostgreSQL session get on a sessions table the server has no statistics for.

The suite ANALYZEs every table before it measures (``targets.analyze``); a table filled
by a bulk import or a restore, with autovacuum off, has none. Here a separate sessions
table (its own table prefix, which starts with the run's tag: the target's cleanup drops
it if this does not) is migrated (which analyzes the empty tables), autovacuum is turned
off for it, and ``ROWS`` sessions of one namespace and many users are inserted directly,
with no ANALYZE since: what a bulk import or a restore leaves. Then
``sessions.get`` on it and ``cache.get`` (the suite's value) take turns in alternating
slices (``measure.measure_sync``): the row's ratio is session get's time over cache
get's, and the goal wants session get's throughput at least ``GOAL`` of cache get's.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import authstore
from authstore.adapters.sql.schema import Tables
from benchmarks.suite import measure
from benchmarks.suite.measure import Budget, Contender, Measurement
from benchmarks.suite.ops import PAYLOAD
from tests.sql.plans import NAMESPACE, TOKEN, fill_rows, session_insert

if TYPE_CHECKING:
    from benchmarks.suite.session import Results
    from benchmarks.suite.targets import Target

__all__ = ["GOAL", "OP", "REFERENCE", "measure_unanalyzed"]

OP = "session get, never analyzed"
REFERENCE = "cache get"
"""The other contender's label (kind ``baseline``): authstore's own cache get."""
GOAL = 0.8
"""Session get's throughput over cache get's, at least."""


def measure_unanalyzed(target: Target, budget: Budget, results: Results) -> None:
    """Fill, measure and drop the never-analyzed table; a row in ``results``."""
    import psycopg

    from benchmarks.suite.session import progress, record_row

    prefix = f"{target.tag}u_"
    tables = Tables(prefix)
    url = f"{target.server}{'&' if '?' in target.server else '?'}"
    url += f"table_prefix={prefix}&namespace={NAMESPACE}"
    opened = []
    try:
        authstore.migrate(url)
        with psycopg.connect(target.server, autocommit=True) as admin:
            for table in (tables.sessions, tables.cache):
                admin.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            with admin.cursor() as cursor:
                cursor.executemany(session_insert(tables, "%s"), list(fill_rows(time.time())))
        sessions = authstore.open_sessions(url)
        opened.append(sessions)
        cache = authstore.open_cache(url)
        opened.append(cache)
        cache.set("hot", PAYLOAD, ttl=3600)
        if sessions.get(TOKEN) is None:
            raise RuntimeError(f"the filled table has no session for {TOKEN!r}")
        found: list[Measurement] = measure.measure_sync(
            [
                Contender("authstore", "authstore", lambda i: sessions.get(TOKEN)),
                Contender(REFERENCE, "baseline", lambda i: cache.get("hot")),
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
        with psycopg.connect(target.server, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND starts_with(tablename, %s)",
                [prefix],
            ).fetchall()
            for (name,) in rows:
                admin.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
