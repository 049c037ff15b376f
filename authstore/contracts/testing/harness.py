"""One test body for sync and async stores.

With pytest-asyncio active, an async store lives on pytest-asyncio's loop of the
test (its function-scoped runner), so stores and clients made in async fixtures
work; the synchronous view runs each call to completion on that loop. Without
pytest-asyncio (or with ``-p no:asyncio``), an async store lives on an event loop
in a background thread (one loop per test); the view submits each coroutine to
that loop and waits. So every contract test is written once, in
plain synchronous code, and still exercises the real async implementation.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import pytest

from authstore.contracts.cache import CacheStore
from authstore.contracts.errors import (
    BackendUnavailableError,
    MissingDriverError,
    UnsupportedOperationError,
)
from authstore.contracts.magic_links import MagicLinkStore
from authstore.contracts.records import StoreKind
from authstore.contracts.sessions import SessionStore
from authstore.contracts.totp import TotpStore

if TYPE_CHECKING:
    from authstore.registry import StoreURL

__all__ = [
    "CALL_TIMEOUT",
    "CacheSubject",
    "Loop",
    "LoopThread",
    "MagicLinkSubject",
    "Mode",
    "RunnerLoop",
    "SessionSubject",
    "StoreFactory",
    "Stores",
    "Subject",
    "TotpSubject",
    "View",
    "open_store",
    "run_threads",
    "url_factory",
]

Mode = Literal["sync", "async"]
StoreFactory = Callable[[StoreKind, bool], Any]
"""``(kind, asynchronous) -> a new store``; the suite closes what it returns after the test."""

CALL_TIMEOUT = 60.0
"""A hung store fails the test instead of hanging the run."""


def open_store(url: str | StoreURL, kind: StoreKind, asynchronous: bool, **options: Any) -> Any:
    """The registry's ``open_*`` function for ``kind`` and mode, called with ``options``."""
    from authstore import registry

    openers: dict[tuple[StoreKind, bool], Callable[..., Any]] = {
        (StoreKind.CACHE, False): registry.open_cache,
        (StoreKind.CACHE, True): registry.open_async_cache,
        (StoreKind.SESSIONS, False): registry.open_sessions,
        (StoreKind.SESSIONS, True): registry.open_async_sessions,
        (StoreKind.TOTP, False): registry.open_totp,
        (StoreKind.TOTP, True): registry.open_async_totp,
        (StoreKind.MAGIC_LINKS, False): registry.open_magic_links,
        (StoreKind.MAGIC_LINKS, True): registry.open_async_magic_links,
    }
    return openers[kind, asynchronous](url, **options)


def url_factory(url: str, namespace: str) -> StoreFactory:
    """The default factory: every store in ``namespace``; a missing driver or server is
    ``unavailable`` (skip, or fail when strict), an unknown scheme an error."""

    def make(kind: StoreKind, asynchronous: bool) -> Any:
        from authstore.contracts.testing import unavailable
        from authstore.registry import StoreURL

        try:
            return open_store(url, kind, asynchronous, namespace=namespace)
        except MissingDriverError as error:
            unavailable(str(error))
        except BackendUnavailableError as error:
            unavailable(f"{StoreURL.parse(url).redacted()}: {error}")

    return make


class LoopThread:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` inside the loop, await what it returns, and hand back the result.

        ``fn`` itself runs in the loop thread, so stores created or called there
        see a running loop, as they would in an application.
        """
        loop = self._start()

        async def outcome() -> tuple[bool, Any]:
            # BaseException too: pytest.skip() inside a factory must reach pytest intact.
            try:
                value = fn()
                if inspect.isawaitable(value):
                    value = await value
            except BaseException as error:
                return False, error
            return True, value

        future = asyncio.run_coroutine_threadsafe(outcome(), loop)
        try:
            ok, value = future.result(CALL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"an async store call took more than {CALL_TIMEOUT} s") from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Cancel leftover tasks, stop the loop and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None

        async def drain() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(CALL_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            loop.close()

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="authstore-contract-loop", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop


class RunnerLoop:
    """Drives async stores on an ``asyncio.Runner`` that someone else owns: pytest-asyncio's
    runner of the test, so stores and clients made in async fixtures share its loop.

    Calls come from the test's own thread while the loop is idle (a contract test is
    synchronous code); ``close`` leaves the runner to its owner.
    """

    def __init__(self, runner: asyncio.Runner) -> None:
        self._runner = runner

    def run(self, fn: Callable[[], Any]) -> Any:
        async def outcome() -> Any:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            return value

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(outcome(), CALL_TIMEOUT)
            except TimeoutError:
                raise TimeoutError(f"an async store call took more than {CALL_TIMEOUT} s") from None

        return self._runner.run(bounded())

    def close(self) -> None:
        """Nothing to stop: the loop belongs to pytest-asyncio."""


Loop = LoopThread | RunnerLoop


def run_threads(threads: list[threading.Thread], what: str) -> None:
    """Start every thread, then wait for all; a TimeoutError names ``what`` if one hangs."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CALL_TIMEOUT)
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"{what} took more than {CALL_TIMEOUT} s")


def _raise_first(results: list[Any], errors: list[BaseException | None]) -> list[Any]:
    failed = [e for e in errors if e is not None]
    if failed:
        first = failed[0]
        first.add_note(f"{len(failed)} of {len(errors)} concurrent calls failed")
        raise first
    return results


class View:
    """A store as the test sees it: synchronous methods, whatever the store's mode.

    Sync mode forwards to the store; async mode runs each call on the test's loop.
    """

    def __init__(self, raw: Any, mode: Mode, loop: Loop) -> None:
        self.raw = raw
        self.mode: Mode = mode
        self.closed = False
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.raw, name)
        if self.mode == "sync" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(lambda: attribute(*args, **kwargs))

        return call

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(raw_store)`` once; awaited on the store's loop in async mode."""
        if self.mode == "sync":
            return fn(self.raw)
        return self._loop.run(lambda: fn(self.raw))

    def concurrently(self, n: int, fn: Callable[[Any], Any]) -> list[Any]:
        """Call ``fn(raw_store)`` n times at once; results in call order.

        Sync: n threads released together by a barrier. Async: n coroutines
        gathered on the store's loop. Exceptions are re-raised after all finish.
        """
        results: list[Any] = [None] * n
        errors: list[BaseException | None] = [None] * n
        if self.mode == "async":

            async def one(index: int) -> None:
                try:
                    value = fn(self.raw)
                    results[index] = await value if inspect.isawaitable(value) else value
                except Exception as error:
                    errors[index] = error

            async def gather() -> None:
                await asyncio.gather(*(one(i) for i in range(n)))

            self._loop.run(gather)
            return _raise_first(results, errors)

        barrier = threading.Barrier(n)

        def worker(index: int) -> None:
            try:
                barrier.wait(CALL_TIMEOUT)
                results[index] = fn(self.raw)
            except Exception as error:
                errors[index] = error

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        run_threads(threads, "concurrent store calls")
        return _raise_first(results, errors)

    def close(self) -> None:
        """Close once (``close`` or ``aclose``); the harness will not close it again."""
        if not self.closed:
            self.closed = True
            self.run(lambda store: store.close() if self.mode == "sync" else store.aclose())

    def mark_closed(self) -> None:
        """The test closed the store itself (``with`` / ``async with``)."""
        self.closed = True


class Subject(Protocol):
    """What every view adds to the store's own (synchronous) API."""

    raw: Any
    mode: Mode
    closed: bool

    def run(self, fn: Callable[[Any], Any]) -> Any: ...
    def concurrently(self, n: int, fn: Callable[[Any], Any]) -> list[Any]: ...
    def mark_closed(self) -> None: ...


class CacheSubject(CacheStore, Subject, Protocol):
    pass


class SessionSubject(SessionStore, Subject, Protocol):
    pass


class TotpSubject(TotpStore, Subject, Protocol):
    pass


class MagicLinkSubject(MagicLinkStore, Subject, Protocol):
    pass


class Stores:
    """Opens the stores of one test in one mode and closes them all after it."""

    def __init__(self, factory: StoreFactory, mode: Mode, loop: Loop | None = None) -> None:
        """``loop``: where async stores run; by default a ``LoopThread`` of their own."""
        self.factory = factory
        self.mode: Mode = mode
        self.loop: Loop = loop if loop is not None else LoopThread()
        self._views: list[View] = []

    def open(self, kind: StoreKind, factory: StoreFactory | None = None) -> Any:
        """A new view on ``(factory or self.factory)(kind, async?)``.

        A store kind the backend declares unsupported skips the test (even in strict mode).
        """
        make = factory or self.factory
        asynchronous = self.mode == "async"
        try:
            raw = self.loop.run(lambda: make(kind, True)) if asynchronous else make(kind, False)
        except UnsupportedOperationError as error:
            pytest.skip(f"the backend has no {kind.value} store: {error}")
        view = View(raw, self.mode, self.loop)
        self._views.append(view)
        return view

    def cache(self, factory: StoreFactory | None = None) -> CacheSubject:
        return cast(CacheSubject, self.open(StoreKind.CACHE, factory))

    def sessions(self, factory: StoreFactory | None = None) -> SessionSubject:
        return cast(SessionSubject, self.open(StoreKind.SESSIONS, factory))

    def totp(self, factory: StoreFactory | None = None) -> TotpSubject:
        return cast(TotpSubject, self.open(StoreKind.TOTP, factory))

    def magic_links(self, factory: StoreFactory | None = None) -> MagicLinkSubject:
        return cast(MagicLinkSubject, self.open(StoreKind.MAGIC_LINKS, factory))

    def close(self) -> None:
        """Close every store still open, then the loop; the first error is raised at the end."""
        errors: list[BaseException] = []
        for view in reversed(self._views):
            try:
                view.close()
            except Exception as error:
                errors.append(error)
        self._views.clear()
        self.loop.close()
        if errors:
            raise errors[0]
