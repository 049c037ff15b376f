"""PostgreSQL: every store, sync over psycopg 3 (psycopg_pool) and async over asyncpg.

``postgresql://user:password@host:5432/database?option=value`` (or ``postgres://``).
Options, as query parameters or keywords: ``namespace``, ``table_prefix``,
``pool_size``, ``pool_min``, ``connect_timeout`` and ``timeout`` (seconds; ``timeout``
bounds each statement and the wait for a pooled connection), ``sslmode``,
``sslrootcert``, ``sslcert``, ``sslkey``, ``application_name``, ``user``, ``password``,
and ``client``: an existing ``psycopg_pool.ConnectionPool`` or ``psycopg.Connection``
(sync) or ``asyncpg.Pool`` or ``asyncpg.Connection`` (async), which authstore uses
but never closes. Importing this package imports no driver.
"""

from authstore.adapters.postgres.backend import PostgresBackend, backend

__all__ = ["PostgresBackend", "backend"]
