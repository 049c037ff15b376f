"""The session, TOTP and magic-link contracts, and ``StoreContract`` (all four stores)."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import (
    IssuedMagicLink,
    MagicLinkRecord,
    NewSession,
    SessionRecord,
    StoreKind,
    TotpState,
)
from authstore.contracts.testing.base import (
    BAD_COUNTS,
    BAD_IDS,
    BAD_REQUIRED_TTLS,
    BAD_TTLS,
    LONG,
    SURROGATES,
    Bad,
    BadCase,
    ContractBase,
    assert_rejected,
    assert_utc,
    cases,
    close_to,
    nested,
    same_value,
)
from authstore.contracts.testing.cache import CacheContract
from authstore.contracts.testing.harness import (
    MagicLinkSubject,
    SessionSubject,
    Stores,
    TotpSubject,
    View,
)
from authstore.contracts.testing.health import HealthContract
from authstore.contracts.testing.races import (
    MagicLinkRaceContract,
    SessionRaceContract,
    TotpRaceContract,
)
from authstore.contracts.values import MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_TTL, MIN_TTL

__all__ = ["MagicLinkContract", "SessionContract", "StoreContract", "TotpContract"]

MILLISECOND = timedelta(milliseconds=1)
ORDER_GAP = 0.01
"""Sleep between creations whose order a test checks, so their timestamps differ."""

BAD_TOKENS: Bad = [
    ("", ValueError),
    ("t" * 100000, ValueError),
    ("a\x00b", ValueError),
    *SURROGATES,
    (1, TypeError),
    (None, TypeError),
    (b"token", TypeError),
]
BAD_OPTIONAL_TEXT: Bad = [
    ("", ValueError),
    ("i" * 100000, ValueError),
    *SURROGATES,
    (1, TypeError),
    (b"id", TypeError),
]
"""For an email or a user agent (longer limits than an id)."""
BAD_OPTIONAL_IDS: Bad = [*BAD_OPTIONAL_TEXT, ("\U0001f600" * 64, ValueError)]
WIDE_ID = "\U0001f600" * 63 + "abc"
"""Exactly 255 bytes of UTF-8 (66 characters): the longest id the policy accepts."""
BAD_METADATA: Bad = [
    ([], TypeError),
    ("{}", TypeError),
    ({"a": (1,)}, TypeError),
    ({"a": b"x"}, TypeError),
    ({1: "a"}, TypeError),
    ({"a": float("nan")}, ValueError),
    ({"a": "\ud800"}, ValueError),
    ({"\udfff": 1}, ValueError),
    ({"a": ["ok", {"b": "x\udc00"}]}, ValueError),
    ({"k": "\U0001f600" * (MAX_JSON_BYTES // 4 - 1)}, ValueError),
    (nested(MAX_JSON_DEPTH + 1, dict), ValueError),
]
"""The last one encodes to MAX_JSON_BYTES + 4 bytes of JSON."""
A_TOKEN = "x" * 43
"""Well-formed but unknown: for bad-input cases about another argument."""
BAD_CALLER_TOKENS: Bad = [
    ("t" * 31, ValueError),
    ("", ValueError),
    ("t" * 513, ValueError),
    ("\U0001f600" * 200, ValueError),
    ("\ud800" * 40, ValueError),
    (b"t" * 40, TypeError),
    (40, TypeError),
    (["t" * 40], TypeError),
]
"""A caller-supplied token: a str of 32 to 512 characters (and at most 512 bytes)."""
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


def caller_token() -> str:
    """A token as a core with its own token scheme would make it (not authstore's format)."""
    return "core." + secrets.token_hex(24)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def outcome(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` returning its exception instead of raising it, sync or async."""

    def call(store: Any) -> Any:
        try:
            value = fn(store)
        except Exception as error:
            return error
        if not inspect.isawaitable(value):
            return value

        async def awaited() -> Any:
            try:
                return await value
            except Exception as error:
                return error

        return awaited()

    return call


def enters_and_closes(view: View) -> bool:
    """``with store`` / ``async with store`` gives the store back and closes it on exit."""

    def use(store: Any) -> bool:
        with store as entered:
            return bool(entered is store)

    async def use_async(store: Any) -> bool:
        async with store as entered:
            return bool(entered is store)

    entered = bool(view.run(use if view.mode == "sync" else use_async))
    view.mark_closed()
    return entered


def token_is_secret(token: object, record: object) -> None:
    """A fresh URL-safe secret of at least 256 bits, nowhere in the record."""
    assert isinstance(token, str) and len(token) >= 43, token
    assert all(c.isalnum() or c in "-_" for c in token), "tokens go in URLs and headers"
    assert "token" not in {f.name for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    assert token not in repr(record)


def same_times(left: datetime, right: datetime) -> bool:
    return abs(left - right) <= MILLISECOND


def assert_same_session(got: SessionRecord | None, expected: SessionRecord) -> None:
    assert isinstance(got, SessionRecord), got
    for name in ("id", "user_id", "device_id", "application_id", "ip_address", "user_agent"):
        assert getattr(got, name) == getattr(expected, name), name
    assert same_value(got.metadata, expected.metadata), (got.metadata, expected.metadata)
    assert same_times(assert_utc(got.created_at), expected.created_at)
    assert same_times(assert_utc(got.expires_at), expected.expires_at)


class SessionCallerTokenContract(ContractBase):
    """``create(token=...)``: a core's own session ids as secrets, stored only hashed."""

    def test_session_caller_token_round_trip(self, session_store: SessionSubject) -> None:
        token, other_token = caller_token(), caller_token()
        record, returned = session_store.create("alice", ttl=LONG, token=token, device_id="d1")
        assert returned == token, "NewSession.token is the caller's token"
        assert token not in repr(record) and record.id != token
        assert_same_session(session_store.get(token), record)
        time.sleep(0.02)
        touched = session_store.touch(token, ttl=7200)
        assert touched is not None and touched.id == record.id
        assert touched.last_seen_at > record.last_seen_at
        other, _ = session_store.create("alice", ttl=LONG, token=other_token)
        generated = session_store.create("alice", ttl=LONG)
        assert session_store.count("alice") == 3
        assert session_store.revoke_all("alice", except_token=token) == 2
        assert session_store.get(other_token) is None and session_store.get(generated.token) is None
        assert_same_session(session_store.get(token), touched)
        assert session_store.revoke(token) is True
        assert session_store.get(token) is None and session_store.touch(token) is None
        assert session_store.revoke(token) is False
        assert session_store.get(token.upper()) is None
        assert other.id != record.id

    def test_session_caller_token_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(
            authstore_stores, StoreKind.SESSIONS, authstore_unreachable_url
        )
        found = cases("create", BAD_CALLER_TOKENS, "u", ttl=60, token=...)
        found += cases("create", BAD_CALLER_TOKENS, "u", ttl=60, max_sessions=1, token=...)
        assert_rejected(targets, found)

    def test_session_caller_token_bad_input_changes_nothing(
        self, session_store: SessionSubject
    ) -> None:
        kept, _ = session_store.create("alice", ttl=LONG)
        for bad, error in BAD_CALLER_TOKENS:
            with pytest.raises(error):
                session_store.create("alice", ttl=LONG, token=bad, max_sessions=1)
        assert [r.id for r in session_store.list("alice")] == [kept.id]

    def test_session_taken_token_is_refused(self, session_store: SessionSubject) -> None:
        """A caller token can never take over, overwrite or revive another session."""
        live_token, revoked_token = caller_token(), caller_token()
        live, _ = session_store.create("alice", ttl=LONG, token=live_token, device_id="first")
        revoked, _ = session_store.create("alice", ttl=LONG, token=revoked_token)
        assert session_store.revoke(revoked_token) is True
        for token in (live_token, revoked_token):
            for user, cap in (("mallory", None), ("alice", None), ("alice", 1)):
                with pytest.raises(TokenInUseError):
                    session_store.create(
                        user, ttl=LONG, token=token, device_id="second", max_sessions=cap
                    )
        assert isinstance(TokenInUseError("x"), ValueError)
        assert_same_session(session_store.get(live_token), live)
        assert session_store.get(revoked_token) is None, "a revoked session stays revoked"
        assert [r.id for r in session_store.list("alice")] == [live.id], "nothing evicted"
        assert session_store.count("mallory") == 0
        assert revoked.id != live.id

    def test_session_taken_token_stays_taken_when_revoked_otherwise(
        self, session_store: SessionSubject
    ) -> None:
        """Revoked by id, by revoke_all or by eviction: the hash is still taken."""
        tokens = [caller_token() for _ in range(3)]
        by_id, _ = session_store.create("alice", ttl=LONG, token=tokens[0])
        session_store.create("bob", ttl=LONG, token=tokens[1])
        session_store.create("carol", ttl=LONG, token=tokens[2])
        session_store.create("carol", ttl=LONG, max_sessions=1)  # evicts tokens[2]
        assert session_store.revoke_by_id(by_id.id) is True
        assert session_store.revoke_all("bob") == 1
        for token in tokens:
            assert session_store.get(token) is None
            with pytest.raises(TokenInUseError):
                session_store.create("mallory", ttl=LONG, token=token)
            assert session_store.get(token) is None
        assert session_store.count("mallory") == 0

    def test_session_expired_token_may_be_reused(self, session_store: SessionSubject) -> None:
        token = caller_token()
        old, _ = session_store.create("alice", ttl=self.short_ttl, token=token, device_id="old")
        revoked_token = caller_token()
        session_store.create("alice", ttl=self.short_ttl, token=revoked_token)
        assert session_store.revoke(revoked_token) is True
        self.wait_expiry()
        new, returned = session_store.create("bob", ttl=LONG, token=token)
        assert returned == token and new.id != old.id
        got = session_store.get(token)
        assert got is not None and (got.id, got.user_id, got.device_id) == (new.id, "bob", None)
        assert session_store.revoke_by_id(old.id) is False, "the old public id is gone"
        assert_same_session(session_store.get(token), new)
        again, _ = session_store.create("carol", ttl=LONG, token=revoked_token)
        assert_same_session(session_store.get(revoked_token), again)
        assert session_store.count("alice") == 0

    def test_session_concurrent_create_with_one_token(self, session_store: SessionSubject) -> None:
        token = caller_token()
        results = session_store.concurrently(
            20,
            outcome(lambda store: store.create("alice", ttl=LONG, token=token, max_sessions=50)),
        )
        won = [r for r in results if isinstance(r, NewSession)]
        lost = [r for r in results if isinstance(r, TokenInUseError)]
        assert (len(won), len(lost)) == (1, 19), results
        assert_same_session(session_store.get(token), won[0].record)
        assert session_store.count("alice") == 1
        results = session_store.concurrently(
            20, outcome(lambda store: store.create("bob", ttl=LONG, token=token))
        )
        assert all(isinstance(r, TokenInUseError) for r in results), results
        assert_same_session(session_store.get(token), won[0].record)


class SessionContract(SessionCallerTokenContract, SessionRaceContract):
    def create(self, store: SessionSubject, user: str = "alice", **options: Any) -> NewSession:
        options.setdefault("ttl", LONG)
        return store.create(user, **options)

    def test_session_create(self, session_store: SessionSubject) -> None:
        before = datetime.now(UTC)
        metadata: dict[str, Any] = {
            "plan": "pro",
            "n": 1,
            "f": 1.0,
            "nested": {"l": [1, 2.5, None, True]},
        }
        new = session_store.create(
            "alice",
            ttl=LONG,
            device_id="device-1",
            application_id="web",
            ip_address="2001:db8::7",
            user_agent="Mozilla/5.0 (X11) ✓",
            metadata=metadata,
        )
        assert isinstance(new, NewSession)
        record, token = new
        token_is_secret(token, record)
        assert isinstance(record, SessionRecord)
        assert isinstance(record.id, str) and record.id and record.id != token
        assert (record.user_id, record.device_id, record.application_id) == (
            "alice",
            "device-1",
            "web",
        )
        assert (record.ip_address, record.user_agent) == ("2001:db8::7", "Mozilla/5.0 (X11) ✓")
        assert same_value(record.metadata, metadata)
        assert close_to(assert_utc(record.created_at), before)
        assert abs(assert_utc(record.last_seen_at) - record.created_at) <= timedelta(seconds=1)
        lifetime = (assert_utc(record.expires_at) - record.created_at).total_seconds()
        assert abs(lifetime - LONG) <= 1, lifetime
        assert_same_session(session_store.get(token), record)

    def test_session_defaults(self, session_store: SessionSubject) -> None:
        record, token = session_store.create("bob", ttl=60.5)
        assert (record.device_id, record.application_id, record.ip_address, record.user_agent) == (
            None,
            None,
            None,
            None,
        )
        assert record.metadata == {}
        got = session_store.get(token)
        assert got is not None and got.metadata == {} and got.device_id is None

    def test_session_tokens_are_unique_and_exact(self, session_store: SessionSubject) -> None:
        created = [self.create(session_store) for _ in range(20)]
        assert len({new.token for new in created}) == 20
        assert len({new.record.id for new in created}) == 20
        record, token = created[0]
        for wrong in (token[:-1], token + "x", token.upper(), record.id, "unknown-token"):
            assert session_store.get(wrong) is None, f"{wrong!r} opened a session"
        assert session_store.touch("unknown-token") is None

    def test_session_touch(self, session_store: SessionSubject) -> None:
        record, token = self.create(session_store, ttl=LONG)
        time.sleep(0.02)
        touched = session_store.touch(token)
        assert touched is not None and touched.id == record.id
        assert touched.last_seen_at > record.last_seen_at
        assert same_times(touched.created_at, record.created_at)
        assert same_times(touched.expires_at, record.expires_at), "no ttl: the expiry stays"
        got = session_store.get(token)
        assert got is not None and same_times(got.last_seen_at, touched.last_seen_at)
        for ttl in (7200.0, 10.0):
            slid = session_store.touch(token, ttl=ttl)
            assert slid is not None
            expected = datetime.now(UTC) + timedelta(seconds=ttl)
            assert close_to(assert_utc(slid.expires_at), expected), (slid.expires_at, expected)
            got = session_store.get(token)
            assert got is not None and same_times(got.expires_at, slid.expires_at)

    def test_session_sliding_expiry(self, session_store: SessionSubject) -> None:
        short = self.short_ttl
        _, token = self.create(session_store, ttl=short)
        time.sleep(short * 2 / 3)
        assert session_store.touch(token, ttl=short) is not None
        time.sleep(short * 2 / 3)
        assert session_store.get(token) is not None, "touch(ttl=...) must slide the expiry"
        time.sleep(short / 3 + 0.15)
        assert session_store.get(token) is None

    def test_session_revoke(self, session_store: SessionSubject) -> None:
        _, token = self.create(session_store)
        _, other = self.create(session_store)
        assert session_store.revoke(token) is True
        assert session_store.get(token) is None
        assert session_store.touch(token) is None
        assert session_store.revoke(token) is False
        assert session_store.revoke("unknown-token") is False
        assert session_store.count("alice") == 1
        assert [r.id for r in session_store.list("alice")] == [session_store.get(other).id]  # type: ignore[union-attr]

    def test_session_revoke_by_id(self, session_store: SessionSubject) -> None:
        first, first_token = self.create(session_store, "alice")
        second, _ = self.create(session_store, "alice")
        _, bob_token = self.create(session_store, "bob")
        assert session_store.revoke_by_id(first.id, user_id="bob") is False
        assert session_store.get(first_token) is not None, "another user cannot revoke it"
        assert session_store.revoke_by_id(first.id, user_id="alice") is True
        assert session_store.get(first_token) is None
        assert session_store.revoke_by_id(first.id) is False
        assert session_store.revoke_by_id(second.id) is True
        assert session_store.revoke_by_id("unknown-id") is False
        assert session_store.count("alice") == 0
        assert session_store.get(bob_token) is not None

    def test_session_revoke_all(self, session_store: SessionSubject) -> None:
        sessions = [self.create(session_store, "alice") for _ in range(4)]
        _, bob_token = self.create(session_store, "bob")
        keep, keep_token = sessions[1]
        assert session_store.revoke_all("alice", except_token=keep_token) == 3
        assert session_store.get(keep_token) is not None
        assert all(session_store.get(t) is None for r, t in sessions if t != keep_token)
        assert session_store.revoke_all("alice", except_id=keep.id) == 0
        assert session_store.revoke_all("alice", except_token=bob_token) == 1
        assert session_store.count("alice") == 0
        assert session_store.revoke_all("alice") == 0
        assert session_store.get(bob_token) is not None
        assert session_store.revoke_all("nobody") == 0

    def test_session_list_newest_first(self, session_store: SessionSubject) -> None:
        created = []
        for index in range(3):
            created.append(self.create(session_store, "alice", device_id=f"d{index}").record)
            time.sleep(ORDER_GAP)
        self.create(session_store, "bob")
        listed = session_store.list("alice")
        assert [r.id for r in listed] == [r.id for r in reversed(created)]
        for got, expected in zip(listed, reversed(created), strict=True):
            assert_same_session(got, expected)
        assert session_store.count("alice") == 3
        assert session_store.list("nobody") == [] and session_store.count("nobody") == 0

    def test_session_max_sessions_evicts_oldest(self, session_store: SessionSubject) -> None:
        _, bob_token = self.create(session_store, "bob")
        created = []
        for index in range(5):
            created.append(self.create(session_store, "alice", max_sessions=3))
            assert session_store.count("alice") == min(index + 1, 3)
            time.sleep(ORDER_GAP)
        assert [r.id for r in session_store.list("alice")] == [n.record.id for n in created[:1:-1]]
        assert [session_store.get(n.token) is not None for n in created] == [
            False,
            False,
            True,
            True,
            True,
        ]
        newest = self.create(session_store, "alice", max_sessions=1)
        assert [r.id for r in session_store.list("alice")] == [newest.record.id]
        assert session_store.get(bob_token) is not None, "the cap is per user"

    def test_session_max_sessions_concurrent(self, session_store: SessionSubject) -> None:
        session_store.concurrently(
            20, lambda store: store.create("alice", ttl=LONG, max_sessions=3)
        )
        assert session_store.count("alice") == 3
        assert len(session_store.list("alice")) == 3

    def test_session_expiry(self, session_store: SessionSubject) -> None:
        short, short_token = self.create(session_store, "alice", ttl=self.short_ttl)
        live, live_token = self.create(session_store, "alice")
        self.create(session_store, "bob", ttl=self.short_ttl)
        assert session_store.count("alice") == 2
        self.wait_expiry()
        assert session_store.get(short_token) is None
        assert session_store.touch(short_token) is None
        assert session_store.touch(short_token, ttl=LONG) is None, "touch cannot revive it"
        assert [r.id for r in session_store.list("alice")] == [live.id]
        assert session_store.count("alice") == 1 and session_store.count("bob") == 0
        assert session_store.revoke_by_id(short.id) is False
        purged = session_store.purge_expired()  # may be 0: expired rows may be reclaimed already
        assert isinstance(purged, int) and purged >= 0
        assert session_store.get(live_token) is not None
        assert session_store.count("alice") == 1
        assert session_store.revoke_all("alice") == 1

    def test_session_concurrent_revoke(self, session_store: SessionSubject) -> None:
        _, token = self.create(session_store)
        results = session_store.concurrently(50, lambda store: store.revoke(token))
        assert results.count(True) == 1 and results.count(False) == 49

    def test_session_touch_never_resurrects(self, session_store: SessionSubject) -> None:
        """Racing touches and revokes: once revoked, a session stays gone."""
        _, token = self.create(session_store)
        actions = itertools.cycle(["touch", "revoke"])
        results = session_store.concurrently(40, lambda store: getattr(store, next(actions))(token))
        assert results.count(True) == 1, "exactly one revoke wins"
        assert session_store.get(token) is None and session_store.count("alice") == 0

    def test_session_two_clients(
        self, session_store: SessionSubject, authstore_stores: Stores
    ) -> None:
        other = authstore_stores.sessions()
        record, token = self.create(session_store)
        assert_same_session(other.get(token), record)
        assert other.revoke(token) is True
        assert session_store.get(token) is None

    def test_session_namespaces_never_meet(
        self, session_store: SessionSubject, authstore_stores: Stores, authstore_url: str | None
    ) -> None:
        other = authstore_stores.sessions(self.other_namespace(authstore_url))
        record, token = self.create(session_store)
        assert other.get(token) is None and other.touch(token) is None
        assert other.count("alice") == 0 and other.list("alice") == []
        assert other.revoke(token) is False and other.revoke_by_id(record.id) is False
        assert other.revoke_all("alice") == 0
        assert session_store.get(token) is not None

    def test_session_context_manager(self, authstore_stores: Stores) -> None:
        assert enters_and_closes(authstore_stores.open(StoreKind.SESSIONS))

    def test_session_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        store = self.unreachable(authstore_stores, StoreKind.SESSIONS, authstore_unreachable_url)
        self.fails_closed(
            store, {"get": lambda s: s.get(A_TOKEN), "touch": lambda s: s.touch(A_TOKEN)}
        )

    def test_session_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(
            authstore_stores, StoreKind.SESSIONS, authstore_unreachable_url
        )
        found = cases("create", BAD_IDS, ttl=60)
        found += cases("create", BAD_REQUIRED_TTLS, "u", ttl=...)
        for option in ("device_id", "application_id", "ip_address"):
            found += cases("create", BAD_OPTIONAL_IDS, "u", ttl=60, **{option: ...})
        found += cases("create", BAD_OPTIONAL_TEXT, "u", ttl=60, user_agent=...)
        found += cases("create", [("\U0001f600" * 257, ValueError)], "u", ttl=60, user_agent=...)
        found += cases("create", BAD_METADATA, "u", ttl=60, metadata=...)
        found += cases(
            "create",
            [case for case in BAD_COUNTS if case[0] is not None],
            "u",
            ttl=60,
            max_sessions=...,
        )
        for method in ("get", "touch", "revoke"):
            found += cases(method, BAD_TOKENS)
        found += cases("touch", BAD_TTLS, A_TOKEN, ttl=...)
        found += cases("revoke_by_id", [*BAD_OPTIONAL_IDS, (None, TypeError)])
        found += cases("revoke_by_id", BAD_OPTIONAL_IDS, "id", user_id=...)
        found += cases("revoke_all", BAD_IDS)
        found += cases("revoke_all", BAD_TOKENS[:-2], "u", except_token=...)
        found += cases("revoke_all", BAD_OPTIONAL_IDS, "u", except_id=...)
        found += cases("list", BAD_IDS) + cases("count", BAD_IDS)
        assert_rejected(targets, found)

    def test_session_bad_input_changes_nothing(self, session_store: SessionSubject) -> None:
        """A create that fails its checks must not evict anything either."""
        self.create(session_store, "alice")
        with pytest.raises(TypeError):
            session_store.create("alice", ttl=LONG, metadata={"a": (1,)}, max_sessions=1)  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            session_store.create("alice", ttl=0, max_sessions=1)
        with pytest.raises(ValueError):
            session_store.create("alice", ttl=1e12, max_sessions=1)
        with pytest.raises(ValueError):
            session_store.create("alice", ttl=LONG, user_agent="\ud800", max_sessions=1)
        assert session_store.count("alice") == 1
        [record] = session_store.list("alice")
        bob, token = self.create(session_store, "bob")
        with pytest.raises(ValueError):
            session_store.touch(token, ttl=1e12)
        with pytest.raises(ValueError):
            session_store.touch(token, ttl=10**400)
        assert_same_session(session_store.get(token), bob)
        [listed] = session_store.list("bob")
        assert_same_session(listed, bob)
        assert session_store.list("alice")[0].id == record.id

    def test_session_policy_limits_are_storable(self, session_store: SessionSubject) -> None:
        """The policy's extremes round-trip: ids of 255 bytes of 4-byte UTF-8, an IP and a
        user agent at their byte limits, metadata of exactly MAX_JSON_BYTES, MAX_TTL."""
        metadata = {"k": "\U0001f600" * (MAX_JSON_BYTES // 4 - 2)}
        record, token = session_store.create(
            WIDE_ID,
            ttl=MAX_TTL,
            device_id=WIDE_ID,
            application_id=WIDE_ID,
            ip_address="\U0001f600" * 16,
            user_agent="\U0001f600" * 256,
            metadata=metadata,
        )
        lifetime = (record.expires_at - record.created_at).total_seconds()
        assert abs(lifetime - MAX_TTL) <= 1, lifetime
        assert_same_session(session_store.get(token), record)
        deep = nested(MAX_JSON_DEPTH, dict)
        nested_record, nested_token = session_store.create("deep", ttl=60, metadata=deep)
        assert nested_record.metadata == deep
        assert session_store.get(nested_token).metadata == deep  # type: ignore[union-attr]
        [listed] = session_store.list(WIDE_ID)
        assert_same_session(listed, record)
        assert session_store.count(WIDE_ID) == 1
        assert session_store.touch(token, ttl=MAX_TTL) is not None
        assert session_store.revoke_by_id(record.id, user_id=WIDE_ID) is True
        session_store.create(WIDE_ID, ttl=MIN_TTL)


class TotpContract(TotpRaceContract):
    def enrol(self, store: TotpSubject, user: str = "alice", secret: bytes = b"ciphertext") -> None:
        store.save_pending(user, secret)
        assert store.enable(user) is True

    def test_totp_unknown_user(self, totp_store: TotpSubject) -> None:
        assert totp_store.load("nobody") is None
        assert totp_store.enable("nobody") is False
        assert totp_store.disable("nobody") is False
        assert totp_store.claim_step("nobody", 100) is False
        assert totp_store.use_backup_code("nobody", "hash") is False
        assert totp_store.load("nobody") is None, "failed calls must not create a user"

    def test_totp_enrolment_flow(self, totp_store: TotpSubject) -> None:
        before = datetime.now(UTC)
        totp_store.save_pending("alice", b"first")
        state = totp_store.load("alice")
        assert isinstance(state, TotpState)
        assert (state.user_id, state.enabled, state.secret, state.pending_secret) == (
            "alice",
            False,
            None,
            b"first",
        )
        assert (state.last_step, state.backup_codes_left, state.enabled_at) == (None, 0, None)
        assert close_to(assert_utc(state.created_at), before)
        assert assert_utc(state.updated_at) >= state.created_at

        assert totp_store.enable("alice") is True
        state = totp_store.load("alice")
        assert state is not None
        assert (state.enabled, state.secret, state.pending_secret) == (True, b"first", None)
        assert state.enabled_at is not None and close_to(assert_utc(state.enabled_at), before)

        totp_store.save_pending("alice", b"second")
        state = totp_store.load("alice")
        assert state is not None
        assert (state.enabled, state.secret, state.pending_secret) == (True, b"first", b"second"), (
            "the active secret stays active until the new one is enabled"
        )
        assert totp_store.enable("alice") is True
        state = totp_store.load("alice")
        assert state is not None and (state.secret, state.pending_secret) == (b"second", None)
        assert totp_store.enable("alice") is False, "nothing pending"
        state = totp_store.load("alice")
        assert state is not None and (state.enabled, state.secret) == (True, b"second")

    def test_totp_secrets_round_trip_as_bytes(self, totp_store: TotpSubject) -> None:
        for user, secret in [("a", b"\x00\x01\xff"), ("b", bytes(range(256)) * 16), ("c", b"\x00")]:
            totp_store.save_pending(user, secret)
            state = totp_store.load(user)
            assert state is not None and same_value(state.pending_secret, secret)
            assert totp_store.enable(user) is True
            state = totp_store.load(user)
            assert state is not None and same_value(state.secret, secret)

    def test_totp_disable_clears_everything(self, totp_store: TotpSubject) -> None:
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["h1", "h2"])
        assert totp_store.claim_step("alice", 100) is True
        totp_store.save_pending("alice", b"pending")
        assert totp_store.disable("alice") is True
        assert totp_store.load("alice") is None, "disable leaves no state"
        assert totp_store.disable("alice") is False, "nothing left to disable"
        assert totp_store.use_backup_code("alice", "h1") is False
        assert totp_store.enable("alice") is False, "the pending secret is gone too"
        self.enrol(totp_store, secret=b"again")
        state = totp_store.load("alice")
        assert state is not None
        assert (state.secret, state.last_step, state.backup_codes_left) == (b"again", None, 0)
        assert totp_store.use_backup_code("alice", "h2") is False

    def test_totp_backup_codes_belong_to_a_state(self, totp_store: TotpSubject) -> None:
        totp_store.replace_backup_codes("nobody", ["n1"])
        assert totp_store.load("nobody") is None, "replacing codes creates no TOTP state"
        assert totp_store.use_backup_code("nobody", "n1") is False
        totp_store.save_pending("nobody", b"secret")
        state = totp_store.load("nobody")
        assert state is not None and state.backup_code_hashes == (), "no code shows up later"
        totp_store.replace_backup_codes("nobody", ["n2"])  # a pending state holds codes
        assert totp_store.load("nobody").backup_code_hashes == ("n2",)  # type: ignore[union-attr]
        assert totp_store.disable("nobody") is True
        totp_store.replace_backup_codes("nobody", ["n3"])
        assert totp_store.load("nobody") is None
        assert totp_store.use_backup_code("nobody", "n3") is False

    def test_totp_backup_codes(self, totp_store: TotpSubject) -> None:
        self.enrol(totp_store)
        self.enrol(totp_store, "bob")
        totp_store.replace_backup_codes("alice", ["h1", "h2", "h3"])
        totp_store.replace_backup_codes("bob", ["b1"])
        assert totp_store.load("alice").backup_codes_left == 3  # type: ignore[union-attr]
        assert totp_store.use_backup_code("alice", "h2") is True
        assert totp_store.use_backup_code("alice", "h2") is False
        assert totp_store.use_backup_code("alice", "wrong") is False
        assert totp_store.use_backup_code("alice", "b1") is False, "codes are per user"
        assert totp_store.load("alice").backup_codes_left == 2  # type: ignore[union-attr]
        totp_store.replace_backup_codes("alice", ["h4", "h4"])
        assert totp_store.load("alice").backup_codes_left == 1  # type: ignore[union-attr]
        assert totp_store.use_backup_code("alice", "h1") is False, "replaced codes are gone"
        assert totp_store.use_backup_code("alice", "h4") is True
        assert totp_store.use_backup_code("alice", "h4") is False, "a duplicate is one code"
        assert totp_store.load("alice").backup_codes_left == 0  # type: ignore[union-attr]
        totp_store.replace_backup_codes("alice", iter(["g1"]))
        totp_store.replace_backup_codes("alice", [])
        assert totp_store.load("alice").backup_codes_left == 0  # type: ignore[union-attr]
        assert totp_store.use_backup_code("bob", "b1") is True

    def test_totp_load_returns_unused_hashes_in_order(self, totp_store: TotpSubject) -> None:
        """A core with salted hashes verifies against them, then uses the matched one."""
        assert totp_store.load("nobody") is None
        self.enrol(totp_store)
        self.enrol(totp_store, "bob")
        assert totp_store.load("alice").backup_code_hashes == ()  # type: ignore[union-attr]
        given = [f"$2b$12$salt{index:02d}" + "x" * 40 for index in (7, 3, 11, 1, 5, 9)]
        totp_store.replace_backup_codes("alice", given)
        totp_store.replace_backup_codes("bob", ["b1"])
        state = totp_store.load("alice")
        assert state is not None and state.backup_code_hashes == tuple(given)
        assert state.backup_codes_left == len(given)
        assert given[0] not in repr(state), "hashes stay out of reprs"
        assert totp_store.use_backup_code("alice", given[2]) is True
        assert totp_store.use_backup_code("alice", given[0]) is True
        state = totp_store.load("alice")
        expected = (given[1], given[3], given[4], given[5])
        assert state is not None and state.backup_code_hashes == expected
        assert state.backup_codes_left == 4
        totp_store.replace_backup_codes("alice", ["z", "a", "z", "m"])
        state = totp_store.load("alice")
        assert state is not None and state.backup_code_hashes == ("z", "a", "m")
        for code in ("z", "a", "m"):
            assert totp_store.use_backup_code("alice", code) is True
        state = totp_store.load("alice")
        assert state is not None and (state.backup_code_hashes, state.backup_codes_left) == ((), 0)
        assert totp_store.disable("alice") is True
        assert totp_store.load("bob").backup_code_hashes == ("b1",)  # type: ignore[union-attr]

    def test_totp_claim_step_strictly_increasing(self, totp_store: TotpSubject) -> None:
        self.enrol(totp_store)
        self.enrol(totp_store, "bob")
        assert totp_store.claim_step("alice", 100) is True
        assert totp_store.claim_step("alice", 100) is False, "a replayed code"
        assert totp_store.claim_step("alice", 99) is False
        assert totp_store.claim_step("alice", 0) is False
        assert totp_store.claim_step("alice", 101) is True
        assert totp_store.claim_step("alice", 10**12) is True
        assert totp_store.load("alice").last_step == 10**12  # type: ignore[union-attr]
        assert totp_store.claim_step("bob", 100) is True, "steps are per user"
        assert totp_store.claim_step("carol", 0) is False

    def test_totp_concurrent_backup_code(self, totp_store: TotpSubject) -> None:
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["once", "other"])
        results = totp_store.concurrently(50, lambda store: store.use_backup_code("alice", "once"))
        assert results.count(True) == 1 and results.count(False) == 49
        assert totp_store.load("alice").backup_codes_left == 1  # type: ignore[union-attr]

    def test_totp_concurrent_claim_step(self, totp_store: TotpSubject) -> None:
        self.enrol(totp_store)
        results = totp_store.concurrently(50, lambda store: store.claim_step("alice", 1000))
        assert results.count(True) == 1 and results.count(False) == 49
        steps = iter(range(1, 51))
        results = totp_store.concurrently(
            50, lambda store: store.claim_step("alice", 1000 + next(steps))
        )
        assert totp_store.load("alice").last_step == 1050  # type: ignore[union-attr]
        assert results.count(True) >= 1

    def test_totp_concurrent_replace_leaves_one_whole_set(self, totp_store: TotpSubject) -> None:
        """Replacing is all or nothing: after 20 concurrent replacements exactly one
        caller's set is left, whole and in order, and no caller got an error."""
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["old"])
        sets = iter([[f"set{n}-code{i}" for i in range(8)] for n in range(20)])
        totp_store.concurrently(20, lambda store: store.replace_backup_codes("alice", next(sets)))
        left = totp_store.load("alice").backup_code_hashes  # type: ignore[union-attr]
        winner = left[0].split("-")[0] if left else None
        assert list(left) == [f"{winner}-code{i}" for i in range(8)], left

    def test_totp_concurrent_on_two_clients(
        self, totp_store: TotpSubject, authstore_stores: Stores
    ) -> None:
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["once"])
        clients = itertools.cycle([totp_store.raw, authstore_stores.totp().raw])
        codes = totp_store.concurrently(
            40, lambda _: next(clients).use_backup_code("alice", "once")
        )
        steps = totp_store.concurrently(40, lambda _: next(clients).claim_step("alice", 7))
        assert codes.count(True) == 1 and steps.count(True) == 1

    def test_totp_namespaces_never_meet(
        self, totp_store: TotpSubject, authstore_stores: Stores, authstore_url: str | None
    ) -> None:
        other = authstore_stores.totp(self.other_namespace(authstore_url))
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["h"])
        assert other.load("alice") is None
        assert other.use_backup_code("alice", "h") is False
        assert other.claim_step("alice", 5) is False
        assert other.disable("alice") is False
        assert totp_store.use_backup_code("alice", "h") is True

    def test_totp_context_manager(self, authstore_stores: Stores) -> None:
        assert enters_and_closes(authstore_stores.open(StoreKind.TOTP))

    def test_totp_fails_closed_when_unreachable(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        store = self.unreachable(authstore_stores, StoreKind.TOTP, authstore_unreachable_url)
        self.fails_closed(
            store,
            {
                "claim_step": lambda s: s.claim_step("u", 1),
                "use_backup_code": lambda s: s.use_backup_code("u", "h"),
                "load": lambda s: s.load("u"),
            },
        )

    def test_totp_bad_input_fails_before_io(
        self, authstore_stores: Stores, authstore_unreachable_url: str | None
    ) -> None:
        targets = self.io_free_targets(authstore_stores, StoreKind.TOTP, authstore_unreachable_url)
        bad_secrets: Bad = [
            ("text secret", TypeError),
            (None, TypeError),
            (1, TypeError),
            ([1], TypeError),
            (b"", ValueError),
            (b"s" * 100000, ValueError),
        ]
        bad_codes: Bad = [
            ("", ValueError),
            ("h" * 100000, ValueError),
            *SURROGATES,
            ("\U0001f600" * 129, ValueError),
            ("\U0001f600" * 449, ValueError),
            (1, TypeError),
            (None, TypeError),
            (b"hash", TypeError),
        ]
        bad_code_lists: Bad = [
            ("abc", TypeError),
            (b"abc", TypeError),
            (None, TypeError),
            (5, TypeError),
            *(([code], error) for code, error in bad_codes),
            (["ok", None], TypeError),
        ]
        found = cases("save_pending", BAD_IDS, ..., b"s")
        found += cases("save_pending", bad_secrets, "u")
        for method in ("enable", "disable", "load"):
            found += cases(method, BAD_IDS)
        found += cases("replace_backup_codes", BAD_IDS, ..., ["h"])
        found += cases("replace_backup_codes", bad_code_lists, "u")
        found += cases("use_backup_code", BAD_IDS, ..., "h")
        found += cases("use_backup_code", bad_codes, "u")
        found += cases("claim_step", BAD_IDS, ..., 1)
        bad_steps: Bad = [
            (-1, ValueError),
            (2**63, ValueError),
            (10**400, ValueError),
            (1.0, TypeError),
            (True, TypeError),
            ("5", TypeError),
            (None, TypeError),
        ]
        found += cases("claim_step", bad_steps, "u")
        found.append(BadCase("save_pending", ("u", "x"), TypeError))
        assert_rejected(targets, found)

    def test_totp_bad_input_changes_nothing(self, totp_store: TotpSubject) -> None:
        """A code list with one bad hash must not replace (or wipe) the valid codes."""
        self.enrol(totp_store)
        totp_store.replace_backup_codes("alice", ["keep"])
        with pytest.raises(ValueError):
            totp_store.replace_backup_codes("alice", ["new", ""])
        with pytest.raises(TypeError):
            totp_store.replace_backup_codes("alice", ["new", None])  # type: ignore[list-item]
        state = totp_store.load("alice")
        assert state is not None and state.backup_codes_left == 1
        with pytest.raises(ValueError):
            totp_store.replace_backup_codes("alice", ["new", "\ud800"])
        with pytest.raises(ValueError):
            totp_store.replace_backup_codes("alice", ["new", "\U0001f600" * 449])
        state = totp_store.load("alice")
        assert state is not None and state.backup_codes_left == 1
        assert totp_store.use_backup_code("alice", "new") is False
        assert totp_store.use_backup_code("alice", "keep") is True

    def test_totp_policy_limits_are_storable(self, totp_store: TotpSubject) -> None:
        """A 255-byte user id and backup-code hashes of exactly 512 bytes of UTF-8."""
        self.enrol(totp_store, WIDE_ID)
        codes = ["\U0001f600" * 128, "\U0001f600" * 127 + "abcd", "é" * 256]
        totp_store.replace_backup_codes(WIDE_ID, codes)
        state = totp_store.load(WIDE_ID)
        assert state is not None and state.backup_codes_left == 3
        assert all(totp_store.use_backup_code(WIDE_ID, code) is True for code in codes)
        assert totp_store.claim_step(WIDE_ID, 2**62) is True


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
        found += cases("issue", [("\U0001f600" * 81, ValueError)], "u", ttl=60)
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
        """Ids of 255 bytes, an email of 320 bytes of 4-byte UTF-8, MAX_TTL."""
        email = "\U0001f600" * 80
        record, token = magic_link_store.issue(
            WIDE_ID,
            email,
            ttl=MAX_TTL,
            application_id=WIDE_ID,
            ip_address="\U0001f600" * 16,
            user_agent="\U0001f600" * 256,
        )
        lifetime = (record.expires_at - record.created_at).total_seconds()
        assert abs(lifetime - MAX_TTL) <= 1, lifetime
        assert_same_link(magic_link_store.peek(token), record)
        assert_same_link(magic_link_store.consume(token, application_id=WIDE_ID), record)
        magic_link_store.issue(WIDE_ID, email, ttl=MIN_TTL)
        assert magic_link_store.revoke_user(WIDE_ID) in (0, 1)


class StoreContract(
    CacheContract, SessionContract, TotpContract, MagicLinkContract, HealthContract
):
    """All four contracts; store kinds a backend does not offer skip."""
