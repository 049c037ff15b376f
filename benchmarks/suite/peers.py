"""The libraries users would pick instead, on the same server, in the same run.

Each builder returns ``{operation: [Contender, ...]}`` plus the settings it used (stated
in the report). Peers run with their defaults except where fairness needs the same
setting as authstore: SQLite in WAL with ``synchronous = NORMAL``, PostgreSQL pools of
authstore's default size (``DEFAULT_POOL_SIZE``, read from its settings), a limit that is never reached for "allowed" hits and a
limit of 1 already spent for "refused" ones.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.suite.measure import Contender
from benchmarks.suite.ops import BIG, PAYLOAD, Steps, run_async, run_sync
from benchmarks.suite.targets import Target, mongo_database, mysql_arguments

__all__ = ["async_peers", "sync_peers"]

Peers = dict[str, list[Contender]]
Closers = list[Callable[[], Any]]


def _guard(notes: list[str], label: str, build: Callable[[], Any]) -> Any:
    """A peer that fails to set up is left out and said so, the run goes on."""
    try:
        return build()
    except Exception as error:
        notes.append(f"{label}: not measured ({error!r:.160})")
        return None


async def _guard_async(notes: list[str], label: str, build: Callable[[], Any]) -> Any:
    try:
        return await build()
    except Exception as error:
        notes.append(f"{label}: not measured ({error!r:.160})")
        return None


def _add(peers: Peers, op: str, label: str, call: Callable[[int], Any], note: str = "") -> None:
    peers.setdefault(op, []).append(Contender(label, "peer", call, note=note))


def _limits(
    peers: Peers, uri: str, name: str, tag: str, asynchronous: bool, **options: Any
) -> Steps:
    """``limits``' fixed window and sliding-window counter, sync or async (``limits.aio``):
    yields the spending hit of each refused limiter (awaitable when async)."""
    import limits.aio.strategies
    import limits.strategies
    from limits import RateLimitItemPerMinute
    from limits.storage import storage_from_string

    strategies: Any = limits.aio.strategies if asynchronous else limits.strategies
    store = storage_from_string(uri, **options)
    allowed, refused = RateLimitItemPerMinute(BIG), RateLimitItemPerMinute(1)
    for algorithm, kind in (
        ("fixed_window", strategies.FixedWindowRateLimiter),
        ("sliding_window", strategies.SlidingWindowCounterRateLimiter),
    ):
        limiter = kind(store)
        yield limiter.hit(refused, tag, f"r{algorithm}")
        label = f"limits{' async' if asynchronous else ''} {name} " + kind.__name__.removesuffix(
            "RateLimiter"
        )
        _add(
            peers,
            f"{algorithm} allowed",
            label,
            lambda i, lim=limiter, a=algorithm: lim.hit(allowed, tag, f"a{a}"),
        )
        _add(
            peers,
            f"{algorithm} refused",
            label,
            lambda i, lim=limiter, a=algorithm: lim.hit(refused, tag, f"r{a}"),
        )


def _limits_sync(peers: Peers, uri: str, name: str, tag: str, **options: Any) -> None:
    run_sync(_limits(peers, uri, name, tag, False, **options))


async def _limits_async(peers: Peers, uri: str, name: str, tag: str, **options: Any) -> None:
    await run_async(_limits(peers, uri, name, tag, True, **options))


def _cachelib(peers: Peers, cache: Any, label: str) -> None:
    cache.set("hot", PAYLOAD, timeout=3600)
    cache.set("jti0", 1, timeout=3600)
    _add(peers, "cache get", label, lambda i: cache.get("hot"))
    _add(peers, "cache set", label, lambda i: cache.set("k0", PAYLOAD, timeout=300))
    _add(peers, "cache incr", label, lambda i: cache.inc("n0"))
    _add(peers, "is_blacklisted", label, lambda i: cache.has("jti0"))


async def _aiocache(peers: Peers, cache: Any, label: str) -> None:
    await cache.set("hot", PAYLOAD, ttl=3600)
    await cache.set("jti0", 1, ttl=3600)
    _add(peers, "cache get", label, lambda i: cache.get("hot"))
    _add(peers, "cache set", label, lambda i: cache.set("k0", PAYLOAD, ttl=300))
    _add(peers, "cache incr", label, lambda i: cache.increment("n0"))
    _add(peers, "is_blacklisted", label, lambda i: cache.exists("jti0"))


def _pyrate(
    peers: Peers, make_bucket: Callable[[Any, str], Any], label: str, closers: Closers
) -> None:
    from pyrate_limiter import Duration, Limiter, Rate
    from pyrate_limiter.limiter import SingleBucketFactory

    # no background leak thread: it would take the interpreter lock from whichever
    # contender runs while it works (a window of 60 s never expires in a run anyway)
    def limiter(rates: Any, kind: str) -> Any:
        return Limiter(SingleBucketFactory(make_bucket(rates, kind), schedule_leak=False))

    allowed = limiter([Rate(BIG, Duration.MINUTE)], "allowed")
    refused = limiter([Rate(1, Duration.MINUTE)], "refused")
    refused.try_acquire("r", blocking=False)
    closers += [allowed.close, refused.close]
    for algorithm in ("fixed_window", "sliding_window"):
        _add(
            peers, f"{algorithm} allowed", label, lambda i: allowed.try_acquire("a", blocking=False)
        )
        _add(
            peers, f"{algorithm} refused", label, lambda i: refused.try_acquire("r", blocking=False)
        )


# --- Django ----------------------------------------------------------------------------

_DJANGO: dict[str, Any] = {"alias": "default", "configured": False}


class _Router:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return str(_DJANGO["alias"])

    db_for_write = db_for_read

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


def _django(peers: Peers, target: Target, closers: Closers) -> list[str]:
    """Django's database cache and database sessions on the target's database."""
    import django
    from django.conf import settings

    if target.name == "sqlite":
        path = _beside(target, "django")
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
        }
        alias = "sqlite"
    elif target.name == "mariadb":
        import pymysql

        pymysql.install_as_MySQLdb()  # Django's MySQL backend over PyMySQL, as authstore
        arguments = mysql_arguments(target.server)
        connection = pymysql.connect(**{**arguments, "database": None}, autocommit=True)
        try:
            with connection.cursor() as cursor:  # a database of this run's own
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{target.tag}`")
        finally:
            connection.close()
        closers.append(lambda: _drop_database(target))
        database = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": target.tag,
            "USER": arguments["user"],
            "PASSWORD": arguments["password"],
            "HOST": arguments["host"],
            "PORT": str(arguments["port"]),
            "OPTIONS": {"charset": "utf8mb4"},
            "CONN_MAX_AGE": None,
        }
        alias = "mariadb"
    else:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        with psycopg.connect(target.server, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.tag}"')
        info = conninfo_to_dict(target.server)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": info.get("dbname", ""),
            "USER": info.get("user", ""),
            "PASSWORD": info.get("password", ""),
            "HOST": info.get("host", ""),
            "PORT": info.get("port", ""),
            "OPTIONS": {"options": f"-c search_path={target.tag}"},
            "CONN_MAX_AGE": None,
        }
        alias = "postgresql"
    if not _DJANGO["configured"]:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DATABASE_ROUTERS=[_Router()],
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                    "LOCATION": "django_bench_cache",
                    "OPTIONS": {"MAX_ENTRIES": 10**6},
                }
            },
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
            SESSION_ENGINE="django.contrib.sessions.backends.db",
            USE_TZ=True,
            SECRET_KEY="benchmark-only-not-secret",
        )
        django.setup()
        _DJANGO["configured"] = True
    from django.core.cache import caches
    from django.core.management import call_command
    from django.db import connections

    connections.settings[alias] = database
    connections.configure_settings(connections.settings)
    _DJANGO["alias"] = alias
    call_command("createcachetable", database=alias, verbosity=0)
    call_command("migrate", "sessions", database=alias, verbosity=0)
    cache = caches["default"]
    cache.set("hot", PAYLOAD, 3600)
    cache.set("jti0", 1, 3600)
    cache.set("n0", 0, None)

    def on(call: Callable[[int], Any]) -> Callable[[int], Any]:
        def switched(i: int) -> Any:
            _DJANGO["alias"] = alias
            return call(i)

        return switched

    label = "Django DatabaseCache"
    _add(peers, "cache get", label, on(lambda i: cache.get("hot")))
    _add(peers, "cache set", label, on(lambda i: cache.set("k0", PAYLOAD, 300)))
    _add(peers, "cache incr", label, on(lambda i: cache.incr("n0")))
    _add(peers, "is_blacklisted", label, on(lambda i: cache.has_key("jti0")))

    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session["user_id"] = "alice"
    session["device"] = "phone"
    session.create()
    key = session.session_key

    def get(i: int) -> Any:
        return SessionStore(session_key=key).load()

    def create(i: int) -> Any:
        fresh = SessionStore()
        fresh["user_id"] = f"user{i % 100}"
        fresh["device"] = "phone"
        fresh.create()

    label = "Django DB sessions"
    _add(peers, "session get", label, on(get))
    _add(peers, "session create", label, on(create))

    def close() -> None:
        connections[alias].close()

    closers.append(close)
    return [
        f"Django {django.get_version()} DatabaseCache and DB sessions on {alias}"
        + (
            " (a file of its own next to authstore's; WAL, synchronous=NORMAL via init_command)"
            if alias == "sqlite"
            else " (a schema or database of this run's own; persistent connection, "
            "CONN_MAX_AGE=None)"
        )
    ]


# --- per target --------------------------------------------------------------------------


def sync_peers(target: Target, closers: Closers) -> tuple[Peers, list[str]]:
    peers: Peers = {}
    notes: list[str] = []
    tag = target.tag
    name = target.name
    host, port = target.address if target.network else ("", 0)
    if name == "memory":
        from cachelib import SimpleCache

        _guard(
            notes,
            "cachelib",
            lambda: _cachelib(
                peers, SimpleCache(threshold=10**6, default_timeout=0), "cachelib SimpleCache"
            ),
        )
        _guard(
            notes,
            f"{name} limits_sync",
            lambda: _limits_sync(peers, "memory://", "MemoryStorage", tag),
        )
        notes.append("memory: cachelib SimpleCache (threshold 10^6), limits MemoryStorage")
    elif name == "sqlite":
        from pyrate_limiter import SQLiteBucket

        path = _beside(target, "pyrate")
        counter = itertools.count()

        def bucket(rates: Any, kind: str) -> Any:
            return SQLiteBucket.init_from_file(
                rates, table=f"pyrate_{tag}_{kind}{next(counter)}", db_path=path
            )

        _guard(
            notes, "pyrate", lambda: _pyrate(peers, bucket, "pyrate-limiter SQLiteBucket", closers)
        )
        notes.append(
            "sqlite: pyrate-limiter SQLiteBucket on a file of its own in the same folder (its init sets WAL and synchronous=NORMAL, as authstore's runner does)"
        )
        with contextlib.suppress(ImportError):
            notes += _guard(notes, f"{name} Django", lambda: _django(peers, target, closers)) or []
    elif name == "postgresql":
        import psycopg_pool
        from pyrate_limiter import PostgresBucket

        closers.append(lambda: _drop_pyrate_tables(target))  # runs last: closers go backwards
        from authstore.adapters.postgres.settings import DEFAULT_POOL_SIZE

        pool = psycopg_pool.ConnectionPool(
            target.server, min_size=1, max_size=DEFAULT_POOL_SIZE, open=True
        )
        closers.append(pool.close)
        _guard(
            notes,
            "pyrate",
            lambda: _pyrate(
                peers,
                lambda rates, kind: PostgresBucket(pool, f"pyrate_{tag}_{kind}", rates),
                "pyrate-limiter PostgresBucket",
                closers,
            ),
        )
        notes.append(
            "postgresql: pyrate-limiter PostgresBucket over psycopg_pool "
            f"(min_size {pool.min_size}, max_size {pool.max_size}: authstore's default pool_size)"
        )
        with contextlib.suppress(ImportError):
            notes += _guard(notes, f"{name} Django", lambda: _django(peers, target, closers)) or []
    elif name == "mariadb":
        with contextlib.suppress(ImportError):
            notes += _guard(notes, f"{name} Django", lambda: _django(peers, target, closers)) or []
    elif name == "redis":
        import redis
        from cachelib import RedisCache
        from pyrate_limiter import RedisBucket

        db = int(target.server.split("?", 1)[0].rsplit("/", 1)[-1] or "0")
        _guard(
            notes,
            "cachelib",
            lambda: _cachelib(
                peers,
                RedisCache(host=host, port=port, db=db, key_prefix=f"{tag}:cachelib:"),
                "cachelib RedisCache",
            ),
        )
        _guard(
            notes,
            "limits_sync",
            lambda: _limits_sync(
                peers, f"redis://{host}:{port}/{db}", "RedisStorage", tag, key_prefix=tag
            ),
        )
        client = redis.Redis(host=host, port=port, db=db)
        closers.append(client.close)
        _guard(
            notes,
            "pyrate",
            lambda: _pyrate(
                peers,
                lambda rates, kind: RedisBucket.init(rates, client, f"{tag}:pyrate:{kind}"),
                "pyrate-limiter RedisBucket",
                closers,
            ),
        )
        notes.append(
            "redis: cachelib RedisCache (pickle), limits RedisStorage, pyrate-limiter RedisBucket (redis-py client)"
        )
    elif name == "memcached":
        from cachelib import MemcachedCache
        from pymemcache import serde
        from pymemcache.client.base import Client

        # cachelib looks for pylibmc or python-memcached; it takes a ready client too
        memcache = Client((host, port), serde=serde.pickle_serde, default_noreply=False)
        closers.append(memcache.close)
        _guard(
            notes,
            "cachelib",
            lambda: _cachelib(
                peers, MemcachedCache(memcache, key_prefix=f"{tag}_"), "cachelib MemcachedCache"
            ),
        )
        _guard(
            notes,
            "limits_sync",
            lambda: _limits_sync(peers, f"memcached://{host}:{port}", "MemcachedStorage", tag),
        )
        notes.append(
            "memcached: cachelib MemcachedCache over a pymemcache client "
            f"(serde {type(memcache.serde).__name__}, no_delay {memcache.no_delay}), "
            "limits MemcachedStorage (pymemcache, its defaults)"
        )
    elif name == "mongodb":
        address, _ = mongo_database(target.server)
        _guard(
            notes,
            "limits_sync",
            lambda: _limits_sync(
                peers, address, "MongoDBStorage", tag, database_name=f"limits_{tag}"
            ),
        )
        notes.append("mongodb: limits MongoDBStorage (pymongo), its own database")
    return peers, notes


async def async_peers(target: Target, closers: Closers) -> tuple[Peers, list[str]]:
    peers: Peers = {}
    notes: list[str] = []
    tag, name = target.tag, target.name
    host, port = target.address if target.network else ("", 0)
    if name == "memory":
        from aiocache import SimpleMemoryCache

        await _guard_async(
            notes,
            "aiocache",
            lambda: _aiocache(peers, SimpleMemoryCache(), "aiocache SimpleMemoryCache"),
        )
        await _guard_async(
            notes,
            "limits_async",
            lambda: _limits_async(peers, "async+memory://", "MemoryStorage", tag),
        )
        notes.append("memory async: aiocache SimpleMemoryCache, limits.aio MemoryStorage")
    elif name == "redis":
        from aiocache import RedisCache

        db = int(target.server.split("?", 1)[0].rsplit("/", 1)[-1] or "0")
        await _guard_async(
            notes,
            "aiocache",
            lambda: _aiocache(
                peers,
                RedisCache(endpoint=host, port=port, db=db, namespace=f"{tag}:aiocache"),
                "aiocache RedisCache",
            ),
        )
        await _guard_async(
            notes,
            "limits_async",
            lambda: _limits_async(
                peers,
                f"async+redis://{host}:{port}/{db}",
                "RedisStorage",
                tag,
                key_prefix=tag,
                implementation="redispy",
            ),
        )
        notes.append("redis async: aiocache RedisCache, limits.aio RedisStorage (redis.asyncio)")
    elif name == "memcached":
        from aiocache import MemcachedCache

        await _guard_async(
            notes,
            "aiocache",
            lambda: _aiocache(
                peers,
                MemcachedCache(endpoint=host, port=port, namespace=f"{tag}_"),
                "aiocache MemcachedCache",
            ),
        )
        await _guard_async(
            notes,
            "limits_async",
            lambda: _limits_async(
                peers, f"async+memcached://{host}:{port}", "MemcachedStorage", tag
            ),
        )
        notes.append(
            "memcached async: aiocache MemcachedCache (aiomcache), limits.aio MemcachedStorage (memcachio)"
        )
    elif name == "mongodb":
        address, _ = mongo_database(target.server)
        await _guard_async(
            notes,
            "limits_async",
            lambda: _limits_async(
                peers, "async+" + address, "MongoDBStorage", tag, database_name=f"limits_{tag}"
            ),
        )
        notes.append("mongodb async: limits.aio MongoDBStorage")
    return peers, notes


def _beside(target: Target, name: str) -> str:
    """A database file of the peer's own next to authstore's: the same disk and settings,
    but one library's writes (its WAL growth, checkpoints, a background leak thread)
    never stall another's."""
    path = Path(target.server.split("sqlite:///", 1)[1].split("?", 1)[0])
    return str(path.with_name(f"{path.stem}-{name}{path.suffix}"))


def _drop_database(target: Target) -> None:
    import pymysql

    connection = pymysql.connect(**{**mysql_arguments(target.server), "database": None})
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{target.tag}`")
    finally:
        connection.close()


def _drop_pyrate_tables(target: Target) -> None:
    import psycopg

    with psycopg.connect(target.server, autocommit=True) as connection:
        names = connection.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [f"%pyrate_{target.tag}%"]
        ).fetchall()
        for (table,) in names:
            connection.execute(f'DROP TABLE IF EXISTS "{table}"')
