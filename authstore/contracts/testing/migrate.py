"""``migrate``: idempotent, safe twice (also at once), and the stores work after it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from authstore.contracts.records import StoreKind
from authstore.contracts.testing.base import LONG, ContractBase
from authstore.contracts.testing.harness import Stores

__all__ = ["MigrateContract"]


def _offered(stores: Stores, kind: StoreKind) -> Any | None:
    """The store of ``kind``, or None when the backend does not offer it."""
    try:
        return stores.open(kind)
    except pytest.skip.Exception:
        return None


def _lines(report: object) -> list[str]:
    assert isinstance(report, list), f"migrate must return a list of str, got {report!r}"
    assert all(isinstance(line, str) for line in report), report
    return report


class MigrateContract(ContractBase):
    """``backend.migrate(url)`` as ``authstore migrate URL`` calls it, on the URL under test."""

    def test_migrate_is_idempotent_and_keeps_data(
        self, authstore_url: str | None, authstore_stores: Stores
    ) -> None:
        if authstore_url is None:
            pytest.skip("migrate needs an authstore_url fixture (it takes a URL)")
        from authstore.registry import backend_for

        backend, url = backend_for(authstore_url)
        _lines(backend.migrate(url))
        cache = _offered(authstore_stores, StoreKind.CACHE)
        if cache is not None and "kv" not in cache.capabilities:
            cache = None
        sessions = _offered(authstore_stores, StoreKind.SESSIONS)
        if cache is None and sessions is None:
            pytest.skip("migrate is checked through a kv cache or sessions: neither is offered")
        if cache is not None:
            cache.set("before-migrate", "kept", ttl=LONG)
        before = sessions.create("alice", ttl=LONG) if sessions is not None else None

        _lines(backend.migrate(url))  # the second time: nothing to do, nothing lost
        with ThreadPoolExecutor(2) as pool:  # two processes starting at once
            for report in pool.map(lambda _: backend.migrate(url), range(2)):
                _lines(report)

        if cache is not None:
            assert cache.get("before-migrate") == "kept", "migrate lost a cache value"
            cache.set("after-migrate", 2, ttl=LONG)
            assert cache.get("after-migrate") == 2
        if sessions is not None and before is not None:
            assert sessions.get(before.token) is not None, "migrate lost a session"
            after = sessions.create("bob", ttl=LONG)
            assert sessions.get(after.token) is not None
