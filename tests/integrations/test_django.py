"""``authstore.integrations.django`` with Django's own APIs: the cache backend through
``caches[...]`` (Django's cache semantics), the session engine through Django's test
clients, the system checks and the management commands, on every integration backend."""

from __future__ import annotations

import hashlib
import io
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from authstore import MissingDriverError, register_backend
from authstore.registry import unregister_backend
from tests import test_tokens_at_rest as at_rest
from tests.contention import race
from tests.integrations.django_setup import django_settings
from tests.outages import free_port


@pytest.fixture
def configured(integration_backend: tuple[str, str]) -> Iterator[tuple[str, str, str]]:
    """Django configured over one backend: (backend name, URL, the cache's namespace)."""
    name, url = integration_backend
    cache_namespace = f"c{uuid.uuid4().hex[:12]}"
    with django_settings(url, cache_namespace):
        yield name, url, cache_namespace


def raw_storage(name: str, url: str, namespace: str) -> bytes:
    """Everything the backend holds for the test, as stored (rows, keys and values)."""
    if name == "memory":
        from authstore.adapters.memory import backend

        data, _ = backend._data(url.removeprefix("memory://").split("?", 1)[0], None)
        return repr(vars(data)).encode()
    reader = {"sqlite": at_rest._sqlite, "postgres": at_rest._postgres, "redis": at_rest._redis}
    return reader[name](url, namespace)


def namespace_of(url: str) -> str:
    return url.split("namespace=", 1)[1].split("&", 1)[0]


# -- the cache backend ------------------------------------------------------------------


def test_cache_timeouts_follow_django(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches

    cache = caches["authstore"]
    store = cache._shared().sync().cache
    cache.set("default", "v")  # TIMEOUT: 300 unless set
    assert 299 < store.ttl(cache.make_key("default")) <= 300
    cache.set("forever", "v", timeout=None)
    assert store.ttl(cache.make_key("forever")) == math.inf
    cache.set("short", "v", timeout=30)
    assert 29 < store.ttl(cache.make_key("short")) <= 30
    for timeout in (0, -1):
        cache.set("gone", "v")
        cache.set("gone", "v2", timeout=timeout)
        assert cache.get("gone") is None
        assert cache.add("never", "v", timeout=timeout) is True  # absent: stored, expired
        assert cache.get("never") is None
    cache.set("present", "v")
    assert cache.add("present", "w", timeout=0) is False
    cache.set_many({"m1": 1, "m2": 2}, timeout=0)
    assert cache.get_many(["m1", "m2"]) == {}


def test_cache_add_touch_incr(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches

    cache = caches["authstore"]
    store = cache._shared().sync().cache
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    assert cache.touch("k", timeout=None) is True
    assert store.ttl(cache.make_key("k")) == math.inf
    assert cache.touch("k", timeout=10) is True
    assert 9 < store.ttl(cache.make_key("k")) <= 10
    assert cache.touch("missing") is False
    assert cache.touch("k", timeout=0) is True
    assert cache.get("k") is None
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("missing")
    assert cache.has_key("missing") is False
    cache.set("n", 5)
    assert cache.incr("n") == 6
    assert cache.incr("n", 10) == 16
    assert cache.decr("n", 6) == 10
    assert cache.get_or_set("made", lambda: "computed") == "computed"
    assert cache.get_or_set("made", "other") == "computed"


def test_cache_versions_and_key_functions(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches
    from django.core.cache.backends.base import InvalidCacheKey
    from django.test import override_settings

    cache = caches["authstore"]
    cache.set("answer", 42, version=1)
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=1) == 42
    assert cache.incr_version("answer", version=1) == 2
    assert cache.get("answer", version=1) is None
    assert cache.get("answer", version=2) == 42
    cache.delete("answer", version=2)
    assert cache.get("answer", version=2) is None

    settings_cache = dict(__import__("django.conf").conf.settings.CACHES["authstore"])
    custom = {
        **settings_cache,
        "KEY_PREFIX": "site1",
        "VERSION": 3,
        "KEY_FUNCTION": "tests.integrations.test_django.reversed_key",
    }
    with override_settings(CACHES={"authstore": custom}):
        prefixed = caches["authstore"]
        assert prefixed.make_key("x") == "x|3|site1"
        prefixed.set("x", "from site1")
        assert prefixed._shared().sync().cache.get("x|3|site1") == "from site1"
        assert prefixed.get("x") == "from site1"
    assert cache.get("x") is None  # another prefix, another key
    with pytest.raises(InvalidCacheKey):
        cache.set("k" * 1100, 1)
    with pytest.raises(InvalidCacheKey):
        cache.get("nul\x00key")


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    return f"{key}|{version}|{key_prefix}"


def test_cache_values_json_bytes_none(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches

    cache = caches["authstore"]
    values: dict[str, Any] = {
        "dict": {"a": [1, 2.5, None, True]},
        "str": "text",
        "bytes": b"\x00\x01raw",
        "nul": b"\x00",
        "empty": b"",
        "none": None,
        "int": 7,
    }
    cache.set_many(values)
    assert cache.get_many([*values, "absent"]) == values
    assert cache.get("none", default="default") is None  # a cached None is returned
    assert cache.get("absent", default="default") == "default"
    with pytest.raises(TypeError):
        cache.set("tuple", (1, 2))  # never pickled: refused before any I/O
    with pytest.raises(TypeError):
        cache.set("object", object())
    assert cache.has_key("tuple") is False
    cache.delete_many(["dict", "str"])
    assert cache.get_many(["dict", "str", "int"]) == {"int": 7}
    assert cache.delete("int") is True
    assert cache.delete("int") is False
    cache.clear()
    assert cache.get_many(list(values)) == {}


@pytest.mark.asyncio
async def test_cache_async_api_shares_the_data(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches

    cache = caches["authstore"]
    cache.set("shared", {"from": "sync"})
    assert await cache.aget("shared") == {"from": "sync"}
    assert await cache.aadd("fresh", 1) is True
    assert await cache.aadd("fresh", 2) is False
    assert await cache.aincr("fresh", 4) == 5
    assert await cache.adecr("fresh") == 4
    with pytest.raises(ValueError, match="not found"):
        await cache.aincr("nope")
    await cache.aset_many({"a": 1, "b": None}, timeout=None)
    assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": None}
    assert await cache.atouch("a", 0) is True
    assert await cache.ahas_key("a") is False
    await cache.adelete_many(["b"])
    assert cache.get("b", "gone") == "gone"
    await cache.aset("t", "x", timeout=0)
    assert await cache.aget("t") is None
    assert await cache.adelete("fresh") is True
    assert cache.get("shared") == {"from": "sync"}
    await cache.aclear()
    assert cache.get("shared") is None


def test_cache_add_and_incr_stay_atomic_under_threads(configured: tuple[str, str, str]) -> None:
    from django.core.cache import caches

    cache = caches["authstore"]
    assert sum(race(30, lambda: caches["authstore"].add("once", "x"))) == 1
    cache.set("count", 0)
    race(30, lambda: caches["authstore"].incr("count"))
    assert cache.get("count") == 30


@pytest.mark.asyncio
async def test_cache_aadd_and_aincr_stay_atomic_under_tasks(
    configured: tuple[str, str, str],
) -> None:
    import asyncio

    from django.core.cache import caches

    cache = caches["authstore"]
    added = await asyncio.gather(*(cache.aadd("once", "x") for _ in range(30)))
    assert sum(added) == 1
    await cache.aset("count", 0)
    await asyncio.gather(*(cache.aincr("count") for _ in range(30)))
    assert await cache.aget("count") == 30


def test_cache_from_an_async_view_under_the_sync_client(
    configured: tuple[str, str, str],
) -> None:
    """Django's sync test client runs each async view in a new event loop: each gets async
    stores of its own, and the ones of ended loops are closed."""
    from django.test import Client

    client = Client()
    assert [client.get("/acache").json()["visits"] for _ in range(3)] == [1, 2, 3]


# -- the session engine -------------------------------------------------------------------


def test_session_login_flow_and_nothing_in_plaintext(configured: tuple[str, str, str]) -> None:
    from django.conf import settings
    from django.test import Client

    name, url, _ = configured
    client = Client()
    assert client.get("/whoami").json() == {"user": None}
    assert client.get("/login?user=alice").status_code == 200
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert len(session_key) == 32
    assert client.get("/whoami").json() == {"user": "alice"}

    raw = raw_storage(name, url, namespace_of(url))
    assert session_key.encode() not in raw, f"{name}: the session key rests in plaintext"
    assert session_key[:16].encode() not in raw, f"{name}: half the session key rests"
    assert hashlib.sha256(session_key.encode()).hexdigest().encode() in raw, "the session is there"

    stolen = Client()
    stolen.cookies[settings.SESSION_COOKIE_NAME] = session_key
    assert stolen.get("/whoami").json() == {"user": "alice"}
    client.get("/logout")
    assert client.get("/whoami").json() == {"user": None}
    assert stolen.get("/whoami").json() == {"user": None}, "a logged-out key stays dead"
    guessed = Client()
    guessed.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32
    guessed.get("/login?user=mallory")
    assert guessed.cookies[settings.SESSION_COOKIE_NAME].value != "x" * 32, "no fixation"


def test_session_async_views(configured: tuple[str, str, str]) -> None:
    from django.test import Client

    client = Client()
    assert client.get("/alogin?user=bob").status_code == 200
    assert client.get("/awhoami").json() == {"user": "bob"}
    assert client.get("/whoami").json() == {"user": "bob"}  # sync and async views agree


@pytest.mark.asyncio
async def test_session_async_api(configured: tuple[str, str, str]) -> None:
    from authstore.integrations.django.sessions import SessionStore

    session = SessionStore()
    await session.aset("user", "carol")
    await session.asave()
    key = session.session_key
    assert key is not None and await session.aexists(key)
    again = SessionStore(key)
    assert await again.aget("user") == "carol"
    await again.adelete()
    assert not await session.aexists(key)
    assert await SessionStore(key).aget("user") is None
    await SessionStore.aclear_expired()


def test_session_expiry_and_clear_expired(configured: tuple[str, str, str]) -> None:
    from authstore.integrations.django import get_stores
    from authstore.integrations.django.sessions import SessionStore

    name, url, _ = configured
    session = SessionStore()
    session["user"] = "dave"
    session.set_expiry(1)
    session.save()
    key = session.session_key
    assert key is not None and SessionStore(key).get("user") == "dave"
    digest = hashlib.sha256(key.encode()).hexdigest().encode()
    time.sleep(1.3)
    assert SessionStore(key).get("user") is None, "an expired session is never read"
    assert not SessionStore().exists(key)
    SessionStore.clear_expired()
    get_stores().cache.set("marker", 1)  # so the namespace is not empty
    assert digest not in raw_storage(name, url, namespace_of(url)), "clear_expired removed it"


def test_session_deleted_while_loaded_is_not_written_back(
    configured: tuple[str, str, str],
) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    from authstore.integrations.django.sessions import SessionStore

    session = SessionStore()
    session["user"] = "erin"
    session.create()
    key = session.session_key
    assert key is not None
    busy = SessionStore(key)
    assert busy["user"] == "erin"  # a request loaded it...
    SessionStore(key).delete()  # ...another logged out...
    busy["cart"] = 1
    with pytest.raises(UpdateError):
        busy.save()  # ...and the first one's save must not bring it back
    assert not SessionStore().exists(key)


def test_views_reach_the_stores_and_an_outage_is_503(configured: tuple[str, str, str]) -> None:
    from django.test import Client, override_settings

    client = Client()
    assert client.get("/stores").json() == {"seen": False}
    assert client.get("/astores").json() == {"seen": False}
    dead = f"redis://:pw-secret@127.0.0.1:{free_port()}/0?timeout=1"
    middleware = ["authstore.integrations.django.middleware.BackendUnavailableMiddleware"]
    with override_settings(AUTHSTORE={"URL": dead}, MIDDLEWARE=middleware):
        client = Client()  # a client loads the middleware at its first request
        for path in ("/stores", "/astores"):
            answer = client.get(path)
            assert answer.status_code == 503
            assert answer["Retry-After"] == "5"
            assert b"pw-secret" not in answer.content and b"127.0.0.1" not in answer.content


# -- checks and commands ----------------------------------------------------------------


def run_checks() -> list[Any]:
    from django.core import checks

    return list(checks.run_checks(tags=["authstore"]))


def test_checks_pass_on_a_good_setting(configured: tuple[str, str, str]) -> None:
    assert run_checks() == []


def test_checks_report_an_unknown_store_option() -> None:
    with django_settings("memory://unused", "c1"):
        from django.test import override_settings

        with override_settings(AUTHSTORE={"URL": "memory://n", "OPTIONS": {"bogus": 1}}):
            found = run_checks()
    assert {f.id for f in found} == {"authstore.E003"}
    assert "bogus" in found[0].msg


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"URL": "nosuchscheme://x"}, "unknown URL scheme"),
        ({"URL": "not a url"}, "scheme://"),
        ({}, 'needs a "URL"'),
        ({"URL": "memory://"}, "memory://NAME"),
        ({"URL": "sqlite:///x.db", "SESSIONS": "yes"}, "must be False or a dict"),
        ({"URL": "sqlite:///x.db", "TYPO": 1}, "unknown key"),
    ],
)
def test_checks_report_bad_settings(setting: dict[str, Any], expected: str) -> None:
    with django_settings("memory://unused", "c1"):
        from django.test import override_settings

        with override_settings(AUTHSTORE=setting):
            found = run_checks()
    assert [f.id for f in found] == ["authstore.E001"], found
    assert expected in found[0].msg


def test_checks_report_a_missing_driver() -> None:
    class NeedsDriver:
        name = "needsdriver"

        def open(self, url: Any, kind: Any, *, asynchronous: bool) -> Any:
            raise MissingDriverError("needsdriver", "needsdriver", "needsdriver_module")

        def migrate(self, url: Any) -> list[str]:
            return []

    register_backend("needsdriver", NeedsDriver())
    try:
        with django_settings("memory://unused", "c1"):
            from django.test import override_settings

            with override_settings(AUTHSTORE={"URL": "needsdriver://host", "TOTP": False}):
                found = run_checks()
    finally:
        unregister_backend("needsdriver")
    assert {f.id for f in found} == {"authstore.E002"}
    assert 'pip install "authstore[needsdriver]"' in found[0].msg


def test_checks_warn_when_the_backend_is_down() -> None:
    dead = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    with django_settings("memory://unused", "c1"):
        from django.test import override_settings

        setting = {"URL": dead, "SESSIONS": False, "TOTP": False, "MAGIC_LINKS": False}
        with override_settings(AUTHSTORE={**setting, "CHECK_TIMEOUT": 1}):
            found = run_checks()
    assert [f.id for f in found] == ["authstore.W001"], found
    assert "topsecret" not in found[0].msg


def test_management_commands(configured: tuple[str, str, str]) -> None:
    from django.core.management import call_command

    from authstore.integrations.django import get_stores

    name, _, _ = configured
    out = io.StringIO()
    call_command("authstore_migrate", stdout=out, stderr=io.StringIO())
    assert out.getvalue().strip(), "migrate says what it did"
    get_stores().cache.set("short", 1, ttl=0.01)
    time.sleep(0.05)
    out = io.StringIO()
    call_command("authstore_purge", stdout=out, stderr=io.StringIO())
    assert "cache" in out.getvalue() and "purged" in out.getvalue()
    if name == "sqlite":  # the contract suite once is enough: a small part of it
        out = io.StringIO()
        call_command(
            "authstore_check", "-k", "test_kv_missing_key", stdout=out, stderr=io.StringIO()
        )
        assert "authstore check" in out.getvalue() and "ok" in out.getvalue()
        assert "FAIL" not in out.getvalue()


def test_management_command_failure_is_a_command_error() -> None:
    from django.core.management import CommandError, call_command
    from django.test import override_settings

    with django_settings("memory://unused", "c1"):
        dead = f"postgresql://u:pw-secret@127.0.0.1:{free_port()}/x?connect_timeout=1"
        with override_settings(AUTHSTORE={"URL": dead}):
            err = io.StringIO()
            with pytest.raises(CommandError) as raised:
                call_command("authstore_migrate", stdout=io.StringIO(), stderr=err)
    assert raised.value.returncode == 4  # the CLI's "backend unavailable"
    assert "pw-secret" not in err.getvalue()
