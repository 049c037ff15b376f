"""Async stores run on pytest-asyncio's loop when it is active (async fixtures work),
and on the harness's own loop thread without it."""

import pytest

PROBE = """
import asyncio, threading, uuid
import pytest
import pytest_asyncio
from authstore import open_async_cache, open_cache
from authstore.contracts.testing import KeyValueContract

class Bound:
    '''An async cache usable only on the loop its (async) fixture made it on.'''
    def __init__(self, store, loop):
        self._store, self._loop = store, loop
        self.capabilities, self.namespace = store.capabilities, store.namespace
    def __getattr__(self, name):
        method = getattr(self._store, name)
        async def call(*args, **kwargs):
            assert asyncio.get_running_loop() is self._loop, "attached to a different event loop"
            return await method(*args, **kwargs)
        return call
    async def aclose(self):
        assert asyncio.get_running_loop() is self._loop, "closed on a different event loop"
        await self._store.aclose()

class TestBound(KeyValueContract):
    backend_does_io = False

    @pytest_asyncio.fixture
    async def authstore_factory(self):
        loop = asyncio.get_running_loop()
        namespace = "n" + uuid.uuid4().hex
        def make(kind, asynchronous):
            if not asynchronous:
                return open_cache("memory://bound", namespace=namespace)
            return Bound(open_async_cache("memory://bound", namespace=namespace), loop)
        return make
"""

THREAD = """
import threading
import pytest
from authstore.contracts.testing import KeyValueContract

class TestThread(KeyValueContract):
    backend_does_io = False

    @pytest.fixture
    def authstore_url(self):
        return "memory://thread"

    def test_async_calls_run_on_the_loop_thread(self, cache_store, authstore_mode):
        def where(store):
            return threading.current_thread().name
        expected = "authstore-contract-loop" if authstore_mode == "async" else "MainThread"
        assert cache_store.run(where) == expected
"""


@pytest.fixture(autouse=True)
def not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHSTORE_STRICT", raising=False)


def test_async_fixture_stores_run_on_pytest_asyncio_loop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bound=PROBE)
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-k", "kv_ and not expiry and not context"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 10 and "failed" not in outcomes, result.stdout.str()
    assert "errors" not in outcomes


def test_without_pytest_asyncio_the_loop_thread_stays(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_thread=THREAD)
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-k", "loop_thread or kv_set")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 4 and "failed" not in outcomes, result.stdout.str()


def test_the_probe_catches_a_store_on_another_loop(pytester: pytest.Pytester) -> None:
    """The probe can fail: a client bound to another loop is what used to break."""
    wrong = PROBE.replace("loop = asyncio.get_running_loop()", "loop = asyncio.new_event_loop()")
    pytester.makepyfile(test_bound=wrong)
    result = pytester.runpytest_subprocess("-p", "asyncio", "-k", "kv_set and async")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*attached to a different event loop*"])
