"""SQLite: every store over one file (stdlib sqlite3; async stores run it on a worker thread).

``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``;
options ``namespace``, ``table_prefix``, ``timeout`` (seconds a writer waits for
the lock) and ``connection`` (an existing sqlite3 or aiosqlite connection opened
with ``isolation_level=None``). Importing this package imports no driver.
"""

from authstore.adapters.sqlite.backend import SQLiteBackend, backend

__all__ = ["SQLiteBackend", "backend"]
