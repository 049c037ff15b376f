"""authstore's contract suite against the third-party dictcache backend.

The backend must be installed (pip install -e tests/thirdparty/authstore_dictcache):
its scheme comes from its entry point, so without it these tests fail, never skip.
"""

import pytest

from authstore import known_schemes
from authstore.contracts.testing import StoreContract


def test_dictcache_is_installed() -> None:
    assert "dictcache" in known_schemes(), "pip install -e tests/thirdparty/authstore_dictcache"


class TestDictCache(StoreContract):
    @pytest.fixture
    def authstore_url(self) -> str:
        return "dictcache://contract"

    @pytest.fixture
    def authstore_unreachable_url(self) -> str:
        # dictcache's simulated outage: every operation raises BackendUnavailableError
        return "dictcache://contract?offline=1"
