"""MySQL 8 and MariaDB: every store, PyMySQL sync and aiomysql async.

``mysql://user:password@host:3306/database`` (or ``mariadb://``); options
``namespace``, ``table_prefix``, ``pool_size``, ``connect_timeout``, ``timeout``
(per operation: socket reads and writes, lock waits, the wait for a free pooled
connection), ``ssl_ca``/``ssl_cert``/``ssl_key``/``ssl_verify`` (TLS, verified unless
``ssl_verify=false``; without any of them PyMySQL uses TLS, unverified, where the
server offers it, and aiomysql plain TCP),
``charset`` (utf8mb4 only) and ``client`` (an existing pymysql Connection for a sync
store, an aiomysql Pool for an async one, in autocommit mode and without
CLIENT.FOUND_ROWS; authstore sets its session's time zone, isolation level and
strict mode and never closes it). Importing this package imports no driver.
"""

from authstore.adapters.mysql.backend import MySQLBackend, backend

__all__ = ["MySQLBackend", "backend"]
