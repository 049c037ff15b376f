"""authstore's contract suite against the third-party jsonfile backend (all four stores).

The backend must be installed (pip install -e tests/thirdparty/authstore_jsonfile):
its scheme comes from its entry point, so without it these tests fail, never skip.
"""

import json
from pathlib import Path

import pytest

from authstore import known_schemes, open_cache
from authstore.authoring import ConfigurationError
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


@pytest.mark.parametrize(
    "url",
    [
        "jsonfile://somehost/store.json",  # a host is not a path
        "jsonfile:///tmp/",  # no file name
        "jsonfile:///tmp/store.json?namespace=a:b",
        "jsonfile:///tmp/store.json?offline=maybe",
        "jsonfile:///tmp/store.json?unknown=1",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_cache(url)


def test_relative_path_is_below_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_cache("jsonfile://./sub/store.json", namespace="rel") as cache:
        (tmp_path / "sub").mkdir()
        cache.set("k", 1)
    assert json.loads((tmp_path / "sub" / "store.json").read_text())["rel"]["cache"]
