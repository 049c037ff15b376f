"""The cache's input policy: bad input fails before I/O and changes nothing, the
policy's extremes are storable, and reads fail closed when the backend is down."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from authstore.contracts.records import RateLimitAlgorithm, StoreKind
from authstore.contracts.testing.base import (
    BAD_COUNTS,
    BAD_IDS,
    BAD_REQUIRED_TTLS,
    BAD_TTLS,
    BAD_WINDOWS,
    INF,
    LONG,
    MICROSECOND,
    NAN,
    SURROGATES,
    WIDE_ID,
    Bad,
    BadCase,
    ContractBase,
    assert_rejected,
    cases,
    nested,
    text_of_bytes,
    ttl_within,
)
from authstore.contracts.testing.harness import CacheSubject, Stores
from authstore.contracts.values import (
    MAX_JSON_DEPTH,
    MAX_KEY_BYTES,
    MAX_LIMIT,
    MAX_TTL,
    MAX_VALUE_BYTES,
    MAX_WINDOW,
    MIN_TTL,
)

__all__ = ["CacheBadInputContract"]


BAD_KEYS: Bad = [
    (1, TypeError),
    (1.5, TypeError),
    (None, TypeError),
    (b"key", TypeError),
    (["k"], TypeError),
    ("", ValueError),
    ("x" * (MAX_KEY_BYTES + 1), ValueError),
    ("é" * (MAX_KEY_BYTES // 2 + 1), ValueError),
    ("a\x00b", ValueError),
    *SURROGATES,
]
BAD_VALUES: Bad = [
    (None, ValueError),
    ((1, 2), TypeError),
    ({1, 2}, TypeError),
    (frozenset(), TypeError),
    (object(), TypeError),
    (date(2030, 1, 1), TypeError),
    (NAN, ValueError),
    (INF, ValueError),
    (-INF, ValueError),
    ({"a": (1,)}, TypeError),
    ({"a": b"bytes only at the top"}, TypeError),
    ({1: "a"}, TypeError),
    ({"a": NAN}, ValueError),
    ([1, INF], ValueError),
    *SURROGATES,
    (["ok", "\ud800"], ValueError),
    ({"\udfff": 1}, ValueError),
    ({"a": {"b": "x\ud83d"}}, ValueError),
    (b"x" * MAX_VALUE_BYTES, ValueError),
    ("x" * MAX_VALUE_BYTES, ValueError),
    (nested(MAX_JSON_DEPTH + 1), ValueError),
    (nested(3000), ValueError),
]
"""Values are valid Unicode (no lone surrogate anywhere in them) of at most
MAX_VALUE_BYTES encoded, lists and dicts nested at most MAX_JSON_DEPTH deep."""


class _Limits(enum.IntEnum):
    """A settings-style IntEnum of limits: an int subclass every backend must take."""

    LOGIN = 2


BAD_ITERABLES: Bad = [
    ("abc", TypeError),
    (b"abc", TypeError),
    (5, TypeError),
    (None, TypeError),
    ([1], TypeError),
    (["ok", None], TypeError),
    ([""], ValueError),
    (["ok", "x" * (MAX_KEY_BYTES + 1)], ValueError),
]


def cache_bad_cases(capabilities: frozenset[str]) -> list[BadCase]:
    found: list[BadCase] = []
    if "kv" in capabilities:
        for method in ("get", "delete", "exists", "ttl"):
            found += cases(method, BAD_KEYS)
        for method in ("set", "add"):
            found += [BadCase(method, (key, 1), error) for key, error in BAD_KEYS]
            found += cases(method, BAD_VALUES, "k")
            found += cases(method, BAD_TTLS, "k", 1)
            found += cases(method, BAD_TTLS, "k", 1, ttl=...)
        found += [BadCase("expire", (key, 10), error) for key, error in BAD_KEYS]
        found += cases("expire", BAD_TTLS, "k")
    if "incr" in capabilities:
        found += cases("incr", BAD_KEYS)
        found += cases("incr", [(v, e) for v, e in BAD_COUNTS if v not in (0, -1)], "k")
        found += cases("incr", BAD_TTLS, "k", 1)
    if "batch" in capabilities:
        found += cases("get_many", BAD_ITERABLES)
        found += cases("delete_many", BAD_ITERABLES)
        found += cases("set_many", [({k: 1}, e) for k, e in BAD_KEYS if not isinstance(k, list)])
        found += cases("set_many", [({"k": v}, e) for v, e in BAD_VALUES])
        found += cases("set_many", [([("k", 1)], TypeError), ("k", TypeError), (None, TypeError)])
        found += cases("set_many", BAD_TTLS, {"k": 1})
    algorithms = [a for a in RateLimitAlgorithm if a.value in capabilities]
    for algorithm in algorithms:
        rate = "check_rate_limit"
        found += [
            BadCase(rate, (key, 10, 60), error, {"algorithm": algorithm}) for key, error in BAD_KEYS
        ]
        found += cases(rate, BAD_COUNTS, "k", window=60, algorithm=algorithm)
        found += cases(rate, BAD_WINDOWS, "k", 10, algorithm=algorithm)
        found += cases(rate, BAD_COUNTS, "k", 10, 60, algorithm=algorithm)
        found.append(BadCase(rate, ("k", 10, 60, 11), ValueError, {"algorithm": algorithm}))
    if algorithms:
        unknown = [("nope", ValueError), ("", ValueError), ("FIXED_WINDOW", ValueError)]
        found += cases(
            "check_rate_limit", [*unknown, (1, TypeError), (None, TypeError)], "k", 10, 60, 1
        )
        found += cases("reset_rate_limit", BAD_KEYS)
    if "blacklist" in capabilities:
        found += [BadCase("add_to_blacklist", (jti, 10), error) for jti, error in BAD_KEYS]
        found += cases("add_to_blacklist", BAD_REQUIRED_TTLS, "jti")
        soon = datetime.now(UTC) + timedelta(hours=1)
        bad_instants: Bad = [
            (datetime(2030, 1, 1), ValueError),
            (datetime.now() + timedelta(hours=1), ValueError),
            ("2030-01-01T00:00:00Z", TypeError),
            (1893456000.0, TypeError),
            (date(2030, 1, 1), TypeError),
            (datetime(9999, 1, 1, tzinfo=UTC), ValueError),
        ]
        found += cases("add_to_blacklist", bad_instants, "jti", expires_at=...)
        found += [
            BadCase("add_to_blacklist", ("jti", 60), TypeError, {"expires_at": soon}),
            BadCase("add_to_blacklist", ("jti", None), TypeError, {"expires_at": None}),
            BadCase("add_to_blacklist", ("jti",), TypeError, {}),
        ]
        found += [
            BadCase("add_to_blacklist", (jti,), error, {"expires_at": soon})
            for jti, error in BAD_KEYS
        ]
        found += cases("is_blacklisted", BAD_KEYS)
        found += cases("remove_from_blacklist", BAD_KEYS)
    if "user_revocation" in capabilities:
        found += cases("revoke_user_tokens", BAD_IDS)
        found += cases("user_tokens_revoked_at", BAD_IDS)
        bad_at: Bad = [
            (datetime(2030, 1, 1), ValueError),
            ("2030-01-01T00:00:00Z", TypeError),
            (1893456000.0, TypeError),
            (date(2030, 1, 1), TypeError),
        ]
        found += cases("revoke_user_tokens", bad_at, "u", at=...)
        found += cases("revoke_user_tokens", BAD_TTLS, "u", expires_in=...)
    return found


def _hit_once(store: Any, algorithm: RateLimitAlgorithm) -> Any:
    return store.check_rate_limit("k", 1, 60, 1, algorithm)


class CacheBadInputContract(ContractBase):
    def test_cache_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(authstore_stores, StoreKind.CACHE, authstore_unreachable_url)
        assert_rejected(targets, cache_bad_cases(targets[0][1].capabilities))

    def test_cache_bad_input_changes_nothing(self, cache_store: CacheSubject) -> None:
        capabilities = cache_store.capabilities
        if "kv" in capabilities:
            cache_store.set("k", "v", ttl=100)
            with pytest.raises(ValueError):
                cache_store.set("k", None)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                cache_store.set("k", "w", ttl=0)
            with pytest.raises(ValueError):
                cache_store.expire("k", -1)
            assert cache_store.get("k") == "v"
            ttl_within(cache_store, "k", 90, 100)
            with pytest.raises(ValueError):
                cache_store.set("k", "w", ttl=1e12)
            with pytest.raises(ValueError):
                cache_store.set("k", "lone \ud800")
            with pytest.raises(ValueError):
                cache_store.expire("k", 10**400)
            assert cache_store.get("k") == "v"
            ttl_within(cache_store, "k", 90, 100)
        if "blacklist" in capabilities:
            cache_store.add_to_blacklist("jti", 100)
            with pytest.raises(ValueError):
                cache_store.add_to_blacklist("jti", 1e12)
            assert cache_store.is_blacklisted("jti") is True
        if "user_revocation" in capabilities:
            at = datetime(2030, 1, 1, tzinfo=UTC)
            cache_store.revoke_user_tokens("u", at=at)
            with pytest.raises(ValueError):
                cache_store.revoke_user_tokens("u", at=datetime(2031, 1, 1))
            read = cache_store.user_tokens_revoked_at("u")
            assert read is not None and abs(read - at) <= MICROSECOND
        if "fixed_window" in capabilities:
            assert cache_store.check_rate_limit("rl", 2, LONG).remaining == 1
            with pytest.raises(ValueError):
                cache_store.check_rate_limit("rl", 2, LONG, 3)
            with pytest.raises(ValueError):
                cache_store.check_rate_limit("rl", 2, 1e-300)
            assert cache_store.check_rate_limit("rl", 2, LONG).remaining == 0

    def test_cache_policy_limits_are_storable(self, cache_store: CacheSubject) -> None:
        """The input policy's extremes are accepted and work on the backend: a TTL of
        MAX_TTL and MIN_TTL, a key of exactly MAX_KEY_BYTES of 4-byte UTF-8, windows of
        MIN_TTL and MAX_WINDOW, a user id of MAX_ID_BYTES."""
        capabilities = cache_store.capabilities
        wide = text_of_bytes(MAX_KEY_BYTES)
        if "kv" in capabilities:
            cache_store.set(wide, "v", ttl=MAX_TTL)
            assert cache_store.get(wide) == "v"
            ttl_within(cache_store, wide, MAX_TTL - 60, MAX_TTL)
            assert cache_store.expire(wide, MAX_TTL) is True
            cache_store.set("brief", "v", ttl=MIN_TTL)
            deep = nested(MAX_JSON_DEPTH)
            cache_store.set("deep", deep)
            assert cache_store.get("deep") == deep
            assert cache_store.add("long", 1, ttl=MAX_TTL) is True
        if "incr" in capabilities:
            assert cache_store.incr("n", 2**62, ttl=MAX_TTL) == 2**62
        if "fixed_window" in capabilities:
            # an int subclass (IntEnum, a settings type) counts as the int it is
            hits = [
                cache_store.check_rate_limit("enum", _Limits.LOGIN, 60).allowed for _ in range(3)
            ]
            assert hits == [True, True, False]
        if "blacklist" in capabilities:
            cache_store.add_to_blacklist(wide, MAX_TTL)
            assert cache_store.is_blacklisted(wide) is True
        if "user_revocation" in capabilities:
            at = cache_store.revoke_user_tokens(WIDE_ID, expires_in=MAX_TTL)
            read = cache_store.user_tokens_revoked_at(WIDE_ID)
            assert read is not None and abs(read - at) <= MICROSECOND
        for algorithm in RateLimitAlgorithm:
            if algorithm.value not in capabilities:
                continue
            long = cache_store.check_rate_limit("long", 2, MAX_WINDOW, algorithm=algorithm)
            assert (long.allowed, long.remaining) == (True, 1), long
            brief = cache_store.check_rate_limit("brief", MAX_LIMIT, MIN_TTL, algorithm=algorithm)
            assert brief.allowed is True, brief

    def test_cache_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        store = self.unreachable(authstore_stores, StoreKind.CACHE, authstore_unreachable_url)
        calls: dict[str, Callable[[Any], Any]] = {}
        if "kv" in store.capabilities:
            calls["get"] = lambda s: s.get("k")
        if "blacklist" in store.capabilities:
            calls["is_blacklisted"] = lambda s: s.is_blacklisted("jti")
        if "user_revocation" in store.capabilities:
            calls["user_tokens_revoked_at"] = lambda s: s.user_tokens_revoked_at("u")
        for algorithm in RateLimitAlgorithm:
            if algorithm.value in store.capabilities:
                calls[algorithm.value] = partial(_hit_once, algorithm=algorithm)
        self.fails_closed(store, calls)

    def test_cache_declares_known_capabilities(self, cache_store: CacheSubject) -> None:
        from authstore.contracts.cache import CACHE_CAPABILITIES

        assert isinstance(cache_store.capabilities, frozenset)
        assert cache_store.capabilities <= CACHE_CAPABILITIES
