"""authstore backend ``dbmstore://``: all four stores on Python's ``dbm.dumb`` files.

URL: ``dbmstore:///absolute/path/to/dir?namespace=app&timeout=5``. The path is a
directory (created on first use); each namespace is one ``dbm.dumb`` file set in it
(``ns-<namespace>.dat/.dir/.bak``), and one lock file ``dbmstore.lock`` serialises
every operation on the directory with ``fcntl.flock``, so operations are atomic across
threads and processes on one machine (not over NFS). ``timeout`` (seconds, default 5)
bounds the wait for the lock.

Unreachable: a directory that cannot be created or locked (for example a path under
a regular file, ``dbmstore:///dev/null/x``) or a lock not obtained within ``timeout``
raises ``BackendUnavailableError`` on use; opening a store does no I/O.

``dbm.dumb`` never reclaims the space of deleted values; ``migrate`` creates the
directory and the namespace's files and is otherwise a no-op.
"""

from __future__ import annotations

from typing import Any

from authstore.authoring import StoreKind, StoreURL, UnsupportedOperationError

__all__ = ["DbmBackend", "backend"]


class DbmBackend:
    """The ``dbmstore`` entry point: opens stores lazily, imports nothing heavy."""

    name = "dbmstore"

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        """A store of ``kind`` over ``url``; no file is touched until its first use."""
        from authstore_dbmstore import _stores

        place = _stores.Place.from_url(url)
        classes = _stores.STORE_CLASSES.get(StoreKind(kind))
        if classes is None:
            raise UnsupportedOperationError(f"dbmstore has no {kind} store")
        sync_class, async_class = classes
        store = sync_class(place)
        return async_class(store) if asynchronous else store

    def migrate(self, url: StoreURL) -> list[str]:
        """Create the directory, its lock file and the namespace's files (idempotent)."""
        from authstore_dbmstore import _stores

        place = _stores.Place.from_url(url)
        with place.transaction():
            pass
        return [f"dbmstore: {place.directory} ready for namespace {place.namespace!r}; no schema"]

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Delete the namespace's file set (under the directory lock)."""
        from authstore_dbmstore import _stores

        _stores.Place.from_url(url, namespace=namespace).remove_files()

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        """Keys the namespace's file holds, expired ones not yet purged included."""
        from authstore_dbmstore import _stores

        return _stores.Place.from_url(url, namespace=namespace).count_keys()


backend = DbmBackend()
