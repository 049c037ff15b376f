"""MongoDB: every store, sync over pymongo's MongoClient and async over pymongo's
AsyncMongoClient (a motor AsyncIOMotorClient is accepted as client= too).

``mongodb://user:password@host:27017,host2/database?option=value`` or
``mongodb+srv://user:password@cluster.example.net/database``. The URL path is the
database (default ``authstore``). Options, as query parameters or keywords:
``namespace``, ``collection_prefix`` (default ``authstore_``), ``pool_size``,
``timeout`` (seconds; bounds every operation on the client side, server selection
included), ``connect_timeout``, pymongo's own ``replicaSet``, ``authSource``,
``authMechanism``, ``tls*``, ``directConnection``, ``w``, ``journal``,
``readConcernLevel``, ``appName``, ``compressors``, ``loadBalanced``, and ``client``:
an existing ``pymongo.MongoClient`` (sync), ``pymongo.AsyncMongoClient`` or
``motor.motor_asyncio.AsyncIOMotorClient`` (async), which authstore uses but never
closes. Importing this package imports no driver.
"""

from authstore.adapters.mongodb.backend import MongoBackend, backend

__all__ = ["MongoBackend", "backend"]
