"""The ``with`` and ``async with`` of stores and groups, each written once."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncContext", "SyncContext"]


class SyncContext:
    """``with``: returns itself, ``close()`` on the way out. Sync stores and groups share it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncContext:
    """``async with``: with ``connect=eager`` (``connect_on_enter``) a ping first, closing
    again if it fails; ``aclose()`` on the way out. Async stores and groups share it."""

    connect_on_enter = False

    async def ping(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self.connect_on_enter:
            try:
                await self.ping()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
