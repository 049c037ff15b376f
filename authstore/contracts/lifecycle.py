"""What every store protocol has besides its contract's operations, written once: a
namespace, a health check, a close, and ``with``/``async with`` that close on the way
out. ``CacheStore``, ``SessionStore``, ``TotpStore`` and ``MagicLinkStore`` (and their
async twins) extend these."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

__all__ = ["AsyncStoreLifecycle", "StoreLifecycle"]


class StoreLifecycle(Protocol):
    """What every sync store has besides its contract's operations."""

    namespace: str

    def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer (readiness checks)."""

    def close(self) -> None:
        """Release the store's connections; every later call raises StoreClosedError."""

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AsyncStoreLifecycle(Protocol):
    """The async twin of StoreLifecycle: ``aclose()`` for ``close()``, ``async with``."""

    namespace: str

    async def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer (readiness checks)."""

    async def aclose(self) -> None:
        """Release the store's connections; every later call raises StoreClosedError."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
