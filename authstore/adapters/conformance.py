"""mypy's proof that every built-in backend's ops classes satisfy the ops protocols.

Nothing imports this module at run time: ``mypy --strict`` reads it, and an ops class
whose method lacks a parameter, has another kind of parameter, another keyword-only
name, a narrower type or another answer than its protocol in ``common.ops`` fails the
assignment that names it. mypy does not compare positional parameters' names:
tests/unit/test_signature_parity.py does, and checks that this module names every ops
class the backends define. The store classes' own checks sit at the end of
``common.stores``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__: list[str] = []

if TYPE_CHECKING:
    from authstore.adapters.common.ops import CacheOps, MagicLinkOps, SessionOps, TotpOps
    from authstore.adapters.memcached.ops import MemcachedCacheOps
    from authstore.adapters.memory.ops import (
        MemoryCacheOps,
        MemoryMagicLinkOps,
        MemorySessionOps,
        MemoryTotpOps,
    )
    from authstore.adapters.mongodb.ops import (
        MongoCacheOps,
        MongoMagicLinkOps,
        MongoSessionOps,
        MongoTotpOps,
    )
    from authstore.adapters.redis.ops import (
        RedisCacheOps,
        RedisMagicLinkOps,
        RedisSessionOps,
        RedisTotpOps,
    )
    from authstore.adapters.sql.ops import SqlCacheOps, SqlMagicLinkOps, SqlSessionOps, SqlTotpOps

    _memory_cache: type[CacheOps] = MemoryCacheOps
    _memory_sessions: type[SessionOps] = MemorySessionOps
    _memory_totp: type[TotpOps] = MemoryTotpOps
    _memory_magic_links: type[MagicLinkOps] = MemoryMagicLinkOps

    _sql_cache: type[CacheOps] = SqlCacheOps
    _sql_sessions: type[SessionOps] = SqlSessionOps
    _sql_totp: type[TotpOps] = SqlTotpOps
    _sql_magic_links: type[MagicLinkOps] = SqlMagicLinkOps

    _redis_cache: type[CacheOps] = RedisCacheOps
    _redis_sessions: type[SessionOps] = RedisSessionOps
    _redis_totp: type[TotpOps] = RedisTotpOps
    _redis_magic_links: type[MagicLinkOps] = RedisMagicLinkOps

    _mongo_cache: type[CacheOps] = MongoCacheOps
    _mongo_sessions: type[SessionOps] = MongoSessionOps
    _mongo_totp: type[TotpOps] = MongoTotpOps
    _mongo_magic_links: type[MagicLinkOps] = MongoMagicLinkOps

    _memcached_cache: type[CacheOps] = MemcachedCacheOps  # memcached holds only a cache
