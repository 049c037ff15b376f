"""The TOTP store's contract: ``TotpContract``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from authstore.contracts.records import StoreKind, TotpState
from authstore.contracts.testing.base import (
    BAD_IDS,
    SURROGATES,
    WIDE_ID,
    Bad,
    BadCase,
    assert_rejected,
    assert_utc,
    cases,
    close_to,
    enters_and_closes,
    same_value,
    text_beyond,
    text_of_bytes,
)
from authstore.contracts.testing.harness import Stores, TotpSubject
from authstore.contracts.testing.races import TotpRaceContract
from authstore.contracts.values import MAX_CODE_HASH_BYTES

__all__ = ["TotpContract"]


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
            (text_beyond(MAX_CODE_HASH_BYTES), ValueError),
            (text_beyond(4 * MAX_CODE_HASH_BYTES), ValueError),
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
            totp_store.replace_backup_codes("alice", ["new", text_beyond(MAX_CODE_HASH_BYTES)])
        state = totp_store.load("alice")
        assert state is not None and state.backup_codes_left == 1
        assert totp_store.use_backup_code("alice", "new") is False
        assert totp_store.use_backup_code("alice", "keep") is True

    def test_totp_policy_limits_are_storable(self, totp_store: TotpSubject) -> None:
        """A user id of MAX_ID_BYTES and backup-code hashes of exactly MAX_CODE_HASH_BYTES
        of UTF-8."""
        self.enrol(totp_store, WIDE_ID)
        codes = [
            text_of_bytes(MAX_CODE_HASH_BYTES),
            text_of_bytes(MAX_CODE_HASH_BYTES - 4) + "abcd",
            "é" * (MAX_CODE_HASH_BYTES // 2),
        ]
        totp_store.replace_backup_codes(WIDE_ID, codes)
        state = totp_store.load(WIDE_ID)
        assert state is not None and state.backup_codes_left == 3
        assert all(totp_store.use_backup_code(WIDE_ID, code) is True for code in codes)
        assert totp_store.claim_step(WIDE_ID, 2**62) is True
