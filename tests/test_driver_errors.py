"""Every exception class of every installed driver becomes an ``AuthStoreError``.

The test walks each driver's exception hierarchy (``BaseException.__subclasses__``,
recursively, after importing the driver's modules the adapter uses) and hands an
instance of every class the driver defines to the adapter's REAL error handling:
the set of classes its runner catches and the function that turns a caught error into
authstore's. A class the runner would not catch, or that its translation returns raw
(or as anything but an ``AuthStoreError``), fails here: the driver's error would escape
unwrapped. A second test checks the translated message: it names the store by its
redacted URL and never holds the password, even when the driver's text does.

No server is contacted: the stores are opened lazily on closed loopback ports and
closed again. Python warning categories a driver defines (``warnings.warn`` classes,
subclasses of the builtin ``Warning``) are not errors and are left out; the DB-API
``Warning`` exceptions (``sqlite3.Warning``, ``psycopg.Warning``) are errors and stay in.

Where an adapter leaves a class unmapped today and another branch fixes it, the case
is an ``xfail(strict=True)`` naming that branch: it passes (and so fails, being strict)
once the fix is merged, and the mark goes.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import authstore
from authstore.contracts.errors import AuthStoreError

PASSWORD = "Pw-e21-S3cr3t"
"""The URL's password; every driver message below holds it."""


@dataclass(frozen=True)
class Adapter:
    """How one adapter's runner catches and translates its driver's errors."""

    url: str
    asynchronous: bool
    modules: tuple[str, ...]
    """The driver modules the adapter imports (the walk sees what they define)."""
    roots: frozenset[str]
    """Top-level packages whose exception classes belong to the driver."""
    handle: Callable[[Any, BaseException], BaseException]
    """What the runner makes of ``error``: the translated error, or ``error`` itself when
    the runner would not catch it (it escapes)."""


def _caught(
    catches: tuple[type[BaseException], ...],
    translate: Callable[[], BaseException],
    error: BaseException,
) -> BaseException:
    return translate() if isinstance(error, catches) else error


def _redis(runner: Any, error: BaseException) -> BaseException:
    # redis/sync.py, aio.py, backend.py: except runner.driver_errors: raise runner.translate(e)
    return _caught(runner.driver_errors, lambda: runner.translate(error), error)


def _postgres(runner: Any, error: BaseException) -> BaseException:
    # postgres/sync.py, aio.py: except runner.driver_errors: raise runner._translate(e)
    return _caught(runner.driver_errors, lambda: runner._translate(error), error)


def _mysql(runner: Any, error: BaseException) -> BaseException:
    # mysql/sync.py, aio.py: every statement and connect is `except Exception` -> translate
    return _caught((Exception,), lambda: runner.translate(error), error)


def _mongodb(runner: Any, error: BaseException) -> BaseException:
    # mongodb/sync.py, aio.py: each command's `except Exception` -> runner._translate
    return _caught((Exception,), lambda: runner._translate(error, False), error)


def _memcached_sync(runner: Any, error: BaseException) -> BaseException:
    # memcached/sync.py _call: except runner._driver_errors -> runner._error
    unavailable = isinstance(error, runner._unavailable)
    return _caught(
        runner._driver_errors, lambda: runner._error(error, unavailable=unavailable), error
    )


def _memcached_async(runner: Any, error: BaseException) -> BaseException:
    # memcached/aio.py _call: except runner._driver_errors -> runner._error
    return _caught(
        runner._driver_errors,
        lambda: runner._error(error, unavailable=runner._is_unavailable(error)),
        error,
    )


class _Raising(sqlite3.Connection):
    """A real sqlite3 connection whose next ``execute`` raises ``error``."""

    error: BaseException

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def _sqlite(runner: Any, error: BaseException) -> BaseException:
    # The real path: sqlite/sync.py execute (the async runner runs it in its worker).
    from authstore.adapters.sql.program import Statement
    from authstore.adapters.sqlite.sync import execute

    connection = sqlite3.connect(":memory:", factory=_Raising)
    connection.error = error
    try:
        execute(connection, Statement("SELECT 1", (), "one"))
    except BaseException as raised:
        return raised
    finally:
        connection.close()
    raise AssertionError("the raising connection did not raise")


_REDIS_MODULES = (
    "redis",
    "redis.exceptions",
    "redis.cluster",
    "redis.sentinel",
    "redis.asyncio",
    "redis.asyncio.cluster",
    "redis.asyncio.sentinel",
)
_REDIS = frozenset({"redis"})
_PG = ("psycopg", "psycopg.errors", "psycopg_pool")
_MYSQL = frozenset({"pymysql", "aiomysql"})
_MONGO = ("pymongo", "pymongo.errors", "pymongo.asynchronous.mongo_client", "bson", "bson.errors")

ADAPTERS: dict[str, Adapter] = {
    "redis-sync": Adapter(
        f"redis://u:{PASSWORD}@127.0.0.1:1/0", False, _REDIS_MODULES, _REDIS, _redis
    ),
    "redis-async": Adapter(
        f"redis://u:{PASSWORD}@127.0.0.1:1/0", True, _REDIS_MODULES, _REDIS, _redis
    ),
    "redis-cluster-sync": Adapter(
        f"redis+cluster://u:{PASSWORD}@127.0.0.1:1", False, _REDIS_MODULES, _REDIS, _redis
    ),
    "redis-cluster-async": Adapter(
        f"redis+cluster://u:{PASSWORD}@127.0.0.1:1", True, _REDIS_MODULES, _REDIS, _redis
    ),
    "postgres-sync": Adapter(
        f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        False,
        _PG,
        frozenset({"psycopg", "psycopg_pool"}),
        _postgres,
    ),
    "postgres-async": Adapter(
        f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        True,
        ("asyncpg", "asyncpg.exceptions"),
        frozenset({"asyncpg"}),
        _postgres,
    ),
    "mysql-sync": Adapter(
        f"mysql://u:{PASSWORD}@127.0.0.1:1/db", False, ("pymysql", "pymysql.err"), _MYSQL, _mysql
    ),
    "mysql-async": Adapter(
        f"mysql://u:{PASSWORD}@127.0.0.1:1/db",
        True,
        ("aiomysql", "pymysql", "pymysql.err"),
        _MYSQL,
        _mysql,
    ),
    "mongodb-sync": Adapter(
        f"mongodb://u:{PASSWORD}@127.0.0.1:1/db",
        False,
        _MONGO,
        frozenset({"pymongo", "bson"}),
        _mongodb,
    ),
    "mongodb-async": Adapter(
        f"mongodb://u:{PASSWORD}@127.0.0.1:1/db",
        True,
        _MONGO,
        frozenset({"pymongo", "bson"}),
        _mongodb,
    ),
    "memcached-sync": Adapter(
        "memcached://127.0.0.1:1",
        False,
        ("pymemcache", "pymemcache.exceptions", "pymemcache.client.hash"),
        frozenset({"pymemcache"}),
        _memcached_sync,
    ),
    "memcached-async": Adapter(
        "memcached://127.0.0.1:1",
        True,
        ("aiomcache", "aiomcache.exceptions"),
        frozenset({"aiomcache"}),
        _memcached_async,
    ),
    "sqlite": Adapter("sqlite:///unused.db", False, ("sqlite3",), frozenset({"sqlite3"}), _sqlite),
}

NOT_ERRORS: dict[str, str] = {
    "psycopg.Rollback": "control flow: raised by a caller inside `with transaction()`, "
    "swallowed there; authstore never raises it",
    "asyncpg.connect_utils._NextHostSignal": "asyncpg-internal signal, caught in its connect",
    "asyncpg.connect_utils._RetryConnectSignal": "asyncpg-internal signal, caught in its connect",
}
"""Driver classes that are not errors a driver call raises (left out of the walk)."""

FIXED_ELSEWHERE: dict[tuple[str, str], str] = {}
"""(adapter, class) -> why the case is an expected failure until another branch merges."""

MESSAGES_FIXED_ELSEWHERE: dict[str, str] = {}
"""adapter -> why its messages fail the URL/password check until another branch merges."""

HANDLED_INSIDE = frozenset({"ScriptMissing"})
"""Translated errors a runner handles itself, never raised to a caller (NOSCRIPT: the
script is sent again with EVAL): their message need not name the store."""


def _installed(modules: tuple[str, ...]) -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except ModuleNotFoundError:
        return False


def driver_exceptions(adapter: Adapter) -> list[type[BaseException]]:
    """Every exception class the driver defines (found by walking ``__subclasses__``)
    and every one its modules export (a stdlib class a driver raises as its own, such
    as ``ssl.SSLCertVerificationError`` in ``pymongo.errors``). ``asyncio.CancelledError``
    and other non-``Exception`` classes are not errors: cancellation must propagate."""
    found: set[type[BaseException]] = set()
    for name in adapter.modules:
        module = importlib.import_module(name)
        found.update(
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Exception)
        )
    stack: list[type[BaseException]] = [BaseException]
    walked: set[type[BaseException]] = set()
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in walked:
                walked.add(sub)
                stack.append(sub)
    found.update(cls for cls in walked if cls.__module__.split(".")[0] in adapter.roots)
    mine = [cls for cls in found if not issubclass(cls, Warning) and _name(cls) not in NOT_ERRORS]
    return sorted(mine, key=_name)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def instance(cls: type[BaseException], text: str) -> BaseException:
    """An instance of ``cls`` made by its own constructor: ``cls(text)``, else with
    ``None`` for the arguments after the first, else with a server reply holding
    ``text`` first (pymongo's bulk errors take one); bare (``__new__`` and
    ``BaseException.__init__``) when none of that works."""
    for first in (text, {"errmsg": text}):
        for extra in range(4):
            try:
                error = cls(first, *[None] * extra)
                str(error)
                return error
            except Exception:  # another signature may fit
                continue
    error = cls.__new__(cls)
    BaseException.__init__(error, text)
    return error


def _cases() -> Iterator[Any]:
    for key, adapter in ADAPTERS.items():
        if not _installed(adapter.modules):
            continue
        for cls in driver_exceptions(adapter):
            marks = []
            reason = FIXED_ELSEWHERE.get((key, _name(cls)))
            if reason is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            yield pytest.param(key, cls, id=f"{key}-{_name(cls)}", marks=marks)


@pytest.fixture(scope="module")
def runners() -> Iterator[dict[str, Any]]:
    """Each adapter's runner, from a store opened lazily (no I/O) and closed afterwards."""
    opened: dict[str, Any] = {}
    stores: list[tuple[Any, bool]] = []
    for key, adapter in ADAPTERS.items():
        if not _installed(adapter.modules) or key == "sqlite":
            continue
        opener = authstore.open_async_cache if adapter.asynchronous else authstore.open_cache
        store = opener(adapter.url, timeout=1)
        stores.append((store, adapter.asynchronous))
        opened[key] = store._runner
    yield opened

    async def close_async() -> None:
        for store, asynchronous in stores:
            if asynchronous:
                await store.aclose()

    for store, asynchronous in stores:
        if not asynchronous:
            store.close()
    asyncio.run(close_async())


def _handled(runners: dict[str, Any], key: str, error: BaseException) -> BaseException:
    return ADAPTERS[key].handle(runners.get(key), error)


@pytest.mark.parametrize(("key", "cls"), list(_cases()))
def test_every_driver_exception_becomes_an_authstore_error(
    runners: dict[str, Any], key: str, cls: type[BaseException]
) -> None:
    error = instance(cls, "driver says no")
    handled = _handled(runners, key, error)
    assert handled is not error, f"{key}: {_name(cls)} escapes unwrapped"
    assert isinstance(handled, AuthStoreError), (
        f"{key}: {_name(cls)} becomes {type(handled).__name__}, not an AuthStoreError"
    )


def _message_cases() -> Iterator[Any]:
    for key, adapter in ADAPTERS.items():
        if not _installed(adapter.modules):
            continue
        reason = MESSAGES_FIXED_ELSEWHERE.get(key)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(key, id=key, marks=marks)


@pytest.mark.parametrize("key", list(_message_cases()))
def test_translated_messages_name_the_redacted_url_never_the_password(
    runners: dict[str, Any], key: str
) -> None:
    adapter = ADAPTERS[key]
    url = authstore.StoreURL.parse(adapter.url)
    shown = url.redacted()
    secret = url.password  # memcached and SQLite URLs hold none
    assert secret is None or secret not in shown
    said = "driver says no" + (f" (password {secret})" if secret else "")
    wrong: list[str] = []
    for cls in driver_exceptions(adapter):
        handled = _handled(runners, key, instance(cls, said))
        if not isinstance(handled, AuthStoreError) or type(handled).__name__ in HANDLED_INSIDE:
            continue  # the first test reports an unmapped class
        for text in (str(handled), repr(handled)):
            if secret and secret in text:
                wrong.append(f"{_name(cls)} shows the password: {text[:200]}")
                break
            if shown not in text and key != "sqlite":
                wrong.append(f"{_name(cls)} does not name {shown}: {text[:200]}")
                break
    assert not wrong, f"{key}: {len(wrong)} messages wrong:\n" + "\n".join(wrong[:10])
