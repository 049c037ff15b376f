"""Token revocation in the cache: the blacklist of token ids and per-user revocation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from authstore.contracts.testing.base import LONG, MICROSECOND, ContractBase, assert_utc, require
from authstore.contracts.testing.harness import CacheSubject
from authstore.contracts.values import MAX_KEY_BYTES

__all__ = ["BlacklistContract", "UserRevocationContract"]


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
        jtis = ["a:b", "a", "ключ🔑", "x" * MAX_KEY_BYTES, "0f8fad5b-d9cb-469f-a165-70867728950e"]
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
