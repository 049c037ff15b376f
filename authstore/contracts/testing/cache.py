"""The cache contract, as capability mixins composed into ``CacheContract``.

Each mixin's tests skip when the store's ``capabilities`` lacks the mixin's
``capability``; a backend that does only part of the cache composes only the
mixins it needs, or keeps ``CacheContract`` and lets the declared gaps skip.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest

from authstore.contracts.errors import AuthStoreError
from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult, StoreKind
from authstore.contracts.testing.base import (
    BAD_COUNTS,
    BAD_IDS,
    BAD_REQUIRED_TTLS,
    BAD_TTLS,
    BAD_WINDOWS,
    INF,
    LONG,
    NAN,
    SURROGATES,
    Bad,
    BadCase,
    ContractBase,
    assert_rejected,
    assert_utc,
    cases,
    nested,
    require,
    same_value,
)
from authstore.contracts.testing.harness import CacheSubject, Stores
from authstore.contracts.testing.migrate import MigrateContract
from authstore.contracts.testing.races import CacheRaceContract
from authstore.contracts.testing.ratelimit_groups import (
    RateLimitGroupContract,
    RateLimitPeekContract,
)
from authstore.contracts.values import (
    MAX_JSON_DEPTH,
    MAX_TTL,
    MAX_VALUE_BYTES,
    MAX_WINDOW,
    MIN_TTL,
)

__all__ = [
    "BatchContract",
    "BlacklistContract",
    "CacheBadInputContract",
    "CacheContract",
    "FixedWindowContract",
    "GcraContract",
    "IncrContract",
    "KeyValueContract",
    "SlidingWindowContract",
    "UserRevocationContract",
]


MEGABYTE_BYTES = bytes(range(256)) * 4096
MEGABYTE_TEXT = "auth ✓ ключ 🔑 " * 60000

VALUES: list[Any] = [
    pytest.param(0, id="int-zero"),
    pytest.param(1, id="int-one"),
    pytest.param(-42, id="int-negative"),
    pytest.param(2**53 + 1, id="int-beyond-float"),
    pytest.param(2**63, id="int-beyond-int64"),
    pytest.param(1.0, id="float-integral"),
    pytest.param(0.1, id="float-0.1"),
    pytest.param(-2.5e-300, id="float-tiny"),
    pytest.param(1.7976931348623157e308, id="float-max"),
    pytest.param(True, id="bool-true"),
    pytest.param(False, id="bool-false"),
    pytest.param("", id="str-empty"),
    pytest.param("plain", id="str"),
    pytest.param("héllo wörld ✓ 中文 🎉", id="str-unicode"),
    pytest.param("1", id="str-looks-int"),
    pytest.param("null", id="str-looks-null"),
    pytest.param('{"a": 1}', id="str-looks-json"),
    pytest.param("nul\x00inside", id="str-nul"),
    pytest.param(b"", id="bytes-empty"),
    pytest.param(b"\x00", id="bytes-nul"),
    pytest.param(b"\x00\x01\x02binary", id="bytes-leading-nul"),
    pytest.param(b"\xff\xfe\x80 not utf-8", id="bytes-not-utf8"),
    pytest.param(bytes(range(256)), id="bytes-all"),
    pytest.param(b"123", id="bytes-looks-int"),
    pytest.param(b'{"a": 1}', id="bytes-looks-json"),
    pytest.param([], id="list-empty"),
    pytest.param([1, 1.0, True, None, "s", [2, [3]], {"k": "v"}], id="list-mixed"),
    pytest.param({}, id="dict-empty"),
    pytest.param(
        {"a": {"b": [1, 2, {"c": None}]}, "ü": "x", "": 0, "t": True, "f": 0.5}, id="dict-nested"
    ),
    pytest.param(MEGABYTE_BYTES, id="bytes-1MB"),
    pytest.param(MEGABYTE_TEXT, id="str-1MB"),
    pytest.param({"ids": list(range(100000))}, id="dict-large"),
]

KEYS = [
    "a:b",
    "a",
    "a ",
    " ",
    "b",
    "a:b:c",
    ":",
    "e",
    "é",
    "ss",
    "ß",
    "ключ🔑",
    "x" * 1024,
    "é" * 512,
]
"""Keys that must all be distinct entries: separators, trailing spaces, accents (SQL
collations that pad or fold would merge them), 4-byte UTF-8, exactly 1024 UTF-8 bytes."""


def ttl_within(store: CacheSubject, key: str, low: float, high: float) -> float:
    """The key's TTL is a finite number of seconds in (low, high]."""
    left = store.ttl(key)
    assert isinstance(left, float | int) and not isinstance(left, bool), f"ttl({key!r}) = {left!r}"
    assert low < left <= high, f"ttl({key!r}) = {left!r}, expected in ({low}, {high}]"
    return float(left)


class KeyValueContract(ContractBase):
    capability = "kv"

    @pytest.mark.parametrize("value", VALUES)
    def test_kv_value_round_trips_with_its_type(
        self, cache_store: CacheSubject, value: Any
    ) -> None:
        cache_store.set("value", value)
        got = cache_store.get("value")
        assert same_value(got, value), f"stored {type(value).__name__}, got {type(got).__name__}"

    def test_kv_missing_key(self, cache_store: CacheSubject) -> None:
        assert cache_store.get("missing") is None
        assert cache_store.exists("missing") is False
        assert cache_store.ttl("missing") is None
        assert cache_store.delete("missing") is False
        assert cache_store.expire("missing", 10) is False
        assert cache_store.expire("missing", None) is False

    def test_kv_set_overwrites_and_sets_or_clears_ttl(self, cache_store: CacheSubject) -> None:
        cache_store.set("k", 1, ttl=100)
        ttl_within(cache_store, "k", 90, 100)
        cache_store.set("k", "two")
        assert same_value(cache_store.get("k"), "two")
        assert cache_store.ttl("k") == math.inf, "set without ttl must clear the old expiry"
        cache_store.set("k", [3], ttl=50)
        assert same_value(cache_store.get("k"), [3])
        ttl_within(cache_store, "k", 40, 50)
        cache_store.set("k", 4, ttl=math.inf)
        assert cache_store.ttl("k") == math.inf

    def test_kv_fractional_ttl(self, cache_store: CacheSubject) -> None:
        cache_store.set("k", 1, ttl=30.5)
        ttl_within(cache_store, "k", 25, 30.5)

    def test_kv_add_only_when_absent(self, cache_store: CacheSubject) -> None:
        assert cache_store.add("k", "first") is True
        assert cache_store.get("k") == "first"
        assert cache_store.add("k", "second", ttl=10) is False
        assert cache_store.get("k") == "first"
        assert cache_store.ttl("k") == math.inf, "a failed add must not touch the expiry"
        assert cache_store.add("t", b"v", ttl=100) is True
        ttl_within(cache_store, "t", 90, 100)

    def test_kv_delete_and_exists(self, cache_store: CacheSubject) -> None:
        cache_store.set("k", 0)
        cache_store.set("f", False)
        assert cache_store.exists("k") is True
        assert cache_store.exists("f") is True, "a falsy value still exists"
        assert cache_store.delete("k") is True
        assert cache_store.exists("k") is False
        assert cache_store.get("k") is None
        assert cache_store.delete("k") is False
        assert cache_store.get("f") is False

    def test_kv_expire_sets_and_removes_expiry(self, cache_store: CacheSubject) -> None:
        cache_store.set("k", "v")
        assert cache_store.ttl("k") == math.inf
        assert cache_store.expire("k", 100) is True
        ttl_within(cache_store, "k", 90, 100)
        assert cache_store.expire("k", None) is True
        assert cache_store.ttl("k") == math.inf
        assert cache_store.expire("k", 5.5) is True
        ttl_within(cache_store, "k", 4, 5.5)
        assert cache_store.expire("k", math.inf) is True
        assert cache_store.ttl("k") == math.inf
        assert cache_store.get("k") == "v"

    def test_kv_keys_are_exact(self, cache_store: CacheSubject) -> None:
        for index, key in enumerate(KEYS):
            cache_store.set(key, index)
        for index, key in enumerate(KEYS):
            assert same_value(cache_store.get(key), index), f"key {key[:20]!r}"
        assert cache_store.get("A") is None, "keys are case-sensitive"
        assert cache_store.get("x" * 1023) is None

    def test_kv_expiry(self, cache_store: CacheSubject) -> None:
        short = self.short_ttl
        cache_store.set("set", 1, ttl=short)
        assert cache_store.add("add", 2, ttl=short) is True
        cache_store.set("expire", 3)
        assert cache_store.expire("expire", short) is True
        cache_store.set("keep", 4)
        cache_store.set("later", 5, ttl=LONG)
        for key in ("set", "add", "expire"):
            ttl_within(cache_store, key, 0, short)
            assert cache_store.exists(key) is True
        self.wait_expiry()
        for key in ("set", "add", "expire"):
            assert cache_store.get(key) is None, f"{key!r} outlived its ttl"
            assert cache_store.exists(key) is False
            assert cache_store.ttl(key) is None
            assert cache_store.expire(key, 100) is False, "an expired key cannot be revived"
            assert cache_store.delete(key) is False, "an expired key is already gone"
        assert cache_store.add("set", "again") is True, "an expired key can be added again"
        assert cache_store.get("set") == "again"
        assert cache_store.ttl("set") == math.inf
        assert cache_store.get("keep") == 4
        assert cache_store.get("later") == 5
        purged = cache_store.purge_expired()
        assert isinstance(purged, int) and purged >= 0
        assert cache_store.get("keep") == 4 and cache_store.get("set") == "again"

    def test_kv_two_stores_share_data(
        self, cache_store: CacheSubject, authstore_stores: Stores
    ) -> None:
        """Two clients of one backend (two processes of an app) see the same data."""
        other = authstore_stores.cache()
        cache_store.set("shared", {"v": 1})
        assert other.get("shared") == {"v": 1}
        assert other.delete("shared") is True
        assert cache_store.exists("shared") is False

    def test_kv_namespaces_never_meet(
        self, cache_store: CacheSubject, authstore_stores: Stores, authstore_url: str | None
    ) -> None:
        other = authstore_stores.cache(self.other_namespace(authstore_url))
        assert other.namespace != cache_store.namespace
        cache_store.set("k", "mine")
        assert other.get("k") is None
        assert other.exists("k") is False
        assert other.add("k", "theirs") is True
        assert cache_store.get("k") == "mine"
        assert other.delete("k") is True
        assert cache_store.get("k") == "mine"
        if "blacklist" in cache_store.capabilities:
            cache_store.add_to_blacklist("jti", 100)
            assert other.is_blacklisted("jti") is False
        if "fixed_window" in cache_store.capabilities:
            assert cache_store.check_rate_limit("rl", 1, LONG).allowed
            assert other.check_rate_limit("rl", 1, LONG).allowed, "limits are per namespace"
        if "user_revocation" in cache_store.capabilities:
            cache_store.revoke_user_tokens("alice")
            assert other.user_tokens_revoked_at("alice") is None

    def test_kv_context_manager_closes(self, authstore_stores: Stores) -> None:
        view = authstore_stores.cache()

        def use(store: Any) -> bool:
            with store as entered:
                entered.set("k", 1)
                same = entered is store and entered.get("k") == 1
            return bool(same)

        async def use_async(store: Any) -> bool:
            async with store as entered:
                await entered.set("k", 1)
                same = entered is store and await entered.get("k") == 1
            return bool(same)

        assert view.run(use if view.mode == "sync" else use_async), "`with` gives the store back"
        view.mark_closed()
        with suppress(AuthStoreError):  # a closed store may refuse work, but only this way
            view.get("k")
        assert authstore_stores.cache().get("k") == 1, "data written before close persists"

    def test_kv_context_manager_propagates_errors(self, authstore_stores: Stores) -> None:
        view = authstore_stores.cache()

        class Boom(Exception):
            pass

        def use(store: Any) -> None:
            with store:
                raise Boom

        async def use_async(store: Any) -> None:
            async with store:
                raise Boom

        with pytest.raises(Boom):
            view.run(use if view.mode == "sync" else use_async)
        view.mark_closed()


NOT_INTEGERS: list[Any] = ["abc", "5", 1.5, 2.0, True, False, b"5", b"", [1], {"n": 1}, ""]
"""incr must refuse these: a str of digits, an integral float, a bool (an int in Python)."""


class IncrContract(ContractBase):
    capability = "incr"

    def test_incr_missing_key_starts_at_delta(self, cache_store: CacheSubject) -> None:
        assert cache_store.incr("a") == 1
        assert cache_store.incr("a") == 2
        assert cache_store.incr("b", 5) == 5
        assert cache_store.incr("c", -3) == -3
        assert same_value(cache_store.get("a"), 2)
        assert same_value(cache_store.get("c"), -3)
        assert cache_store.ttl("a") == math.inf

    def test_incr_existing_integer(self, cache_store: CacheSubject) -> None:
        cache_store.set("n", 10)
        assert cache_store.incr("n", 5) == 15
        assert cache_store.incr("n", -20) == -5
        assert cache_store.incr("n", 0) == -5
        assert same_value(cache_store.get("n"), -5)
        cache_store.set("big", 2**40)
        assert cache_store.incr("big", 2**40) == 2**41

    def test_incr_ttl_applies_only_on_creation(self, cache_store: CacheSubject) -> None:
        assert cache_store.incr("t", 1, ttl=100) == 1
        ttl_within(cache_store, "t", 90, 100)
        assert cache_store.incr("t", 1, ttl=5000) == 2
        ttl_within(cache_store, "t", 90, 100)
        assert cache_store.incr("t") == 3
        ttl_within(cache_store, "t", 90, 100)
        cache_store.set("plain", 1)
        assert cache_store.incr("plain", 1, ttl=100) == 2
        assert cache_store.ttl("plain") == math.inf, "an existing key keeps its (absent) expiry"

    def test_incr_refuses_non_integers(self, cache_store: CacheSubject) -> None:
        for value in NOT_INTEGERS:
            cache_store.set("x", value)
            with pytest.raises(ValueError):
                cache_store.incr("x")
            assert same_value(cache_store.get("x"), value), f"a failed incr changed {value!r}"

    def test_incr_is_signed_64_bit(self, cache_store: CacheSubject) -> None:
        """Counters are signed 64-bit, as on every server (Redis INCRBY, SQL BIGINT, Mongo
        $inc on a long): the whole range works, overflow is a ValueError that changes
        nothing, never a wrap-around, a float or a bigger integer on one backend only."""
        top, bottom = 2**63 - 1, -(2**63)
        for start, delta, expected in [
            (2**62, -1, 2**62 - 1),
            (top - 1, 1, top),
            (bottom + 1, -1, bottom),
        ]:
            cache_store.set("n", start)
            assert cache_store.incr("n", delta) == expected, (start, delta)
        for start, delta in [(top, 1), (bottom, -1), (top - 5, 2**62), (2**63, 1)]:
            cache_store.set("n", start)
            with pytest.raises(ValueError):
                cache_store.incr("n", delta)
            assert same_value(cache_store.get("n"), start), "a refused incr changed the value"

    def test_incr_after_expiry_starts_again(self, cache_store: CacheSubject) -> None:
        assert cache_store.incr("e", 7, ttl=self.short_ttl) == 7
        cache_store.set("s", 40, ttl=self.short_ttl)
        self.wait_expiry()
        assert cache_store.incr("e", 1, ttl=100) == 1
        ttl_within(cache_store, "e", 90, 100)
        assert cache_store.incr("s") == 1
        assert cache_store.ttl("s") == math.inf

    def test_incr_is_atomic(self, cache_store: CacheSubject) -> None:
        results = cache_store.concurrently(100, lambda store: store.incr("n"))
        assert sorted(results) == list(range(1, 101))
        assert cache_store.get("n") == 100


class BatchContract(ContractBase):
    capability = "batch"

    def test_batch_get_many(self, cache_store: CacheSubject) -> None:
        cache_store.set("a", 1)
        cache_store.set("b", b"\x00b")
        cache_store.set("c", 1.0)
        got = cache_store.get_many(["a", "b", "c", "missing"])
        assert same_value(got, {"a": 1, "b": b"\x00b", "c": 1.0})
        assert same_value(cache_store.get_many(["a", "a", "missing", "a"]), {"a": 1})
        assert cache_store.get_many([]) == {}
        assert cache_store.get_many(k for k in ("b", "zzz")) == {"b": b"\x00b"}
        assert cache_store.get_many(("missing",)) == {}

    def test_batch_set_many(self, cache_store: CacheSubject) -> None:
        cache_store.set("old", "x", ttl=100)
        values: dict[str, Any] = {
            "old": "new",
            "int": 3,
            "bytes": b"\xff",
            "list": [None],
            "ключ:1": {"a": True},
        }
        cache_store.set_many(values)
        assert same_value(cache_store.get_many(list(values)), values)
        assert cache_store.ttl("old") == math.inf, "set_many without ttl clears it, like set"
        cache_store.set_many({"t1": 1, "t2": 2}, ttl=100)
        ttl_within(cache_store, "t1", 90, 100)
        ttl_within(cache_store, "t2", 90, 100)
        cache_store.set_many({})
        cache_store.set_many({}, ttl=10)

    def test_batch_delete_many(self, cache_store: CacheSubject) -> None:
        cache_store.set_many({"a": 1, "b": 2, "c": 3})
        assert cache_store.delete_many(["a", "a", "missing"]) == 1
        assert cache_store.delete_many([]) == 0
        assert cache_store.delete_many(["missing"]) == 0
        assert cache_store.delete_many(iter(["b", "c"])) == 2
        assert cache_store.get_many(["a", "b", "c"]) == {}

    def test_batch_expiry(self, cache_store: CacheSubject) -> None:
        cache_store.set_many({"a": 1, "b": 2}, ttl=self.short_ttl)
        cache_store.set("c", 3)
        assert cache_store.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
        self.wait_expiry()
        assert cache_store.get_many(["a", "b", "c"]) == {"c": 3}
        assert cache_store.delete_many(["a", "b", "c"]) == 1, "expired keys are not counted"

    def test_batch_bad_input_writes_nothing(self, cache_store: CacheSubject) -> None:
        """All arguments are checked before the first write: nothing is half-written."""
        loose: Any = cache_store
        with pytest.raises(ValueError):
            loose.set_many({"good": 1, "bad": None})
        with pytest.raises(TypeError):
            loose.set_many({"good": 1, "bad": (1, 2)})
        with pytest.raises(TypeError):
            loose.set_many({"good": 1, 2: "bad"})
        with pytest.raises(ValueError):
            cache_store.set_many({"good": 1}, ttl=-1)
        assert cache_store.exists("good") is False
        cache_store.set("kept", 1)
        with pytest.raises(TypeError):
            loose.delete_many(["kept", None])
        with pytest.raises(ValueError):
            cache_store.delete_many(["kept", ""])
        assert cache_store.get("kept") == 1


@dataclass(frozen=True)
class Limiter:
    """``check_rate_limit`` bound to one algorithm, with that algorithm's time bounds."""

    store: CacheSubject
    algorithm: RateLimitAlgorithm

    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> RateLimitResult:
        return self.store.check_rate_limit(key, limit, window, cost, self.algorithm)

    def horizon(self, window: float) -> float:
        """The longest reset_after/retry_after: a sliding window remembers the previous
        window, so a refused hit may have to wait into the next one (up to 2 windows)."""
        sliding = self.algorithm is RateLimitAlgorithm.SLIDING_WINDOW
        return 2 * window if sliding else window

    def refill_wait(self, window: float) -> float:
        """Idle time after which the limiter is surely back to a full ``limit``."""
        return self.horizon(window) + 0.1


def check_result(result: RateLimitResult, limiter: Limiter, window: float) -> None:
    """Shape and bounds every result must respect, allowed or refused."""
    assert isinstance(result, RateLimitResult)
    allowed, remaining, reset_after = result
    assert (allowed, remaining, reset_after) == (
        result.allowed,
        result.remaining,
        result.reset_after,
    )
    assert len(tuple(result)) == 3
    assert bool(result) is result.allowed
    assert 0 <= result.remaining <= result.limit
    assert 0 <= result.reset_after <= limiter.horizon(window) + 0.01, result
    if result.allowed:
        assert result.retry_after == 0, result
    else:
        assert 0 < result.retry_after <= limiter.horizon(window) + 0.01, result


_ALGORITHMS_ATTRIBUTE = "rate_limit_algorithm"


class _RateLimitTests(ContractBase):
    """Written once, run for each algorithm whose mixin the test class composes."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "rate_algorithm" not in metafunc.fixturenames or metafunc.cls is None:
            return
        algorithms = [
            vars(klass)[_ALGORITHMS_ATTRIBUTE]
            for klass in metafunc.cls.__mro__
            if _ALGORITHMS_ATTRIBUTE in vars(klass)
        ]
        metafunc.parametrize("rate_algorithm", algorithms, ids=[a.value for a in algorithms])

    @pytest.fixture
    def limiter(self, cache_store: CacheSubject, rate_algorithm: RateLimitAlgorithm) -> Limiter:
        require(cache_store, rate_algorithm.value)
        return Limiter(cache_store, rate_algorithm)

    def test_rate_limit_exactly_limit_pass(self, limiter: Limiter) -> None:
        results = [limiter.hit("login", 5, LONG) for _ in range(8)]
        for result in results:
            check_result(result, limiter, LONG)
            assert result.limit == 5
        assert [r.allowed for r in results] == [True] * 5 + [False] * 3
        assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0, 0]
        assert all(r.reset_after > 0 for r in results)

    def test_rate_limit_cost(self, limiter: Limiter) -> None:
        """Weighted hits; a refused hit consumes nothing, so a smaller one still fits."""
        steps = [
            (4, True, 6),
            (4, True, 2),
            (4, False, 2),
            (3, False, 2),
            (2, True, 0),
            (1, False, 0),
        ]
        for cost, allowed, remaining in steps:
            result = limiter.hit("k", 10, LONG, cost)
            check_result(result, limiter, LONG)
            assert (result.allowed, result.remaining) == (allowed, remaining), (cost, result)
        full = limiter.hit("whole", 7, LONG, 7)
        assert (full.allowed, full.remaining) == (True, 0)

    def test_rate_limit_refused_hits_consume_nothing(self, limiter: Limiter) -> None:
        """Hammering a closed limiter must not extend the lock-out: after the usual
        refill time the full limit passes again, then the next hit is refused."""
        window = 0.45
        # GCRA and the sliding window give a unit back every window/limit: a server slow
        # enough to spend that long on the hits below has rightly earned one more.
        earns_one = window / 3
        first = time.monotonic()
        assert all(limiter.hit("k", 3, window).allowed for _ in range(3))
        for _ in range(20):
            allowed = limiter.hit("k", 3, window).allowed
            if time.monotonic() - first >= earns_one:
                break
            assert not allowed
        time.sleep(limiter.refill_wait(window))
        started = time.monotonic()
        again = [limiter.hit("k", 3, window).allowed for _ in range(4)]
        assert again[:3] == [True] * 3
        if time.monotonic() - started < earns_one:
            assert again[3] is False

    def test_rate_limit_retry_after_is_honest(self, limiter: Limiter) -> None:
        window = 0.3
        assert limiter.hit("k", 2, window).allowed
        assert limiter.hit("k", 2, window).allowed
        refused = limiter.hit("k", 2, window)
        assert not refused.allowed
        check_result(refused, limiter, window)
        time.sleep(refused.retry_after + 0.05)
        assert limiter.hit("k", 2, window).allowed, f"still refused after {refused.retry_after} s"

    def test_rate_limit_reset(self, limiter: Limiter) -> None:
        assert [limiter.hit("k", 2, LONG).allowed for _ in range(3)] == [True, True, False]
        limiter.store.reset_rate_limit("k")
        assert [limiter.hit("k", 2, LONG).allowed for _ in range(3)] == [True, True, False]
        limiter.store.reset_rate_limit("never-used")

    def test_rate_limit_algorithm_as_enum_or_string(self, limiter: Limiter) -> None:
        store, algorithm = limiter.store, limiter.algorithm
        first = store.check_rate_limit("k", 3, LONG, algorithm=algorithm)
        second = store.check_rate_limit("k", 3, LONG, algorithm=algorithm.value)
        third = store.check_rate_limit("k", 3, LONG, 1, algorithm.value)
        assert [r.remaining for r in (first, second, third)] == [2, 1, 0]

    def test_rate_limit_keys_and_algorithms_are_independent(self, limiter: Limiter) -> None:
        store = limiter.store
        assert [limiter.hit("k", 1, LONG).allowed for _ in range(2)] == [True, False]
        assert limiter.hit("other", 1, LONG).allowed
        for algorithm in RateLimitAlgorithm:
            if algorithm is not limiter.algorithm and algorithm.value in store.capabilities:
                result = store.check_rate_limit("k", 1, LONG, algorithm=algorithm)
                assert result.allowed, (
                    f"{limiter.algorithm.value} state leaked into {algorithm.value}"
                )
        if "kv" in store.capabilities:
            assert store.get("k") is None and store.exists("k") is False

    def test_rate_limit_changed_limit(self, limiter: Limiter) -> None:
        """Lowering the limit of a busy key keeps every result within its bounds."""
        for _ in range(7):
            check_result(limiter.hit("k", 10, LONG), limiter, LONG)
        lowered = limiter.hit("k", 5, LONG)
        check_result(lowered, limiter, LONG)
        assert lowered.limit == 5
        if limiter.algorithm is not RateLimitAlgorithm.GCRA:
            assert (lowered.allowed, lowered.remaining) == (False, 0)

    def test_rate_limit_concurrent_hits(self, limiter: Limiter) -> None:
        """100 hits at once on a limit of 10: exactly 10 pass, each seeing its own count."""
        algorithm = limiter.algorithm
        results = limiter.store.concurrently(
            100, lambda store: store.check_rate_limit("hot", 10, LONG, algorithm=algorithm)
        )
        allowed = [r for r in results if r.allowed]
        assert len(allowed) == 10
        assert sorted(r.remaining for r in allowed) == list(range(10))
        assert not limiter.hit("hot", 10, LONG).allowed

    def test_rate_limit_concurrent_hits_on_two_clients(
        self, limiter: Limiter, authstore_stores: Stores
    ) -> None:
        """The limit holds across store instances (two app processes), not just in one."""
        algorithm = limiter.algorithm
        clients = itertools.cycle([limiter.store.raw, authstore_stores.cache().raw])
        results = limiter.store.concurrently(
            100, lambda _: next(clients).check_rate_limit("hot", 10, LONG, 3, algorithm)
        )
        assert sum(1 for r in results if r.allowed) == 3


class FixedWindowContract(_RateLimitTests):
    capability = "fixed_window"
    rate_limit_algorithm = RateLimitAlgorithm.FIXED_WINDOW

    def test_fixed_window_is_the_default_algorithm(self, cache_store: CacheSubject) -> None:
        assert cache_store.check_rate_limit("k", 2, LONG).remaining == 1
        explicit = cache_store.check_rate_limit("k", 2, LONG, algorithm="fixed_window")
        assert explicit.remaining == 0


class SlidingWindowContract(_RateLimitTests):
    capability = "sliding_window"
    rate_limit_algorithm = RateLimitAlgorithm.SLIDING_WINDOW


class GcraContract(_RateLimitTests):
    capability = "gcra"
    rate_limit_algorithm = RateLimitAlgorithm.GCRA

    def test_gcra_refills_gradually(self, cache_store: CacheSubject) -> None:
        """A token bucket gives back one hit per window/limit, not all at the window's end."""
        limit, window = 4, 1.6
        assert all(
            cache_store.check_rate_limit("k", limit, window, algorithm="gcra") for _ in range(4)
        )
        time.sleep(window / limit + 0.05)
        assert cache_store.check_rate_limit("k", limit, window, algorithm="gcra").allowed
        assert not cache_store.check_rate_limit("k", limit, window, algorithm="gcra").allowed


class BlacklistContract(ContractBase):
    capability = "blacklist"

    def test_blacklist_add_check_remove(self, cache_store: CacheSubject) -> None:
        assert cache_store.is_blacklisted("jti-1") is False
        cache_store.add_to_blacklist("jti-1", 100)
        assert cache_store.is_blacklisted("jti-1") is True
        assert cache_store.is_blacklisted("jti-2") is False
        cache_store.add_to_blacklist("jti-1", 200.5)
        assert cache_store.is_blacklisted("jti-1") is True
        assert cache_store.remove_from_blacklist("jti-1") is True
        assert cache_store.is_blacklisted("jti-1") is False
        assert cache_store.remove_from_blacklist("jti-1") is False
        cache_store.add_to_blacklist("jti-1", 100)
        assert cache_store.is_blacklisted("jti-1") is True

    def test_blacklist_jti_forms(self, cache_store: CacheSubject) -> None:
        jtis = ["a:b", "a", "ключ🔑", "x" * 1024, "0f8fad5b-d9cb-469f-a165-70867728950e"]
        for jti in jtis[::2]:
            cache_store.add_to_blacklist(jti, 100)
        for index, jti in enumerate(jtis):
            assert cache_store.is_blacklisted(jti) is (index % 2 == 0), jti[:20]

    def test_blacklist_expiry(self, cache_store: CacheSubject) -> None:
        cache_store.add_to_blacklist("short", self.short_ttl)
        cache_store.add_to_blacklist("long", LONG)
        assert cache_store.is_blacklisted("short") is True
        self.wait_expiry()
        assert cache_store.is_blacklisted("short") is False
        assert cache_store.is_blacklisted("long") is True
        assert cache_store.remove_from_blacklist("short") is False

    def test_blacklist_is_never_shortened(self, cache_store: CacheSubject) -> None:
        """A second add with a shorter life must not un-revoke the token early; a longer
        one extends it. Revocations fail closed, like ``revoke_user_tokens``."""
        cache_store.add_to_blacklist("long-then-short", LONG)
        cache_store.add_to_blacklist("long-then-short", self.short_ttl)
        cache_store.add_to_blacklist("short-then-long", self.short_ttl)
        cache_store.add_to_blacklist("short-then-long", LONG)
        self.wait_expiry()
        assert cache_store.is_blacklisted("long-then-short") is True
        assert cache_store.is_blacklisted("short-then-long") is True

    def test_blacklist_until_an_instant(self, cache_store: CacheSubject) -> None:
        """``expires_at``: an absolute expiry (a token's ``exp``), in any time zone."""
        now = datetime.now(UTC)
        cache_store.add_to_blacklist("far", expires_at=now + timedelta(hours=1))
        tokyo = timezone(timedelta(hours=9))
        cache_store.add_to_blacklist("tz", expires_at=(now + timedelta(hours=1)).astimezone(tokyo))
        cache_store.add_to_blacklist(
            "soon", expires_at=datetime.now(UTC) + timedelta(seconds=self.short_ttl)
        )
        assert cache_store.is_blacklisted("far") is True
        assert cache_store.is_blacklisted("tz") is True
        assert cache_store.is_blacklisted("soon") is True
        self.wait_expiry()
        assert cache_store.is_blacklisted("soon") is False, "it lasts until the instant"
        assert cache_store.is_blacklisted("far") is True
        cache_store.add_to_blacklist("far", expires_at=datetime.now(UTC) + timedelta(seconds=1))
        cache_store.add_to_blacklist("far", 0.5)
        time.sleep(1.2)
        assert cache_store.is_blacklisted("far") is True, "an entry's life is never shortened"

    def test_blacklist_past_instant_stores_nothing(self, cache_store: CacheSubject) -> None:
        """A token already expired for the core needs no entry: none is made, no error."""
        past = datetime.now(UTC) - timedelta(seconds=5)
        cache_store.add_to_blacklist("gone", expires_at=past)
        cache_store.add_to_blacklist("gone", expires_at=datetime(2001, 1, 1, tzinfo=UTC))
        assert cache_store.is_blacklisted("gone") is False
        assert cache_store.remove_from_blacklist("gone") is False, "nothing was stored"
        cache_store.add_to_blacklist("kept", LONG)
        cache_store.add_to_blacklist("kept", expires_at=past)
        assert cache_store.is_blacklisted("kept") is True, "a past instant un-revokes nothing"

    def test_blacklist_is_apart_from_keys(self, cache_store: CacheSubject) -> None:
        require(cache_store, "kv")
        cache_store.set("x", 1)
        cache_store.add_to_blacklist("x", 100)
        assert cache_store.get("x") == 1
        assert cache_store.delete("x") is True
        assert cache_store.is_blacklisted("x") is True, "deleting a key must not un-revoke a token"
        cache_store.add_to_blacklist("y", 100)
        assert cache_store.exists("y") is False
        assert cache_store.add("y", 2) is True
        assert cache_store.remove_from_blacklist("y") is True
        assert cache_store.get("y") == 2


MICROSECOND = timedelta(microseconds=1)


class UserRevocationContract(ContractBase):
    capability = "user_revocation"

    def test_revocation_unknown_user(self, cache_store: CacheSubject) -> None:
        assert cache_store.user_tokens_revoked_at("nobody") is None

    def test_revocation_keeps_microseconds(self, cache_store: CacheSubject) -> None:
        for user, at in [
            ("future", datetime(2031, 5, 6, 7, 8, 9, 123457, tzinfo=UTC)),
            ("past", datetime.now(UTC).replace(microsecond=987654) - timedelta(hours=1)),
            ("odd", datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        ]:
            stored = assert_utc(cache_store.revoke_user_tokens(user, at=at))
            assert abs(stored - at) <= MICROSECOND, (stored, at)
            read = assert_utc(cache_store.user_tokens_revoked_at(user))
            assert abs(read - at) <= MICROSECOND, (read, at)

    def test_revocation_any_timezone_reads_back_utc(self, cache_store: CacheSubject) -> None:
        at = datetime(2030, 1, 1, 12, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2)))
        stored = assert_utc(cache_store.revoke_user_tokens("u", at=at))
        assert abs(stored - at) <= MICROSECOND
        assert stored.hour == 10

    def test_revocation_default_is_now(self, cache_store: CacheSubject) -> None:
        before = datetime.now(UTC)
        stored = assert_utc(cache_store.revoke_user_tokens("u"))
        after = datetime.now(UTC)
        assert before - timedelta(seconds=2) <= stored <= after + timedelta(seconds=2)
        read = assert_utc(cache_store.user_tokens_revoked_at("u"))
        assert abs(read - stored) <= MICROSECOND
        again = cache_store.revoke_user_tokens("u")
        assert again >= stored

    def test_revocation_never_moves_backwards(self, cache_store: CacheSubject) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        assert abs(cache_store.revoke_user_tokens("u", at=later) - later) <= MICROSECOND
        for earlier in (later - timedelta(days=1), later - timedelta(microseconds=500)):
            kept = cache_store.revoke_user_tokens("u", at=earlier)
            assert abs(kept - later) <= MICROSECOND, "an earlier instant must not un-revoke"
        assert abs(cache_store.revoke_user_tokens("u") - later) <= MICROSECOND, "now < stored"
        read = cache_store.user_tokens_revoked_at("u")
        assert read is not None and abs(read - later) <= MICROSECOND
        nudged = later + timedelta(microseconds=500)
        assert abs(cache_store.revoke_user_tokens("u", at=nudged) - nudged) <= MICROSECOND
        read = cache_store.user_tokens_revoked_at("u")
        assert read is not None and abs(read - nudged) <= MICROSECOND

    def test_revocation_is_per_user(self, cache_store: CacheSubject) -> None:
        cache_store.revoke_user_tokens("alice")
        assert cache_store.user_tokens_revoked_at("bob") is None
        assert cache_store.user_tokens_revoked_at("alice") is not None

    def test_revocation_expires(self, cache_store: CacheSubject) -> None:
        cache_store.revoke_user_tokens("short", expires_in=self.short_ttl)
        cache_store.revoke_user_tokens("long", expires_in=LONG)
        cache_store.revoke_user_tokens("forever")
        assert cache_store.user_tokens_revoked_at("short") is not None
        self.wait_expiry()
        assert cache_store.user_tokens_revoked_at("short") is None
        assert cache_store.user_tokens_revoked_at("long") is not None
        assert cache_store.user_tokens_revoked_at("forever") is not None

    def test_revocation_expiry_is_never_shortened(self, cache_store: CacheSubject) -> None:
        """A later call with a shorter ``expires_in`` (or none) must not let the earlier
        revocation lapse while tokens it covers may still be alive."""
        cache_store.revoke_user_tokens("long", expires_in=LONG)
        cache_store.revoke_user_tokens("long", expires_in=self.short_ttl)
        cache_store.revoke_user_tokens("forever")
        cache_store.revoke_user_tokens("forever", expires_in=self.short_ttl)
        cache_store.revoke_user_tokens("extended", expires_in=self.short_ttl)
        cache_store.revoke_user_tokens("extended", expires_in=LONG)
        self.wait_expiry()
        for user in ("long", "forever", "extended"):
            assert cache_store.user_tokens_revoked_at(user) is not None, user

    def test_revocation_concurrent_takes_the_latest(self, cache_store: CacheSubject) -> None:
        base = datetime.now(UTC) + timedelta(minutes=5)
        instants = iter([base + timedelta(milliseconds=7 * i) for i in range(50)])
        cache_store.concurrently(50, lambda store: store.revoke_user_tokens("u", at=next(instants)))
        latest = base + timedelta(milliseconds=7 * 49)
        read = cache_store.user_tokens_revoked_at("u")
        assert read is not None and abs(read - latest) <= MICROSECOND, (read, latest)


# -- bad input ---------------------------------------------------------------------------

BAD_KEYS: Bad = [
    (1, TypeError),
    (1.5, TypeError),
    (None, TypeError),
    (b"key", TypeError),
    (["k"], TypeError),
    ("", ValueError),
    ("x" * 1025, ValueError),
    ("é" * 513, ValueError),
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
    (["ok", "x" * 1025], ValueError),
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
        MIN_TTL and MAX_WINDOW, a 255-byte user id."""
        capabilities = cache_store.capabilities
        wide = "\U0001f600" * 256
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
            user = "\U0001f600" * 63 + "abc"
            at = cache_store.revoke_user_tokens(user, expires_in=MAX_TTL)
            read = cache_store.user_tokens_revoked_at(user)
            assert read is not None and abs(read - at) <= MICROSECOND
        for algorithm in RateLimitAlgorithm:
            if algorithm.value not in capabilities:
                continue
            long = cache_store.check_rate_limit("long", 2, MAX_WINDOW, algorithm=algorithm)
            assert (long.allowed, long.remaining) == (True, 1), long
            brief = cache_store.check_rate_limit("brief", 2**31 - 1, MIN_TTL, algorithm=algorithm)
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


class CacheContract(
    MigrateContract,
    KeyValueContract,
    IncrContract,
    BatchContract,
    FixedWindowContract,
    SlidingWindowContract,
    GcraContract,
    RateLimitGroupContract,
    RateLimitPeekContract,
    BlacklistContract,
    UserRevocationContract,
    CacheBadInputContract,
    CacheRaceContract,
):
    """The whole cache contract; capabilities a store does not declare skip."""
