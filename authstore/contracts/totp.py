"""The TOTP contract: 2FA state per user, single-use backup codes, replay protection."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, runtime_checkable

from authstore.contracts.records import TotpState

__all__ = ["AsyncTotpStore", "TotpStore"]


@runtime_checkable
class TotpStore(Protocol):
    """Secrets arrive as ciphertext from the core; the store never sees a plain secret."""

    namespace: str

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

    def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer (readiness checks)."""

    def close(self) -> None:
        """Release the store's connections; every later call raises StoreClosedError."""

    def __enter__(self) -> TotpStore: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class AsyncTotpStore(Protocol):
    """The async twin of TotpStore: same names, same meaning."""

    namespace: str

    async def save_pending(self, user_id: str, secret: bytes) -> None: ...
    async def enable(self, user_id: str) -> bool: ...
    async def disable(self, user_id: str) -> bool: ...
    async def load(self, user_id: str) -> TotpState | None: ...
    async def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None: ...
    async def use_backup_code(self, user_id: str, code_hash: str) -> bool: ...
    async def claim_step(self, user_id: str, step: int) -> bool: ...
    async def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer (readiness checks)."""

    async def aclose(self) -> None:
        """Release the store's connections; every later call raises StoreClosedError."""

    async def __aenter__(self) -> AsyncTotpStore: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
