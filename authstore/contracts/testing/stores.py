"""``StoreContract``: the contracts of all four stores in one class.

Each store's contract has its own module (cache, sessions, totp, magic_links); they
are importable from here too, where they were first defined."""

from __future__ import annotations

from authstore.contracts.testing.cache import CacheContract
from authstore.contracts.testing.health import HealthContract
from authstore.contracts.testing.magic_links import MagicLinkContract
from authstore.contracts.testing.sessions import SessionContract
from authstore.contracts.testing.totp import TotpContract

__all__ = ["MagicLinkContract", "SessionContract", "StoreContract", "TotpContract"]


class StoreContract(
    CacheContract, SessionContract, TotpContract, MagicLinkContract, HealthContract
):
    """All four contracts; store kinds a backend does not offer skip."""
