"""Session get against cache get on a PostgreSQL sessions table never analyzed.

    python -m tests.sql.measure_lookups [--rows 3000] [--rounds 15] [--calls 300]

Fills a sessions table the way a bulk import does (after ``migrate``, autovacuum off
for the table, no ANALYZE since) with ``--rows`` sessions of one namespace and many
users, then times ``sessions.get`` and ``cache.get`` (a 1 kB value) interleaved in one
process, round after round in rotating order, on the current schema and on version 2's
(``Dialect.token_first`` off: the index that leads with the namespace). Prints each
one's median calls per second with the median of the per-round ratios to cache get,
and its best round with the ratio of best rounds.
Not a test: numbers on a shared machine are noisy; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

import authstore
from authstore.adapters.postgres.dialect import PostgresDialect
from authstore.adapters.sql.schema import Tables
from tests.postgres.conftest import drop_tables, server_url
from tests.sql.plans import NAMESPACE, TOKEN, fill_rows, session_insert


def _open(server: str, prefix: str, rows: int, token_first: bool) -> tuple[Any, Any]:
    url = f"{server}?table_prefix={prefix}&namespace={NAMESPACE}"
    PostgresDialect.token_first = token_first
    try:
        authstore.migrate(url)
    finally:
        PostgresDialect.token_first = True
    tables = Tables(prefix)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"ALTER TABLE {tables.sessions} SET (autovacuum_enabled = false)")
        with admin.cursor() as cursor:
            cursor.executemany(session_insert(tables, "%s"), list(fill_rows(time.time()))[:rows])
    # the stores' auto-migration finds the version applied: the old keys stay
    return authstore.open_sessions(url), authstore.open_cache(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    server = server_url()
    prefixes = {name: f"m{uuid.uuid4().hex[:8]}_" for name in ("new", "old")}
    try:
        new_sessions, cache = _open(server, prefixes["new"], args.rows, token_first=True)
        old_sessions, old_cache = _open(server, prefixes["old"], args.rows, token_first=False)
        old_cache.close()
        cache.set("hot", "x" * 1024, ttl=3600)
        contenders: dict[str, Callable[[], object]] = {
            "cache get": lambda: cache.get("hot"),
            "session get (token-hash key)": lambda: new_sessions.get(TOKEN),
            "session get (version 2 keys)": lambda: old_sessions.get(TOKEN),
        }
        for call in contenders.values():
            assert call() is not None
            for _ in range(10):  # past psycopg's preparation on the sixth execution
                call()
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                call = contenders[name]
                started = time.perf_counter()
                for _ in range(args.calls):
                    call()
                rates[name].append(args.calls / (time.perf_counter() - started))
        print(
            f"PostgreSQL, {args.rows} sessions of one namespace, never analyzed; "
            f"{args.rounds} rounds of {args.calls} calls"
        )
        base = rates["cache get"]
        print(f"  {'':30} {'median':>9}  {'ratio':>5}  {'best':>7}  {'ratio':>5}")
        for name, samples in rates.items():
            ratio = statistics.median(a / b for a, b in zip(samples, base, strict=True))
            best = max(samples) / max(base)  # the least disturbed rounds of a shared machine
            print(
                f"  {name:30} {statistics.median(samples):7.0f}/s  {ratio:5.2f}  "
                f"{max(samples):5.0f}/s  {best:5.2f}"
            )
        for store in (new_sessions, old_sessions, cache):
            store.close()
    finally:
        for prefix in prefixes.values():
            drop_tables(server, prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
