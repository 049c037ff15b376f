"""authstore's contract suite against the third-party jsonfile backend (all four stores).

The backend must be installed (pip install -e tests/thirdparty/authstore_jsonfile):
its scheme comes from its entry point, so without it these tests fail, never skip.
"""

from pathlib import Path

import pytest

from authstore import known_schemes
from authstore.contracts.testing import StoreContract


def test_jsonfile_is_installed() -> None:
    assert "jsonfile" in known_schemes(), "pip install -e tests/thirdparty/authstore_jsonfile"


class TestJsonFile(StoreContract):
    @pytest.fixture
    def authstore_url(self, tmp_path: Path) -> str:
        # one file per test: the whole file is read and written per operation
        return f"jsonfile://{tmp_path / 'store.json'}"

    @pytest.fixture
    def authstore_unreachable_url(self, tmp_path: Path) -> str:
        # jsonfile's simulated outage: every operation raises BackendUnavailableError
        return f"jsonfile://{tmp_path / 'store.json'}?offline=1"
