"""The four contracts' operations over MongoDB, one module per contract (as in
``authstore.contracts``), written once as generators of commands; ``base`` holds what
they share (expressions, command builders, upserts, transactions, indexes)."""

from authstore.adapters.mongodb.ops.base import Collections, Pause, create_indexes
from authstore.adapters.mongodb.ops.cache import MongoCacheOps
from authstore.adapters.mongodb.ops.links import MongoMagicLinkOps
from authstore.adapters.mongodb.ops.sessions import MongoSessionOps
from authstore.adapters.mongodb.ops.totp import MongoTotpOps

__all__ = [
    "Collections",
    "MongoCacheOps",
    "MongoMagicLinkOps",
    "MongoSessionOps",
    "MongoTotpOps",
    "Pause",
    "create_indexes",
]
