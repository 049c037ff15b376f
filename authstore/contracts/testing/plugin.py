"""The pytest plugin (``pytest11`` entry point ``authstore``): options and the two author fixtures.

Loaded by every pytest run wherever authstore is installed, so it imports only
pytest and the standard library at module level; stores and drivers load only
when a contract test asks for them.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING

import pytest

# Before any contract module is imported: pytest rewrites their asserts, so a failing
# contract assertion shows the values it compared, not a bare AssertionError.
pytest.register_assert_rewrite(
    *(
        f"authstore.contracts.testing.{name}"
        for name in ("base", "cache", "harness", "migrate", "races", "stores", "suite")
    )
)

import authstore.contracts.testing as testing  # noqa: E402

if TYPE_CHECKING:
    from authstore.contracts.testing.harness import StoreFactory


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("authstore", "authstore contract suite")
    group.addoption(
        "--authstore-url",
        default=None,
        metavar="URL",
        help="run the authstore contract suite against this store URL "
        "(the default authstore_url fixture), e.g. "
        "pytest --pyargs authstore.contracts.testing.suite --authstore-url=sqlite:///x.db",
    )
    group.addoption(
        "--authstore-unreachable-url",
        default=None,
        metavar="URL",
        help="a URL of the same backend that opens lazily but cannot be reached "
        "(the default authstore_unreachable_url fixture): the fail-closed tests use it",
    )
    group.addoption(
        "--authstore-strict",
        action="store_true",
        default=False,
        help="fail instead of skip when a backend or server is unavailable "
        "(also AUTHSTORE_STRICT=1); capability skips stay skips",
    )


def pytest_configure(config: pytest.Config) -> None:
    testing._strict_option = bool(config.getoption("authstore_strict", False))


def pytest_unconfigure(config: pytest.Config) -> None:
    testing._strict_option = None


def pytest_report_header(config: pytest.Config) -> str | None:
    return "authstore: strict (unavailable backends fail)" if testing.is_strict() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The packaged suite module has no store of its own: say so once, not per test."""
    suite = sys.modules.get("authstore.contracts.testing.suite")
    if suite is None or config.getoption("authstore_url", None) is not None:
        return
    if any(getattr(item, "module", None) is suite for item in items):
        raise pytest.UsageError(
            "authstore.contracts.testing.suite needs --authstore-url=URL (the store to test)"
        )


@pytest.fixture
def authstore_url(request: pytest.FixtureRequest) -> str | None:
    """The URL under test: override this fixture, or pass ``--authstore-url``.

    None means the backend is given by an ``authstore_factory`` fixture instead;
    the few tests that must open a second namespace by URL then skip.
    """
    url: str | None = request.config.getoption("authstore_url", None)
    return url


@pytest.fixture
def authstore_factory(authstore_url: str | None) -> StoreFactory:
    """``(kind, asynchronous) -> new store`` opened from ``authstore_url``.

    Every store of one test shares one fresh namespace, so tests never see each
    other's data, even on a shared server, and two stores of one kind opened in
    one test are two clients over the same data.
    """
    if authstore_url is None:
        pytest.fail(
            "no store to test: define an authstore_url or authstore_factory fixture "
            "(or pass --authstore-url=URL)",
            pytrace=False,
        )
    from authstore.contracts.testing.harness import url_factory

    return url_factory(authstore_url, "t" + uuid.uuid4().hex)
