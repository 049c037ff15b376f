"""The magic-link store's contract: ``MagicLinkContract``."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import IssuedMagicLink, MagicLinkRecord, StoreKind
from authstore.contracts.testing.base import (
    A_TOKEN,
    BAD_CALLER_TOKENS,
    BAD_IDS,
    BAD_OPTIONAL_IDS,
    BAD_OPTIONAL_TEXT,
    BAD_REQUIRED_TTLS,
    BAD_TOKENS,
    LONG,
    WIDE_ID,
    Bad,
    ContractBase,
    assert_rejected,
    assert_utc,
    caller_token,
    cases,
    close_to,
    enters_and_closes,
    outcome,
    same_times,
    text_beyond,
    text_of_bytes,
    token_is_secret,
)
from authstore.contracts.testing.harness import MagicLinkSubject, Stores
from authstore.contracts.testing.races import MagicLinkRaceContract
from authstore.contracts.values import (
    MAX_EMAIL_BYTES,
    MAX_IP_BYTES,
    MAX_TTL,
    MAX_USER_AGENT_BYTES,
    MIN_TTL,
)

__all__ = ["MagicLinkContract"]


BAD_TOKEN_HASHES: Bad = [
    ("", ValueError),
    ("a" * 63, ValueError),
    ("a" * 65, ValueError),
    ("A" * 64, ValueError),
    ("g" * 64, ValueError),
    (" " + "a" * 63, ValueError),
    (b"a" * 64, TypeError),
    (None, TypeError),
    (1, TypeError),
]
"""issue_hashed's token hash: exactly what hash_token gives, 64 lowercase hex characters."""


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def assert_same_link(got: MagicLinkRecord | None, expected: MagicLinkRecord) -> None:
    assert isinstance(got, MagicLinkRecord), got
    for name in ("id", "user_id", "email", "application_id", "ip_address", "user_agent"):
        assert getattr(got, name) == getattr(expected, name), name
    assert same_times(assert_utc(got.created_at), expected.created_at)
    assert same_times(assert_utc(got.expires_at), expected.expires_at)


class MagicLinkCallerTokenContract(ContractBase):
    """``issue(token=...)`` and ``issue_hashed``: a core's own link tokens, stored hashed."""

    def test_magic_caller_token(self, magic_link_store: MagicLinkSubject) -> None:
        token = caller_token()
        record, returned = magic_link_store.issue("alice", "a@example.com", ttl=LONG, token=token)
        assert returned == token and token not in repr(record)
        assert_same_link(magic_link_store.peek(token), record)
        assert magic_link_store.peek(token.upper()) is None
        assert_same_link(magic_link_store.consume(token), record)
        assert magic_link_store.consume(token) is None

    def test_magic_hashed_issue(self, magic_link_store: MagicLinkSubject) -> None:
        token = caller_token()
        before = datetime.now(UTC)
        record = magic_link_store.issue_hashed(
            "alice", "a@example.com", sha256_hex(token), ttl=600, application_id="web"
        )
        assert isinstance(record, MagicLinkRecord)
        assert (record.user_id, record.email, record.application_id) == (
            "alice",
            "a@example.com",
            "web",
        )
        assert close_to(assert_utc(record.created_at), before)
        assert abs((record.expires_at - record.created_at).total_seconds() - 600) <= 1
        assert_same_link(magic_link_store.peek(token), record)
        assert magic_link_store.consume(sha256_hex(token), application_id="web") is None
        assert magic_link_store.consume(token) is None, "bound to its application"
        assert_same_link(magic_link_store.consume(token, application_id="web"), record)
        assert magic_link_store.consume(token, application_id="web") is None
        # revoke_previous applies as for issue()
        first, second = caller_token(), caller_token()
        magic_link_store.issue_hashed("bob", "b@example.com", sha256_hex(first), ttl=LONG)
        magic_link_store.issue_hashed("bob", "b@example.com", sha256_hex(second), ttl=LONG)
        assert magic_link_store.peek(first) is None and magic_link_store.peek(second) is not None
        third = caller_token()
        magic_link_store.issue_hashed(
            "bob", "b@example.com", sha256_hex(third), ttl=LONG, revoke_previous=False
        )
        assert magic_link_store.peek(second) is not None
        assert magic_link_store.revoke_user("bob") == 2

    def test_magic_caller_token_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(
            authstore_stores, StoreKind.MAGIC_LINKS, authstore_unreachable_url
        )
        digest = sha256_hex(A_TOKEN)
        found = cases("issue", BAD_CALLER_TOKENS, "u", "a@example.com", ttl=60, token=...)
        found += cases("issue_hashed", BAD_TOKEN_HASHES, "u", "a@example.com", ttl=60)
        found += cases("issue_hashed", BAD_IDS, ..., "a@example.com", digest, ttl=60)
        found += cases("issue_hashed", BAD_OPTIONAL_TEXT, "u", ..., digest, ttl=60)
        found += cases("issue_hashed", BAD_REQUIRED_TTLS, "u", "a@example.com", digest, ttl=...)
        found += cases(
            "issue_hashed", BAD_OPTIONAL_IDS, "u", "a@example.com", digest, ttl=60, ip_address=...
        )
        bad_flags: Bad = [("yes", TypeError), (1, TypeError), (None, TypeError)]
        found += cases(
            "issue_hashed", bad_flags, "u", "a@example.com", digest, ttl=60, revoke_previous=...
        )
        assert_rejected(targets, found)

    def test_magic_caller_token_bad_input_changes_nothing(
        self, magic_link_store: MagicLinkSubject
    ) -> None:
        _, kept = magic_link_store.issue("alice", "a@example.com", ttl=LONG)
        for bad, error in BAD_CALLER_TOKENS:
            with pytest.raises(error):
                magic_link_store.issue("alice", "a@example.com", ttl=LONG, token=bad)
        for bad, error in BAD_TOKEN_HASHES:
            with pytest.raises(error):
                magic_link_store.issue_hashed("alice", "a@example.com", bad, ttl=LONG)
        assert magic_link_store.peek(kept) is not None

    def test_magic_taken_token_is_refused(self, magic_link_store: MagicLinkSubject) -> None:
        """A link's hash, used, revoked or not, is taken until the link expires."""
        usable, used, revoked = caller_token(), caller_token(), caller_token()
        record, _ = magic_link_store.issue("alice", "a@example.com", ttl=LONG, token=usable)
        magic_link_store.issue_hashed("bob", "b@example.com", sha256_hex(used), ttl=LONG)
        assert magic_link_store.consume(used) is not None
        magic_link_store.issue("carol", "c@example.com", ttl=LONG, token=revoked)
        assert magic_link_store.revoke_user("carol") == 1
        magic_link_store.purge_expired()
        for token in (usable, used, revoked):
            for revoke_previous in (True, False):
                with pytest.raises(TokenInUseError):
                    magic_link_store.issue(
                        "mallory",
                        "m@example.com",
                        ttl=LONG,
                        token=token,
                        revoke_previous=revoke_previous,
                    )
                with pytest.raises(TokenInUseError):
                    magic_link_store.issue_hashed(
                        "alice",
                        "m@example.com",
                        sha256_hex(token),
                        ttl=LONG,
                        revoke_previous=revoke_previous,
                    )
        assert_same_link(magic_link_store.peek(usable), record)
        assert magic_link_store.peek(used) is None and magic_link_store.consume(used) is None
        assert magic_link_store.peek(revoked) is None and magic_link_store.consume(revoked) is None
        assert magic_link_store.revoke_user("mallory") == 0
        assert_same_link(magic_link_store.consume(usable), record)

    def test_magic_expired_token_may_be_reused(self, magic_link_store: MagicLinkSubject) -> None:
        token, used = caller_token(), caller_token()
        magic_link_store.issue("alice", "old@example.com", ttl=self.short_ttl, token=token)
        magic_link_store.issue_hashed("bob", "b@example.com", sha256_hex(used), ttl=self.short_ttl)
        assert magic_link_store.consume(used) is not None
        self.wait_expiry()
        new, _ = magic_link_store.issue("carol", "new@example.com", ttl=LONG, token=token)
        assert_same_link(magic_link_store.peek(token), new)
        again = magic_link_store.issue_hashed("dave", "d@example.com", sha256_hex(used), ttl=LONG)
        assert_same_link(magic_link_store.consume(used), again)

    def test_magic_concurrent_issue_with_one_token(
        self, magic_link_store: MagicLinkSubject
    ) -> None:
        token = caller_token()
        digest = sha256_hex(token)
        results = magic_link_store.concurrently(
            20,
            outcome(lambda store: store.issue_hashed("alice", "a@example.com", digest, ttl=LONG)),
        )
        won = [r for r in results if isinstance(r, MagicLinkRecord)]
        lost = [r for r in results if isinstance(r, TokenInUseError)]
        assert (len(won), len(lost)) == (1, 19), results
        assert_same_link(magic_link_store.peek(token), won[0])
        other = caller_token()
        results = magic_link_store.concurrently(
            20,
            outcome(
                lambda store: store.issue(
                    "bob", "b@example.com", ttl=LONG, token=other, revoke_previous=False
                )
            ),
        )
        assert sum(1 for r in results if isinstance(r, IssuedMagicLink)) == 1, results
        assert sum(1 for r in results if isinstance(r, TokenInUseError)) == 19, results
        assert magic_link_store.revoke_user("bob") == 1
        assert magic_link_store.consume(token) is not None


class MagicLinkContract(MagicLinkCallerTokenContract, MagicLinkRaceContract):
    def issue(
        self, store: MagicLinkSubject, user: str = "alice", **options: Any
    ) -> IssuedMagicLink:
        options.setdefault("ttl", LONG)
        return store.issue(user, f"{user}@example.com", **options)

    def test_magic_issue(self, magic_link_store: MagicLinkSubject) -> None:
        before = datetime.now(UTC)
        issued = magic_link_store.issue(
            "alice",
            "Alice.Ünïcode@example.com",
            ttl=600,
            application_id="web",
            ip_address="192.0.2.1",
            user_agent="curl/8 ✓",
        )
        assert isinstance(issued, IssuedMagicLink)
        record, token = issued
        token_is_secret(token, record)
        assert isinstance(record, MagicLinkRecord) and isinstance(record.id, str) and record.id
        assert (record.user_id, record.email, record.application_id) == (
            "alice",
            "Alice.Ünïcode@example.com",
            "web",
        )
        assert (record.ip_address, record.user_agent, record.consumed_at) == (
            "192.0.2.1",
            "curl/8 ✓",
            None,
        )
        assert close_to(assert_utc(record.created_at), before)
        lifetime = (assert_utc(record.expires_at) - record.created_at).total_seconds()
        assert abs(lifetime - 600) <= 1, lifetime
        second = self.issue(magic_link_store, "bob")
        assert second.token != token and second.record.id != record.id

    def test_magic_peek_does_not_consume(self, magic_link_store: MagicLinkSubject) -> None:
        record, token = self.issue(magic_link_store)
        for _ in range(2):
            peeked = magic_link_store.peek(token)
            assert_same_link(peeked, record)
            assert peeked is not None and peeked.consumed_at is None
        assert magic_link_store.consume(token) is not None

    def test_magic_consume_once(self, magic_link_store: MagicLinkSubject) -> None:
        record, token = self.issue(magic_link_store)
        before = datetime.now(UTC)
        consumed = magic_link_store.consume(token)
        assert_same_link(consumed, record)
        assert consumed is not None and consumed.consumed_at is not None
        assert close_to(assert_utc(consumed.consumed_at), before)
        assert magic_link_store.consume(token) is None, "a magic link works once"
        assert magic_link_store.peek(token) is None

    def test_magic_wrong_tokens(self, magic_link_store: MagicLinkSubject) -> None:
        record, token = self.issue(magic_link_store)
        for wrong in (token[:-1], token + "x", token.upper(), record.id, "unknown-token"):
            assert magic_link_store.peek(wrong) is None
            assert magic_link_store.consume(wrong) is None, f"{wrong!r} consumed a link"
        assert magic_link_store.consume(token) is not None

    def test_magic_application_binding(self, magic_link_store: MagicLinkSubject) -> None:
        _, bound = self.issue(magic_link_store, "alice", application_id="app1")
        assert magic_link_store.consume(bound, application_id="app2") is None
        assert magic_link_store.consume(bound) is None
        assert magic_link_store.peek(bound) is not None, "a mismatch leaves the link usable"
        consumed = magic_link_store.consume(bound, application_id="app1")
        assert consumed is not None and consumed.application_id == "app1"
        _, free = self.issue(magic_link_store, "bob")
        assert magic_link_store.consume(free, application_id="app1") is None
        assert magic_link_store.consume(free) is not None

    def test_magic_revoke_previous(self, magic_link_store: MagicLinkSubject) -> None:
        _, bob = self.issue(magic_link_store, "bob")
        _, first = self.issue(magic_link_store, "alice")
        _, second = self.issue(magic_link_store, "alice")
        assert magic_link_store.peek(first) is None, "revoke_previous is the default"
        assert magic_link_store.consume(first) is None
        _, third = self.issue(magic_link_store, "alice", revoke_previous=False)
        assert (
            magic_link_store.peek(second) is not None and magic_link_store.peek(third) is not None
        )
        assert magic_link_store.consume(second) is not None
        _, fourth = self.issue(magic_link_store, "alice", revoke_previous=True)
        assert magic_link_store.peek(third) is None
        assert magic_link_store.consume(fourth) is not None
        assert magic_link_store.consume(bob) is not None, "other users' links are untouched"

    def test_magic_revoke_user(self, magic_link_store: MagicLinkSubject) -> None:
        links = [self.issue(magic_link_store, "alice", revoke_previous=False) for _ in range(3)]
        _, bob = self.issue(magic_link_store, "bob")
        assert magic_link_store.consume(links[0].token) is not None
        assert magic_link_store.revoke_user("alice") == 2, "only unused links count"
        assert all(magic_link_store.consume(link.token) is None for link in links)
        assert magic_link_store.revoke_user("alice") == 0
        assert magic_link_store.revoke_user("nobody") == 0
        assert magic_link_store.consume(bob) is not None

    def test_magic_expiry(self, magic_link_store: MagicLinkSubject) -> None:
        _, short = self.issue(magic_link_store, "alice", ttl=self.short_ttl)
        _, other = self.issue(magic_link_store, "bob", ttl=self.short_ttl)
        _, live = self.issue(magic_link_store, "carol")
        assert magic_link_store.peek(short) is not None
        self.wait_expiry()
        assert magic_link_store.peek(short) is None
        assert magic_link_store.consume(short) is None, "an expired link is not consumable"
        assert magic_link_store.revoke_user("bob") == 0, "an expired link is not live"
        purged = magic_link_store.purge_expired()
        assert isinstance(purged, int) and purged >= 0
        assert magic_link_store.consume(other) is None
        assert magic_link_store.consume(live) is not None

    def test_magic_concurrent_consume(self, magic_link_store: MagicLinkSubject) -> None:
        _, token = self.issue(magic_link_store)
        results = magic_link_store.concurrently(50, lambda store: store.consume(token))
        assert sum(1 for r in results if r is not None) == 1

    def test_magic_concurrent_issue_leaves_one_link(
        self, magic_link_store: MagicLinkSubject
    ) -> None:
        """Revoking the previous links happens in the same step as issuing: after a burst
        of concurrent issues exactly one link of the user still works."""
        issued = magic_link_store.concurrently(
            20, lambda store: store.issue("alice", "alice@example.com", ttl=LONG)
        )
        usable = [link for link in issued if magic_link_store.peek(link.token) is not None]
        assert len(usable) == 1
        assert magic_link_store.revoke_user("alice") == 1

    def test_magic_concurrent_consume_on_two_clients(
        self, magic_link_store: MagicLinkSubject, authstore_stores: Stores
    ) -> None:
        _, token = self.issue(magic_link_store)
        clients = itertools.cycle([magic_link_store.raw, authstore_stores.magic_links().raw])
        results = magic_link_store.concurrently(50, lambda _: next(clients).consume(token))
        assert sum(1 for r in results if r is not None) == 1

    def test_magic_namespaces_never_meet(
        self,
        magic_link_store: MagicLinkSubject,
        authstore_stores: Stores,
        authstore_url: str | None,
    ) -> None:
        other = authstore_stores.magic_links(self.other_namespace(authstore_url))
        _, token = self.issue(magic_link_store)
        assert other.peek(token) is None and other.consume(token) is None
        assert other.revoke_user("alice") == 0
        self.issue(other, "alice")
        assert magic_link_store.consume(token) is not None, "issuing elsewhere revoked nothing here"

    def test_magic_context_manager(self, authstore_stores: Stores) -> None:
        assert enters_and_closes(authstore_stores.open(StoreKind.MAGIC_LINKS))

    def test_magic_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        store = self.unreachable(authstore_stores, StoreKind.MAGIC_LINKS, authstore_unreachable_url)
        self.fails_closed(
            store, {"consume": lambda s: s.consume(A_TOKEN), "peek": lambda s: s.peek(A_TOKEN)}
        )

    def test_magic_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(
            authstore_stores, StoreKind.MAGIC_LINKS, authstore_unreachable_url
        )
        found = cases("issue", BAD_IDS, ..., "a@example.com", ttl=60)
        found += cases("issue", [*BAD_OPTIONAL_TEXT, (None, TypeError)], "u", ttl=60)
        found += cases("issue", [(text_beyond(MAX_EMAIL_BYTES), ValueError)], "u", ttl=60)
        found += cases("issue", BAD_REQUIRED_TTLS, "u", "a@example.com", ttl=...)
        for option in ("application_id", "ip_address"):
            found += cases("issue", BAD_OPTIONAL_IDS, "u", "a@example.com", ttl=60, **{option: ...})
        found += cases("issue", BAD_OPTIONAL_TEXT, "u", "a@example.com", ttl=60, user_agent=...)
        bad_flags: Bad = [("yes", TypeError), (1, TypeError), (None, TypeError), (0, TypeError)]
        found += cases("issue", bad_flags, "u", "a@example.com", ttl=60, revoke_previous=...)
        found += cases("peek", BAD_TOKENS) + cases("consume", BAD_TOKENS)
        found += cases("consume", BAD_OPTIONAL_IDS, A_TOKEN, application_id=...)
        found += cases("revoke_user", BAD_IDS)
        assert_rejected(targets, found)

    def test_magic_bad_input_changes_nothing(self, magic_link_store: MagicLinkSubject) -> None:
        """An issue that fails its checks must not revoke the user's previous link."""
        _, token = self.issue(magic_link_store)
        with pytest.raises(TypeError):
            self.issue(magic_link_store, revoke_previous="yes")
        with pytest.raises(ValueError):
            self.issue(magic_link_store, application_id="")
        with pytest.raises(ValueError):
            self.issue(magic_link_store, ttl=0)
        with pytest.raises(ValueError):
            self.issue(magic_link_store, ttl=1e12)
        with pytest.raises(ValueError):
            self.issue(magic_link_store, ttl=10**400)
        with pytest.raises(ValueError):
            self.issue(magic_link_store, user_agent="\udfff")
        assert magic_link_store.consume(token) is not None

    def test_magic_policy_limits_are_storable(self, magic_link_store: MagicLinkSubject) -> None:
        """Ids, an email, an IP and a user agent at their byte limits in 4-byte UTF-8, MAX_TTL."""
        email = text_of_bytes(MAX_EMAIL_BYTES)
        record, token = magic_link_store.issue(
            WIDE_ID,
            email,
            ttl=MAX_TTL,
            application_id=WIDE_ID,
            ip_address=text_of_bytes(MAX_IP_BYTES),
            user_agent=text_of_bytes(MAX_USER_AGENT_BYTES),
        )
        lifetime = (record.expires_at - record.created_at).total_seconds()
        assert abs(lifetime - MAX_TTL) <= 1, lifetime
        assert_same_link(magic_link_store.peek(token), record)
        assert_same_link(magic_link_store.consume(token, application_id=WIDE_ID), record)
        magic_link_store.issue(WIDE_ID, email, ttl=MIN_TTL)
        assert magic_link_store.revoke_user(WIDE_ID) in (0, 1)
