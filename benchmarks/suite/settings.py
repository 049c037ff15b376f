"""The settings a contender really ran with, read from its objects (not restated as
text that can drift from the code): authstore's parsed URL settings and its runner's
pool, a raw driver's connection or pool, a client's options."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

__all__ = ["describe", "describe_store"]

SHOWN = (
    "topology",
    "pool_size",
    "pool_min",
    "timeout",
    "connect_timeout",
)
"""authstore settings fields worth a reader's attention (addresses and names are not)."""


def _fields(settings: Any) -> list[str]:
    if not dataclasses.is_dataclass(settings):
        return []
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return [f"{name} {values[name]}" for name in SHOWN if name in values]


def describe_store(store: Any) -> str:
    """authstore's store: its runner class, its settings, its driver's pool."""
    runner = getattr(store, "_runner", None)
    if runner is None:
        return type(store).__name__
    parts = [type(runner).__name__, *_fields(getattr(runner, "settings", None))]
    pool = getattr(runner, "_pool", None)
    if pool is not None:
        parts.append(describe(pool))
    if hasattr(runner, "_prepared_on"):  # the async PostgreSQL runner (postgres/aio.py)
        parts.append("its own prepared statements, bound and executed on asyncpg's protocol")
    return ", ".join(part for part in parts if part)


def describe(thing: Any) -> str:
    """A driver object's settings that shape a round trip: pool bounds, prepared
    statements, Nagle, serializer. Best effort: what cannot be read is left out."""
    kind = f"{type(thing).__module__}.{type(thing).__qualname__}"
    parts: list[str] = []
    with contextlib.suppress(Exception):
        if kind.startswith("psycopg_pool"):
            parts += [f"psycopg_pool min_size {thing.min_size}", f"max_size {thing.max_size}"]
            threshold = thing.kwargs.get("prepare_threshold", "psycopg's default 5")
            parts.append(f"prepare_threshold {threshold}")
        elif kind.startswith("psycopg"):
            parts += [
                f"psycopg {type(thing).__name__}",
                f"autocommit {thing.autocommit}",
                f"prepare_threshold {thing.prepare_threshold}",
            ]
        elif kind.startswith("asyncpg"):
            if hasattr(thing, "get_max_size"):
                parts.append(f"asyncpg pool min {thing.get_min_size()} max {thing.get_max_size()}")
                cache = thing._connect_kwargs.get("statement_cache_size", "asyncpg's default 100")
            else:
                parts.append("asyncpg connection")
                cache = thing._stmt_cache.get_max_size()
            parts.append(f"statement_cache_size {cache}")
        elif kind.startswith("pymemcache"):
            parts += [
                f"pymemcache {type(thing).__name__}",
                f"no_delay {thing.no_delay}",
                f"serde {type(thing.serde).__name__}",
            ]
        elif kind.startswith("aiomcache"):
            parts.append(f"aiomcache pool max {thing._pool._maxsize}")
        elif kind.startswith("redis"):
            pool = getattr(thing, "connection_pool", thing)
            parts.append(f"redis-py pool max_connections {pool.max_connections}")
        elif kind.startswith("pymongo"):
            options = thing.options.pool_options
            parts.append(f"pymongo maxPoolSize {options.max_pool_size}")
        elif kind.startswith(("pymysql", "aiomysql")):
            parts.append(f"{type(thing).__module__.split('.')[0]} autocommit")
        elif kind.startswith("sqlite3"):
            parts.append("sqlite3 autocommit")
    return ", ".join(parts) or type(thing).__name__
