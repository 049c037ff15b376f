"""The directory, its lock and one locked ``dbm.dumb`` transaction per operation."""

from __future__ import annotations

import asyncio
import dbm.dumb
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Self, TypeVar

from authstore.authoring import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    StoreURL,
    check_namespace,
)

T = TypeVar("T")
P = ParamSpec("P")
LOCK_FILE = "dbmstore.lock"
DBM_SUFFIXES = (".dat", ".dir", ".bak")


@dataclass(frozen=True)
class Place:
    """Where a namespace lives: its directory, file base name and lock timeout."""

    directory: str
    namespace: str
    timeout: float
    label: str  # the redacted URL, for messages

    @classmethod
    def from_url(cls, url: StoreURL, *, namespace: str | None = None) -> Place:
        """Validate the URL (ConfigurationError) without touching the file system."""
        label = url.redacted()
        options = url.reader()
        namespace_option = options.text("namespace", "authstore")
        timeout = options.seconds("timeout", 5.0)
        options.done()
        if url.hosts or url.username or url.password:
            raise ConfigurationError(
                f"dbmstore at {label}: takes no host or user, use dbmstore:///dir"
            )
        directory = os.path.normpath(url.path) if url.path else ""
        if not directory.startswith("/") or directory == "/":
            raise ConfigurationError(f"dbmstore at {label}: the path must be an absolute directory")
        try:
            checked = check_namespace(namespace if namespace is not None else namespace_option)
        except ValueError as error:
            raise ConfigurationError(f"dbmstore at {label}: {error}") from error
        return cls(directory, checked, timeout, label)

    @property
    def base(self) -> str:
        """The ``dbm.dumb`` base path of this namespace (the prefix keeps '.' and '..' safe)."""
        return os.path.join(self.directory, f"ns-{self.namespace}")

    def unavailable(self, what: str, error: BaseException) -> BackendUnavailableError:
        """The error for a directory that cannot be used, driver error kept as cause."""
        reason = getattr(error, "strerror", None) or type(error).__name__
        failure = BackendUnavailableError(f"dbmstore at {self.label}: {what}: {reason}")
        failure.__cause__ = error
        return failure

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's exclusive flock (a fresh descriptor, so threads exclude too)."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            descriptor = os.open(
                os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError as error:
            raise self.unavailable(f"cannot open the lock in {self.directory}", error) from error
        try:
            deadline = time.monotonic() + self.timeout
            delay = 0.0002
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BackendUnavailableError(
                            f"dbmstore at {self.label}: lock not obtained within {self.timeout:g} s"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.005)
                except OSError as error:
                    raise self.unavailable("cannot lock", error) from error
            yield
        finally:
            os.close(descriptor)  # releases the flock

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        """One atomic operation: lock, open the namespace's file, yield it, close, unlock."""
        with self.locked():
            try:
                handle = dbm.dumb.open(self.base, "c", 0o600)  # noqa: SIM115 - closed below, errors wrapped
            except (OSError, ValueError, SyntaxError) as error:
                raise self.unavailable("cannot open the data file", error) from error
            db = Db(handle, self)
            try:
                yield db
            finally:
                try:
                    handle.close()
                except OSError as error:
                    raise BackendError(
                        f"dbmstore at {self.label}: cannot write the index"
                    ) from error

    def remove_files(self) -> None:
        """Delete the namespace's file set (``clear_namespace``)."""
        with self.locked():
            for suffix in DBM_SUFFIXES:
                try:
                    os.remove(self.base + suffix)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    raise BackendError(
                        f"dbmstore at {self.label}: cannot remove {suffix} file"
                    ) from error

    def count_keys(self) -> int:
        """How many keys the namespace's file holds (``count_namespace``)."""
        with self.locked():
            if not os.path.exists(self.base + ".dat"):
                return 0
        with self.transaction() as db:
            return len(db.names())


class Db:
    """A ``dbm.dumb`` handle inside one locked transaction; ``now`` is read once, after the lock."""

    def __init__(self, handle: Any, place: Place) -> None:
        self._handle = handle
        self._place = place
        self.now = time.time()

    def _fail(self, error: Exception) -> BackendError:
        failure = BackendError(
            f"dbmstore at {self._place.label}: data file unreadable or unwritable"
        )
        failure.__cause__ = error
        return failure

    def raw(self, key: str) -> bytes | None:
        try:
            value: bytes | None = self._handle.get(key.encode())
            return value
        except (OSError, ValueError) as error:
            raise self._fail(error) from error

    def put_raw(self, key: str, value: bytes) -> None:
        try:
            self._handle[key.encode()] = value
        except OSError as error:
            raise self._fail(error) from error

    def record(self, key: str) -> dict[str, Any] | None:
        raw = self.raw(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise self._fail(error) from error
        if not isinstance(value, dict):
            raise self._fail(ValueError(f"{key!r} is not a record"))
        return value

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.put_raw(key, json.dumps(record, separators=(",", ":")).encode())

    def delete(self, key: str) -> bool:
        try:
            del self._handle[key.encode()]
            return True
        except KeyError:
            return False
        except OSError as error:
            raise self._fail(error) from error

    def names(self) -> list[str]:
        try:
            return [key.decode() for key in self._handle]
        except (OSError, UnicodeDecodeError) as error:
            raise self._fail(error) from error


def live(record: dict[str, Any] | None, now: float) -> bool:
    """A record whose ``exp`` (epoch seconds, None for never) has not passed."""
    return record is not None and (record.get("exp") is None or record["exp"] > now)


class SyncBase:
    """Shared by every sync store: namespace, closing, context manager, transactions."""

    def __init__(self, place: Place) -> None:
        self.namespace = place.namespace
        self._place = place
        self._closed = False

    def _run(self, operation: Callable[[Db], T]) -> T:
        """Run one operation atomically (arguments were checked by the caller)."""
        if self._closed:
            raise BackendError(f"dbmstore at {self._place.label}: store is closed")
        with self._place.transaction() as db:
            return operation(db)

    def ping(self) -> None:
        """One locked open of the namespace's file: BackendUnavailableError if it cannot."""
        self._run(lambda db: None)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._place.label} namespace={self.namespace!r}>"


S = TypeVar("S", bound=SyncBase)


class AsyncBase(Generic[S]):
    """The async twin of a sync store: the same code, run on a worker thread."""

    def __init__(self, sync: S) -> None:
        self.namespace = sync.namespace
        self._sync = sync

    async def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(method, *args, **kwargs)

    async def ping(self) -> None:
        await asyncio.to_thread(self._sync.ping)

    async def aclose(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<async {self._sync!r}>"
