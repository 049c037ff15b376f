"""The contract suite every authstore backend must pass: ours and third parties'.

A backend author's whole test file::

    import pytest
    from authstore.contracts.testing import StoreContract

    class TestMyBackend(StoreContract):
        @pytest.fixture
        def authstore_url(self) -> str:
            return "mybackend://localhost/?option=1"

(or an ``authstore_factory`` fixture: ``(kind, asynchronous) -> new store``).
Every test runs against the sync and the async store. ``CacheContract``,
``SessionContract``, ``TotpContract`` and ``MagicLinkContract`` cover one store
each; the cache is also split into capability mixins (``KeyValueContract``, ...).

This package is imported by the pytest plugin on every pytest run, so it stays
cheap: the test classes load on first access, and nothing here imports a driver.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from authstore.contracts.testing.cache import (
        BatchContract,
        CacheContract,
        IncrContract,
        KeyValueContract,
    )
    from authstore.contracts.testing.cache_input import CacheBadInputContract
    from authstore.contracts.testing.harness import StoreFactory
    from authstore.contracts.testing.magic_links import MagicLinkContract
    from authstore.contracts.testing.migrate import MigrateContract
    from authstore.contracts.testing.ratelimit import (
        FixedWindowContract,
        GcraContract,
        SlidingWindowContract,
    )
    from authstore.contracts.testing.ratelimit_groups import (
        RateLimitGroupContract,
        RateLimitPeekContract,
    )
    from authstore.contracts.testing.revocation import (
        BlacklistContract,
        UserRevocationContract,
    )
    from authstore.contracts.testing.sessions import SessionContract
    from authstore.contracts.testing.stores import StoreContract
    from authstore.contracts.testing.totp import TotpContract

__all__ = [
    "BatchContract",
    "BlacklistContract",
    "CacheBadInputContract",
    "CacheContract",
    "FixedWindowContract",
    "GcraContract",
    "IncrContract",
    "KeyValueContract",
    "MagicLinkContract",
    "MigrateContract",
    "RateLimitGroupContract",
    "RateLimitPeekContract",
    "SessionContract",
    "SlidingWindowContract",
    "StoreContract",
    "StoreFactory",
    "TotpContract",
    "UserRevocationContract",
    "is_strict",
    "unavailable",
]

_LAZY = {
    "BatchContract": "cache",
    "BlacklistContract": "revocation",
    "CacheBadInputContract": "cache_input",
    "CacheContract": "cache",
    "FixedWindowContract": "ratelimit",
    "GcraContract": "ratelimit",
    "IncrContract": "cache",
    "KeyValueContract": "cache",
    "SlidingWindowContract": "ratelimit",
    "UserRevocationContract": "revocation",
    "MagicLinkContract": "magic_links",
    "SessionContract": "sessions",
    "StoreContract": "stores",
    "TotpContract": "totp",
    "StoreFactory": "harness",
    "MigrateContract": "migrate",
    "RateLimitGroupContract": "ratelimit_groups",
    "RateLimitPeekContract": "ratelimit_groups",
}
"""Where each public name lives: one module per contract, mirroring authstore.contracts."""

_strict_option: bool | None = None
"""Set by the plugin from ``--authstore-strict``; None when the plugin is not loaded."""


def is_strict() -> bool:
    """CI mode: ``--authstore-strict`` or ``AUTHSTORE_STRICT=1``."""
    env = os.environ.get("AUTHSTORE_STRICT", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(_strict_option) or env


def unavailable(reason: str) -> NoReturn:
    """A backend or server cannot be used here: skip, or fail in strict mode.

    Backend fixtures call this (name the backend in ``reason``) so CI, which runs
    strict, proves every backend instead of silently skipping it. A store that
    declares a capability unsupported is not "unavailable": that stays a skip.
    """
    import pytest

    if is_strict():
        pytest.fail(f"backend unavailable in strict mode: {reason}", pytrace=False)
    pytest.skip(f"backend unavailable: {reason}")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
