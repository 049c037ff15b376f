"""Redis: every store, sync over redis-py and async over redis.asyncio.

``redis://[user:password@]host:6379/0``, ``rediss://`` (TLS),
``redis+unix:///path/to/redis.sock?db=0``, ``redis+cluster://host:port,host:port``
and ``redis+sentinel://host:26379,host:26380/service_name``. Options, as query
parameters or keywords: ``namespace``, ``db``, ``timeout`` (seconds; bounds every
operation), ``connect_timeout``, ``pool_size``, ``username``, ``password``,
``sentinel_password``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs``, ``ssl_check_hostname``, ``tls`` (TLS on a redis+cluster:// or
redis+sentinel:// URL), and ``client``: an existing ``redis.Redis`` /
``redis.cluster.RedisCluster`` (sync) or their ``redis.asyncio`` twins, which
authstore uses but never closes. Importing this package imports no driver.
"""

from authstore.adapters.redis.backend import RedisBackend, backend

__all__ = ["RedisBackend", "backend"]
