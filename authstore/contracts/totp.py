"""The TOTP contract: 2FA state per user, single-use backup codes, replay protection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from authstore.contracts.lifecycle import AsyncStoreLifecycle, StoreLifecycle
from authstore.contracts.records import TotpState

__all__ = ["AsyncTotpStore", "TotpStore"]


@runtime_checkable
class TotpStore(StoreLifecycle, Protocol):
    """Secrets arrive as ciphertext from the core; the store never sees a plain secret."""

    def save_pending(self, user_id: str, secret: bytes) -> None:
        """Start (or restart) enrolment; an active secret stays active until ``enable``."""

    def enable(self, user_id: str) -> bool:
        """Make the pending secret the active one; False when nothing is pending."""

    def disable(self, user_id: str) -> bool:
        """Forget the secrets, the backup codes and the replay state."""

    def load(self, user_id: str) -> TotpState | None:
        """The user's state, or None when there is none (never enrolled, or disabled)."""

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        """Store new backup code hashes in place of all previous ones."""

    def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        """True exactly once per stored code, even under concurrency."""

    def claim_step(self, user_id: str, step: int) -> bool:
        """Accept a TOTP time step only if it is later than the last one claimed."""


@runtime_checkable
class AsyncTotpStore(AsyncStoreLifecycle, Protocol):
    """The async twin of TotpStore: same names, same meaning."""

    async def save_pending(self, user_id: str, secret: bytes) -> None: ...
    async def enable(self, user_id: str) -> bool: ...
    async def disable(self, user_id: str) -> bool: ...
    async def load(self, user_id: str) -> TotpState | None: ...
    async def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None: ...
    async def use_backup_code(self, user_id: str, code_hash: str) -> bool: ...
    async def claim_step(self, user_id: str, step: int) -> bool: ...
