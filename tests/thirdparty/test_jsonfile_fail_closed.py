"""A fail-open jsonfile backend fails the contract run: the planted bug answers
"not revoked" from is_blacklisted while the backend is down."""

import pytest

TEST_FILE = """
import pytest
from authstore.authoring import BackendError
from authstore.contracts.testing import StoreContract
from authstore_jsonfile import JsonFileCache

honest = JsonFileCache.is_blacklisted

def fail_open(self, jti):
    try:
        return honest(self, jti)
    except BackendError:
        return False  # the planted bug: "not revoked" while the backend is down

PLANT

class TestJsonFile(StoreContract):
    @pytest.fixture
    def authstore_url(self, tmp_path):
        return f"jsonfile://{tmp_path / 'store.json'}"

    @pytest.fixture
    def authstore_unreachable_url(self, tmp_path):
        return f"jsonfile://{tmp_path / 'store.json'}?offline=1"
"""

PLANTED = TEST_FILE.replace("PLANT", "JsonFileCache.is_blacklisted = fail_open")
HONEST = TEST_FILE.replace("PLANT", "")


@pytest.fixture(autouse=True)
def not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHSTORE_STRICT", raising=False)


def test_honest_jsonfile_fails_closed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=HONEST)
    result = pytester.runpytest_subprocess("-k", "fails_closed", "--authstore-strict")
    result.assert_outcomes(passed=12)  # four stores, ping and a rate-limit group, sync and async


def test_planted_fail_open_blacklist_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=PLANTED)
    result = pytester.runpytest_subprocess("-k", "cache", "--authstore-strict")
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    # the sync and the async cache store each fail their fail-closed test, nothing else
    assert outcomes.get("failed") == 2, outcomes
    result.stdout.fnmatch_lines(
        [
            "*test_cache_fails_closed_when_unreachable[[]sync[]]*",
            "*is_blacklisted answered False*",
        ]
    )
