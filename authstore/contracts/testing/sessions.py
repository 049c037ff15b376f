"""The session store's contract: ``SessionContract``."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import NewSession, SessionRecord, StoreKind
from authstore.contracts.testing.base import (
    A_TOKEN,
    BAD_CALLER_TOKENS,
    BAD_COUNTS,
    BAD_IDS,
    BAD_OPTIONAL_IDS,
    BAD_OPTIONAL_TEXT,
    BAD_REQUIRED_TTLS,
    BAD_TOKENS,
    BAD_TTLS,
    LONG,
    WIDE_ID,
    WIDEST,
    Bad,
    ContractBase,
    assert_rejected,
    assert_utc,
    caller_token,
    cases,
    close_to,
    enters_and_closes,
    nested,
    outcome,
    same_times,
    same_value,
    text_beyond,
    text_of_bytes,
    token_is_secret,
)
from authstore.contracts.testing.harness import SessionSubject, Stores
from authstore.contracts.testing.races import SessionRaceContract
from authstore.contracts.values import (
    MAX_IP_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_TTL,
    MAX_USER_AGENT_BYTES,
    MIN_TTL,
)

__all__ = ["SessionContract"]


ORDER_GAP = 0.01
"""Sleep between creations whose order a test checks, so their timestamps differ."""


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
    ({"k": WIDEST * (MAX_JSON_BYTES // 4 - 1)}, ValueError),
    (nested(MAX_JSON_DEPTH + 1, dict), ValueError),
]
"""The last one encodes to MAX_JSON_BYTES + 4 bytes of JSON."""


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
            20, outcome(lambda store: store.create("alice", ttl=LONG, token=token, max_sessions=50))
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
        found += cases(
            "create", [(text_beyond(MAX_USER_AGENT_BYTES), ValueError)], "u", ttl=60, user_agent=...
        )
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
        """The policy's extremes round-trip: ids of MAX_ID_BYTES of 4-byte UTF-8, an IP and a
        user agent at their byte limits, metadata of exactly MAX_JSON_BYTES, MAX_TTL."""
        metadata = {"k": WIDEST * (MAX_JSON_BYTES // 4 - 2)}
        record, token = session_store.create(
            WIDE_ID,
            ttl=MAX_TTL,
            device_id=WIDE_ID,
            application_id=WIDE_ID,
            ip_address=text_of_bytes(MAX_IP_BYTES),
            user_agent=text_of_bytes(MAX_USER_AGENT_BYTES),
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
