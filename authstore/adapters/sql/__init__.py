"""The SQL backend family: operations, schema and execution written once for every database.

A database adds a ``Dialect`` subclass and two thin runners (sync and async) that
hand ``program.statements`` to its driver; see ``authstore.adapters.sqlite``.
"""

from authstore.adapters.sql.commands import Begin, Query
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, SqlTotpOps
from authstore.adapters.sql.schema import DEFAULT_TABLE_PREFIX, MigrationReport, Tables, migrate

__all__ = [
    "DEFAULT_TABLE_PREFIX",
    "Begin",
    "Dialect",
    "MigrationReport",
    "Query",
    "SqlCacheOps",
    "SqlMagicLinkOps",
    "SqlSessionOps",
    "SqlTotpOps",
    "Tables",
    "migrate",
]
