"""``ping()``: every store answers it while its backend is up, and fails closed
(BackendUnavailableError) when the backend cannot be reached, sync and async."""

from __future__ import annotations

import pytest

from authstore.contracts.errors import BackendUnavailableError
from authstore.contracts.records import StoreKind
from authstore.contracts.testing.base import ContractBase
from authstore.contracts.testing.harness import Stores

__all__ = ["HealthContract"]


class HealthContract(ContractBase):
    @pytest.mark.parametrize("kind", list(StoreKind))
    def test_ping_answers(self, authstore_stores: Stores, kind: StoreKind) -> None:
        store = authstore_stores.open(kind)
        assert store.ping() is None
        assert store.ping() is None  # and again, on a connection made by the first

    def test_ping_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        """A readiness probe must never report a dead backend as ready."""
        store = self.unreachable(authstore_stores, StoreKind.CACHE, authstore_unreachable_url)
        with pytest.raises(BackendUnavailableError):
            store.ping()
