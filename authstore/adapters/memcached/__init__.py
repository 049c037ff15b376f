"""memcached: the cache store (values, rate limits, revocations), sync over pymemcache
and async over aiomcache. Sessions, TOTP and magic links raise UnsupportedOperationError.

``memcached://host1:11211,host2:11211?option=value`` (port 11211 by default; several
servers are hashed as pymemcache's HashClient does). Options, as query parameters or
keywords: ``namespace``, ``timeout`` and ``connect_timeout`` (seconds), ``pool_size``
(connections per server of an async store), and ``client``: an existing pymemcache
``Client``, ``PooledClient`` or ``HashClient`` (sync) or ``aiomcache.Client`` (async),
which authstore uses but never closes. Importing this package imports no driver.
"""

from authstore.adapters.memcached.backend import MemcachedBackend, backend

__all__ = ["MemcachedBackend", "backend"]
