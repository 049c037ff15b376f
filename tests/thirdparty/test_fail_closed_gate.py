"""No silent security gap: fail-closed tests run, or fail in strict mode, or the class
declares honestly that its backend does no I/O; a fail-open backend fails the run."""

import pytest

HEADER = """
import pytest
from authstore.contracts.testing import CacheContract

"""

NO_UNREACHABLE = (
    HEADER
    + """
class TestDictCache(CacheContract):
    @pytest.fixture
    def authstore_url(self):
        return "dictcache://gate"
"""
)

PLANTED = (
    HEADER
    + """
from authstore.contracts.errors import BackendError
from authstore_dictcache import DictCache

honest = DictCache.is_blacklisted

def fail_open(self, jti):
    try:
        return honest(self, jti)
    except BackendError:
        return False  # the planted bug: "not revoked" while the backend is down

DictCache.is_blacklisted = fail_open

class TestDictCache(CacheContract):
    @pytest.fixture
    def authstore_url(self):
        return "dictcache://gate"

    @pytest.fixture
    def authstore_unreachable_url(self):
        return "dictcache://gate?offline=1"
"""
)

FAILS_CLOSED = "-k", "cache_fails_closed"  # the capability-independent one


@pytest.fixture(autouse=True)
def not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHSTORE_STRICT", raising=False)


def test_no_unreachable_url_skips_when_not_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=NO_UNREACHABLE)
    result = pytester.runpytest_subprocess(*FAILS_CLOSED, "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*defines no authstore_unreachable_url fixture*"])


def test_no_unreachable_url_fails_when_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=NO_UNREACHABLE)
    result = pytester.runpytest_subprocess(*FAILS_CLOSED, "--authstore-strict")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*fail-closed is unproven: TestDictCache defines no authstore_unreachable_url*",
            "*def authstore_unreachable_url(self) -> str:*",
            "*backend_does_io = False*",
        ]
    )


def test_declared_no_io_skips_even_when_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gate=NO_UNREACHABLE.replace(
            "(CacheContract):", "(CacheContract):\n    backend_does_io = False"
        )
    )
    result = pytester.runpytest_subprocess(*FAILS_CLOSED, "--authstore-strict", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*declares backend_does_io = False*"])


def test_honest_dictcache_fails_closed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=PLANTED.replace("DictCache.is_blacklisted = fail_open", ""))
    result = pytester.runpytest_subprocess(*FAILS_CLOSED, "--authstore-strict")
    result.assert_outcomes(passed=2)


def test_planted_fail_open_blacklist_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=PLANTED)
    result = pytester.runpytest_subprocess("--authstore-strict")
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 2, outcomes
    result.stdout.fnmatch_lines(["*is_blacklisted answered False*"])
