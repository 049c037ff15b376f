"""The operations whose statements or round trips the SQL databases' tests count
(tests/*/test_*_statements.py), by name: each database's test says what each one may
send, and the operations are written once.

"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

Operations = dict[str, Callable[[], object]]


def cache_single_record_operations(cache: Any) -> Operations:
    """The cache operations on one record or a few named ones; ``cache`` holds the
    integer "n". Each can be repeated (PostgreSQL's test runs each a few times first,
    until psycopg prepares its statement)."""
    return {
        "get": lambda: cache.get("n"),
        "set": lambda: cache.set("k", {"a": 1}, ttl=60),
        "add": lambda: cache.add("fresh", 1, ttl=60),
        "add refused": lambda: cache.add("k", 2),
        "incr": lambda: cache.incr("n", 2),
        "incr creates": lambda: cache.incr("counter", 1, ttl=60),
        "delete": lambda: cache.delete("fresh"),
        "exists": lambda: cache.exists("k"),
        "ttl": lambda: cache.ttl("k"),
        "expire": lambda: cache.expire("k", 30),
        "get_many": lambda: cache.get_many(["k", "n", "missing"]),
        "set_many": lambda: cache.set_many({"a": 1, "b": 2}, ttl=60),
        "delete_many": lambda: cache.delete_many(["a", "b"]),
        "reset_rate_limit": lambda: cache.reset_rate_limit("rl"),
        "add_to_blacklist": lambda: cache.add_to_blacklist("jti", 60),
        "is_blacklisted": lambda: cache.is_blacklisted("jti"),
        "remove_from_blacklist": lambda: cache.remove_from_blacklist("jti"),
        "revoke_user_tokens": lambda: cache.revoke_user_tokens("u"),
        "user_tokens_revoked_at": lambda: cache.user_tokens_revoked_at("u"),
    }


def session_totp_and_link_operations(sessions: Any, totp: Any, links: Any) -> Operations:
    """The single-record session, TOTP and link operations, once the stores have
    migrated (a first call each) and "u" has two sessions, a pending TOTP secret and a
    link."""
    sessions.count("warm-up")
    totp.load("warm-up")
    links.peek("warm-up-token")
    new = sessions.create("u", ttl=60)
    other = sessions.create("u", ttl=60)
    totp.save_pending("u", b"secret")
    link = links.issue("u", "u@example.com", ttl=60)
    return {
        "sessions.create": lambda: sessions.create("v", ttl=60),
        "sessions.get": lambda: sessions.get(new.token),
        "sessions.touch": lambda: sessions.touch(new.token, ttl=120),
        "sessions.list": lambda: sessions.list("u"),
        "sessions.count": lambda: sessions.count("u"),
        "sessions.revoke_by_id": lambda: sessions.revoke_by_id(other.record.id, user_id="u"),
        "sessions.revoke": lambda: sessions.revoke(new.token),
        "sessions.revoke_all": lambda: sessions.revoke_all("v"),
        "totp.save_pending": lambda: totp.save_pending("u", b"secret2"),
        "totp.enable": lambda: totp.enable("u"),
        "totp.load": lambda: totp.load("u"),
        "totp.claim_step": lambda: totp.claim_step("u", 7),
        "totp.use_backup_code": lambda: totp.use_backup_code("u", "nope"),
        "links.issue (keep previous)": lambda: links.issue(
            "w", "w@example.com", ttl=60, revoke_previous=False
        ),
        "links.peek": lambda: links.peek(link.token),
        "links.consume": lambda: links.consume(link.token),
        "links.revoke_user": lambda: links.revoke_user("w"),
    }


def token_lookup_operations(
    sessions: Any, links: Any, issued: Any, link: Any, caller_token: str
) -> Operations:
    """The session and link operations that find a record by its token: on ``issued``
    (a new session of user "t") and ``link`` (a new link of user "m"), whose tokens
    authstore issued, and on ``caller_token``, given by the caller (a session of "t",
    then a link of "m", made here). Sync or async stores alike (an async call returns
    its coroutine). Redis's spread layout (tests/redis/test_redis_spread.py) says what
    each may cost: one round trip for an issued token, two for a caller's whose hash
    falls outside its user's bucket."""
    return {
        "issued sessions.get": lambda: sessions.get(issued.token),
        "issued sessions.touch": lambda: sessions.touch(issued.token, ttl=120),
        "issued sessions.revoke_by_id": lambda: sessions.revoke_by_id(issued.record.id),
        "issued sessions.revoke": lambda: sessions.revoke(issued.token),
        "issued links.peek": lambda: links.peek(link.token),
        "issued links.consume": lambda: links.consume(link.token),
        "caller sessions.create": lambda: sessions.create("t", ttl=60, token=caller_token),
        "caller sessions.get": lambda: sessions.get(caller_token),
        "caller sessions.touch": lambda: sessions.touch(caller_token, ttl=120),
        "caller sessions.revoke": lambda: sessions.revoke(caller_token),
        "caller links.issue": lambda: links.issue(
            "m", "m@example.com", ttl=60, revoke_previous=False, token=caller_token
        ),
        "caller links.peek": lambda: links.peek(caller_token),
        "caller links.consume": lambda: links.consume(caller_token),
    }


def rate_limit_operations(cache: Any) -> Operations:
    """Rate-limit hits (allowed, refused, the first on a key) and incr, on keys only
    ``cache`` writes; each may be called again and again (memcached's test calls each
    once first: a refused key is full from then on)."""
    fresh = itertools.count()
    operations: Operations = {}
    for algorithm in ("fixed_window", "sliding_window", "gcra"):
        operations[f"{algorithm} allowed"] = functools.partial(
            cache.check_rate_limit, f"open-{algorithm}", 1_000_000, 60, algorithm=algorithm
        )
        operations[f"{algorithm} refused"] = functools.partial(
            cache.check_rate_limit, f"shut-{algorithm}", 1, 60, algorithm=algorithm
        )
        operations[f"{algorithm} first hit"] = lambda a=algorithm: cache.check_rate_limit(
            f"new-{a}-{next(fresh)}", 10, 60, algorithm=a
        )
    operations["incr"] = functools.partial(cache.incr, "counted")
    operations["incr creates"] = lambda: cache.incr(f"new-counter-{next(fresh)}", 1, ttl=60)
    return operations
