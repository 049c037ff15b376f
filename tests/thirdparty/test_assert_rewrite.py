"""Contract assertions are rewritten by pytest: a failure shows the values compared."""

import pytest

PLANTED = """
import pytest
from authstore.contracts.testing import CacheContract
from authstore_dictcache import DictCache

DictCache.get = lambda self, key: "planted-value"  # the planted bug: a wrong answer

class TestDictCache(CacheContract):
    @pytest.fixture
    def authstore_url(self):
        return "dictcache://rewrite"
"""


def test_a_failing_contract_assertion_shows_the_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rewrite=PLANTED)
    result = pytester.runpytest_subprocess("-k", "test_kv_add_only_when_absent and not async")
    result.assert_outcomes(failed=1, deselected=result.parseoutcomes().get("deselected", 0))
    result.stdout.fnmatch_lines(["*AssertionError: assert 'planted-value' == 'first'*"])
