"""The whole suite against ``--authstore-url`` (what an operator or CI runs for a deployment)::

    pytest --pyargs authstore.contracts.testing.suite --authstore-url=redis://localhost/0

Every test works in its own fresh namespace; afterwards the namespace is cleared
(when the backend object can: see ``authstore.registry.NamespaceCleaner``) and the
entries left in it are counted into the test report's ``user_properties`` as
``authstore_left_behind`` (None: the backend cannot enumerate its keys, e.g.
memcached), which ``authstore check`` sums up in its table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from authstore.contracts.testing.harness import StoreFactory, url_factory
from authstore.contracts.testing.stores import StoreContract

__all__ = ["LEFT_BEHIND", "RUN", "TestAuthStore", "clear_namespaces"]

LEFT_BEHIND = "authstore_left_behind"
RUN = uuid.uuid4().hex[:8]
"""This process's run id: every namespace of the run is ``t{RUN}...`` or ``o{RUN}...``."""


def clear_namespaces(url: str, namespaces: list[str]) -> int | None:
    """Clear each namespace at ``url`` and count what is left in them afterwards;
    None when the backend has no ``clear_namespace``/``count_namespace``."""
    from authstore.registry import NamespaceCleaner, backend_for

    backend, parsed = backend_for(url)
    if not isinstance(backend, NamespaceCleaner):
        return None
    left = 0
    for namespace in namespaces:
        backend.clear_namespace(parsed, namespace)
        left += backend.count_namespace(parsed, namespace)
    return left


class TestAuthStore(StoreContract):
    """Uses the plugin's ``authstore_url`` fixture, i.e. the ``--authstore-url`` option."""

    @pytest.fixture
    def authstore_factory(
        self, authstore_url: str | None, request: pytest.FixtureRequest
    ) -> Iterator[StoreFactory]:
        if authstore_url is None:
            pytest.fail("the packaged suite needs --authstore-url=URL", pytrace=False)
        self._namespaces: list[str] = []
        yield url_factory(authstore_url, self.fresh_namespace("t"))
        left = clear_namespaces(authstore_url, self._namespaces)
        request.node.user_properties.append((LEFT_BEHIND, left))

    def fresh_namespace(self, initial: str) -> str:
        """``t``, ``o`` or ``p``, then RUN, then a random part: every key of one run is findable."""
        namespace = f"{initial}{RUN}{uuid.uuid4().hex[:20]}"
        self._namespaces.append(namespace)
        return namespace
