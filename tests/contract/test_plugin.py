"""The pytest plugin and harness themselves: strict mode, capability skips, the URL option."""

import subprocess
import sys
import textwrap
import time

import pytest

from authstore.contracts.records import StoreKind
from authstore.contracts.testing import _LAZY
from authstore.contracts.testing.harness import Stores

STRICT_FILE = """
import pytest
from authstore.contracts.testing import unavailable

@pytest.fixture
def server():
    unavailable("redis at 127.0.0.1:1 does not answer")

def test_needs_server(server):
    pass
"""


def contract_at_url(contract: str, url: str, prelude: str = "") -> str:
    """A test file that runs the contract class ``contract`` on ``url``, after the
    code ``prelude``."""
    return f"""
import pytest
from authstore.contracts.testing import {contract}
{textwrap.dedent(prelude)}

class TestAtUrl({contract}):
    @pytest.fixture
    def authstore_url(self):
        return {url!r}
"""


@pytest.fixture(autouse=True)
def not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI runs strict; these tests choose strictness themselves."""
    monkeypatch.delenv("AUTHSTORE_STRICT", raising=False)


def test_unavailable_skips_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STRICT_FILE)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend unavailable: redis at 127.0.0.1:1 does not answer*"])


@pytest.mark.parametrize("how", ["option", "env"])
def test_strict_mode_fails_unavailable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pytester.makepyfile(STRICT_FILE)
    if how == "env":
        monkeypatch.setenv("AUTHSTORE_STRICT", "1")
    result = pytester.runpytest_subprocess(*(["--authstore-strict"] if how == "option" else []))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unavailable in strict mode: redis at 127.0.0.1:1*"])


def test_missing_driver_is_unavailable(pytester: pytest.Pytester) -> None:
    """The default factory turns MissingDriverError into ``unavailable``."""
    no_driver = """
        from authstore import MissingDriverError, register_backend

        class NoDriver:
            name = "nodriver"
            def open(self, url, kind, *, asynchronous):
                raise MissingDriverError("nodriver", "nodriver", "nodriver_client")
            def migrate(self, url):
                return []

        register_backend("nodriver", NoDriver())
        """
    pytester.makepyfile(contract_at_url("TotpContract", "nodriver://", no_driver))
    loose = pytester.runpytest_subprocess("-k", "test_totp_unknown_user")
    loose.assert_outcomes(skipped=2)
    strict = pytester.runpytest_subprocess("-k", "test_totp_unknown_user", "--authstore-strict")
    strict.assert_outcomes(errors=2)
    strict.stdout.fnmatch_lines(["*authstore[[]nodriver[]]*"])


def test_capability_skips_stay_skips_in_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from authstore import UnsupportedOperationError, open_async_cache, open_cache
        from authstore.contracts.testing import IncrContract, SessionContract

        class TestPartial(IncrContract, SessionContract):
            backend_does_io = False
            @pytest.fixture
            def authstore_factory(self):
                def make(kind, asynchronous):
                    if kind.value != "cache":
                        raise UnsupportedOperationError("cache only")
                    store = (open_async_cache if asynchronous else open_cache)("memory://")
                    store.capabilities = frozenset({"kv"})
                    return store
                return make
        """
    )
    result = pytester.runpytest_subprocess("--authstore-strict")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) > 10 and "failed" not in outcomes and "errors" not in outcomes


def test_unknown_scheme_is_an_error_not_a_skip(pytester: pytest.Pytester) -> None:
    """A backend package that is not installed must not pass as "skipped"."""
    pytester.makepyfile(contract_at_url("MagicLinkContract", "notinstalled://"))
    result = pytester.runpytest_subprocess("-k", "test_magic_issue")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*unknown URL scheme 'notinstalled'*"])


def test_packaged_suite_runs_against_the_url_option(pytester: pytest.Pytester) -> None:
    args = ["--pyargs", "authstore.contracts.testing.suite", "-p", "no:cacheprovider"]
    missing = pytester.runpytest_subprocess(*args)
    missing.stderr.fnmatch_lines(["*needs --authstore-url=URL*"])
    result = pytester.runpytest_subprocess(
        *args, "--authstore-url=memory://from-option", "-k", "test_kv_ and not expiry"
    )
    assert result.parseoutcomes().get("passed", 0) > 40
    assert result.ret == 0


def test_plugin_import_is_cheap() -> None:
    """The plugin loads in every pytest run: no driver, no backend, no test classes."""
    code = "import sys, authstore.contracts.testing.plugin\nprint(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    heavy = {"sqlite3", "aiosqlite", "asyncio", "authstore.adapters"}
    heavy |= {f"authstore.contracts.testing.{name}" for name in set(_LAZY.values())}
    assert not loaded & heavy


class Dummy:
    """A stand-in store: the harness only needs attributes, methods and close/aclose."""

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.closed = 0
        self.value = 41

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Stores:
    return Stores(lambda kind, asynchronous: Dummy(asynchronous), request.param)


def test_harness_closes_each_store_once(harness: Stores) -> None:
    first, second = harness.open(StoreKind.CACHE), harness.open(StoreKind.CACHE)
    assert first.raw is not second.raw and first.value == 41
    assert first.raw.asynchronous is (harness.mode == "async")
    second.close()
    harness.close()
    assert (first.raw.closed, second.raw.closed) == (1, 1)


def test_harness_runs_calls_at_once(harness: Stores) -> None:
    view = harness.open(StoreKind.CACHE)

    def sync_call(_: object) -> float:
        time.sleep(0.2)
        return time.monotonic()

    async def async_call(_: object) -> float:
        import asyncio

        await asyncio.sleep(0.2)
        return time.monotonic()

    start = time.monotonic()
    ends = view.concurrently(20, sync_call if harness.mode == "sync" else async_call)
    assert len(ends) == 20 and max(ends) - start < 1.0, "the calls did not overlap"
    harness.close()


def test_harness_reraises_after_all_calls_finish(harness: Stores) -> None:
    view = harness.open(StoreKind.CACHE)
    calls: list[int] = []

    def fail_once(_: object) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("first")
        time.sleep(0.05)
        return len(calls)

    async def fail_once_async(store: object) -> int:
        return fail_once(store)

    with pytest.raises(KeyError) as caught:
        view.concurrently(10, fail_once if harness.mode == "sync" else fail_once_async)
    assert len(calls) == 10
    assert "1 of 10 concurrent calls failed" in str(caught.value.__notes__)
    harness.close()
