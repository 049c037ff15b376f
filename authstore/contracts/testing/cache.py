"""The cache contract, as capability mixins composed into ``CacheContract``.

Each mixin's tests skip when the store's ``capabilities`` lacks the mixin's
``capability``; a backend that does only part of the cache composes only the
mixins it needs, or keeps ``CacheContract`` and lets the declared gaps skip.
"""

from __future__ import annotations

import math
from contextlib import suppress
from typing import Any

import pytest

from authstore.contracts.errors import AuthStoreError
from authstore.contracts.testing.base import LONG, ContractBase, same_value, ttl_within
from authstore.contracts.testing.cache_input import CacheBadInputContract
from authstore.contracts.testing.harness import CacheSubject, Stores
from authstore.contracts.testing.migrate import MigrateContract
from authstore.contracts.testing.races import CacheRaceContract
from authstore.contracts.testing.ratelimit import (
    FixedWindowContract,
    GcraContract,
    SlidingWindowContract,
)
from authstore.contracts.testing.ratelimit_groups import (
    RateLimitGroupContract,
    RateLimitPeekContract,
)
from authstore.contracts.testing.revocation import BlacklistContract, UserRevocationContract
from authstore.contracts.values import MAX_KEY_BYTES

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
    "x" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),
]
"""Keys that must all be distinct entries: separators, trailing spaces, accents (SQL
collations that pad or fold would merge them), 4-byte UTF-8, exactly MAX_KEY_BYTES of UTF-8."""


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
        assert cache_store.get("x" * (MAX_KEY_BYTES - 1)) is None

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
