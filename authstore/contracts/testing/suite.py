"""The whole suite against ``--authstore-url`` (what an operator or CI runs for a deployment)::

    pytest --pyargs authstore.contracts.testing.suite --authstore-url=redis://localhost/0

Every test works in its own fresh namespace and leaves nothing but expired keys behind.
"""

from __future__ import annotations

from authstore.contracts.testing.stores import StoreContract

__all__ = ["TestAuthStore"]


class TestAuthStore(StoreContract):
    """Uses the plugin's ``authstore_url`` fixture, i.e. the ``--authstore-url`` option."""
