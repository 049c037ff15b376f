"""Property tests over every store and every backend (tests/backends.py), sync and async.

Arbitrary keys, ids and values (any Unicode, lone surrogates, NUL, SQL wildcards,
case and normalization variants, lengths around each byte limit) either round-trip
verbatim and stay isolated from every other key and user, or are refused with
ValueError/TypeError before any I/O: the same input on a closed store is refused the
same way, where any I/O would fail with a backend error. Whether an input is valid is
decided here, from the documented input policy, not by asking authstore. No other
exception (a driver's, a BackendError) may come out.

Profiles (``AUTHSTORE_HYPOTHESIS_PROFILE``): ``ci`` (default) is derandomized with
few examples so every backend finishes in seconds; ``long`` runs many random ones:

    AUTHSTORE_HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/test_properties.py -p no:cacheprovider

A new backend joins by its name in ``tests.backends.BACKENDS``.
"""

from __future__ import annotations

import json
import os
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authstore.contracts.errors import AuthStoreError
from authstore.contracts.records import StoreKind
from authstore.contracts.testing.base import same_value
from authstore.contracts.testing.harness import Stores, url_factory

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("AUTHSTORE_HYPOTHESIS_PROFILE", "ci"))
LONG = 3600.0

# --- the input policy, restated independently of authstore's checks ----------------


def valid_text(value: object, max_bytes: int) -> bool:
    """Non-empty str, no NUL, valid Unicode, at most ``max_bytes`` of UTF-8."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return False
    try:
        return len(value.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


def valid_optional(value: object, max_bytes: int) -> bool:
    return value is None or valid_text(value, max_bytes)


def valid_value(value: object) -> bool:
    return isinstance(value, bytes) or valid_json(value)


def valid_json(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return True


KEY, ID, EMAIL, IP, AGENT, CODE = 1024, 255, 320, 64, 1024, 512

# --- strategies -----------------------------------------------------------------------

SPECIAL = ["%", "_", "\\", "'", '"', ":", " ", "*", "?", "[", "é", "\u0301", "ß", "İ", "😀"]
CHARS = st.one_of(st.characters(), st.sampled_from(SPECIAL))
clean = st.text(CHARS, min_size=1, max_size=20)
BAD_CHARS = ["\ud800", "\udfff", "\udc80", "\x00"]


@st.composite
def dirty(draw: st.DrawFn) -> str:
    """Text with a lone surrogate or a NUL somewhere."""
    text = draw(st.text(CHARS, max_size=12))
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(BAD_CHARS)) + text[at:]


def near(limit: int) -> st.SearchStrategy[str]:
    """Text of 1-, 2-, 3- or 4-byte characters around ``limit`` UTF-8 bytes."""
    return st.builds(
        lambda char, extra: char * max(1, (limit + extra) // len(char.encode())),
        st.sampled_from(["a", "é", "✓", "😀"]),
        st.integers(-4, 4),
    )


def texts(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(clean, clean, clean, dirty(), near(limit), st.just(""))


def optional(limit: int) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), texts(limit))


json_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(CHARS, max_size=20),
    dirty(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(st.one_of(inner, st.none()), max_size=4),
        st.dictionaries(st.one_of(st.text(CHARS, max_size=8), dirty()), inner, max_size=4),
    ),
    max_leaves=8,
)
values = st.one_of(json_values, st.binary(max_size=64))


def variants(text: str) -> set[str]:
    """Texts a careless backend might confuse with ``text``: case, padding, wildcards,
    Unicode normalization, a prefix."""
    found = {
        text + " ",
        " " + text,
        text.upper(),
        text.lower(),
        text.casefold(),
        text[:-1],
        text + "%",
        "%",
        "_" * len(text),
        text + "\\",
    }
    for form in ("NFC", "NFD"):
        found.add(unicodedata.normalize(form, text))
    return {v for v in found if v and v != text}


# --- stores ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sync", "async"])
def stores(request: pytest.FixtureRequest, backend: str) -> Iterator[Stores]:
    opened = Stores(url_factory(backend, f"prop{uuid.uuid4().hex[:10]}"), request.param)
    yield opened
    opened.close()


class Pair:
    """A live store and a closed twin: refused input must be refused by both."""

    def __init__(self, stores: Stores, kind: StoreKind) -> None:
        self.live = stores.open(kind)
        self.closed = stores.open(kind)
        self.closed.close()
        self.revoked_users: set[str] = set()

    def call(self, expected_valid: bool, method: str, *args: Any, **kwargs: Any) -> Any:
        """The live store's answer, or REFUSED; fails on any other outcome."""
        shown = f"{method}{_short(args)}{_short(kwargs) if kwargs else ''}"
        try:
            answer = getattr(self.live, method)(*args, **kwargs)
        except AuthStoreError as error:
            raise AssertionError(
                f"{shown}: {type(error).__name__} for "
                f"{'valid' if expected_valid else 'invalid'} input: {error}"
            ) from error
        except (ValueError, TypeError) as error:
            if expected_valid:
                raise AssertionError(f"{shown} refused valid input: {error!r}") from error
            return self._refused_before_io(shown, method, args, kwargs)
        assert expected_valid, f"{shown} accepted invalid input, answered {answer!r}"
        return answer

    def _refused_before_io(
        self, shown: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> object:
        """The closed twin refuses the same input the same way: no I/O came first."""
        try:
            getattr(self.closed, method)(*args, **kwargs)
        except AuthStoreError as late:
            raise AssertionError(f"{shown}: checked after I/O ({late!r})") from late
        except (ValueError, TypeError):
            return REFUSED
        raise AssertionError(f"{shown}: a closed store accepted what the live one refused")


REFUSED = object()


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _pair(kind: StoreKind) -> Any:
    """A module-scoped fixture: the live store of ``kind`` and its closed twin."""

    @pytest.fixture(scope="module")
    def fixture(stores: Stores) -> Pair:
        return Pair(stores, kind)

    return fixture


cache = _pair(StoreKind.CACHE)
sessions = _pair(StoreKind.SESSIONS)
totp = _pair(StoreKind.TOTP)
links = _pair(StoreKind.MAGIC_LINKS)


def _capable(pair: Pair, capability: str) -> bool:
    return capability in pair.live.capabilities


# --- cache ----------------------------------------------------------------------------


@PROFILE
@given(entries=st.dictionaries(texts(KEY), values, min_size=1, max_size=6))
def test_cache_values_round_trip_and_stay_apart(cache: Pair, entries: dict[str, Any]) -> None:
    if not _capable(cache, "kv"):
        pytest.skip("no kv capability")
    stored: dict[str, Any] = {}
    for key, value in entries.items():
        ok = valid_text(key, KEY) and valid_value(value)
        if cache.call(ok, "set", key, value, ttl=LONG) is not REFUSED:
            stored[key] = value
    try:
        for key, value in stored.items():
            got = cache.live.get(key)
            assert same_value(got, value), (key, value, got)
        if stored and _capable(cache, "batch"):
            found = cache.live.get_many(list(stored))
            assert found.keys() == stored.keys()
            assert all(same_value(found[k], v) for k, v in stored.items())
        for key in stored:
            for other in variants(key) - stored.keys():
                if valid_text(other, KEY):
                    assert cache.live.get(other) is None, f"{other!r} reads {key!r}'s entry"
        for key in entries:
            if not valid_text(key, KEY):
                # a refused key: reads refuse it too, before any I/O
                assert cache.call(False, "get", key) is REFUSED
            elif key not in stored:
                assert cache.live.get(key) is None, "a refused value left an entry"
    finally:
        for key in stored:
            cache.live.delete(key)


@PROFILE
@given(keys=st.lists(texts(KEY), min_size=1, max_size=4, unique=True))
def test_revocations_and_limits_are_per_key(cache: Pair, keys: list[str]) -> None:
    done: list[str] = []
    try:
        for key in keys:
            ok = valid_text(key, KEY)
            if _capable(cache, "blacklist"):
                if cache.call(ok, "add_to_blacklist", key, LONG) is REFUSED:
                    assert cache.call(False, "is_blacklisted", key) is REFUSED
                    continue
                done.append(key)
                assert cache.live.is_blacklisted(key) is True
            if _capable(cache, "fixed_window"):
                hits = [cache.call(ok, "check_rate_limit", key, 2, LONG) for _ in range(3)]
                if hits[0] is REFUSED:
                    continue
                assert [hit.allowed for hit in hits] == [True, True, False]
            if _capable(cache, "incr") and cache.call(ok, "incr", key, 5, ttl=LONG) is not REFUSED:
                assert cache.live.incr(key, -2) == 3
                cache.live.delete(key)
        for key in done:
            for other in variants(key) - set(done):
                if valid_text(other, KEY):
                    assert cache.live.is_blacklisted(other) is False, (other, key)
                    if _capable(cache, "fixed_window"):
                        fresh = cache.live.check_rate_limit(other, 2, LONG)
                        assert fresh.remaining == 1, f"{other!r} shares {key!r}'s limit"
                        cache.live.reset_rate_limit(other)
    finally:
        for key in done:
            cache.live.remove_from_blacklist(key)
            if _capable(cache, "fixed_window"):
                cache.live.reset_rate_limit(key)


@PROFILE
@given(users=st.lists(texts(ID), min_size=1, max_size=4, unique=True))
def test_user_revocations_are_per_user(cache: Pair, users: list[str]) -> None:
    if not _capable(cache, "user_revocation"):
        pytest.skip("no user_revocation capability")
    revoked = {}
    for user in users:
        at = cache.call(valid_text(user, ID), "revoke_user_tokens", user, expires_in=LONG)
        if at is not REFUSED:
            revoked[user] = at
    # A revocation cannot be undone: users revoked by earlier examples stay revoked.
    cache.revoked_users |= revoked.keys()
    for user, at in revoked.items():
        read = cache.live.user_tokens_revoked_at(user)
        assert read is not None and abs(read - at) <= timedelta(microseconds=1), (user, at, read)
        for other in variants(user) - cache.revoked_users:
            if valid_text(other, ID):
                assert cache.live.user_tokens_revoked_at(other) is None, (other, user)


# --- sessions -------------------------------------------------------------------------

session_fields = st.fixed_dictionaries(
    {
        "device_id": optional(ID),
        "application_id": optional(ID),
        "ip_address": optional(IP),
        "user_agent": optional(AGENT),
        "metadata": st.one_of(st.none(), st.dictionaries(st.text(CHARS, max_size=8), json_values)),
    }
)


def _valid_session(user: str, fields: dict[str, Any]) -> bool:
    return (
        valid_text(user, ID)
        and valid_optional(fields["device_id"], ID)
        and valid_optional(fields["application_id"], ID)
        and valid_optional(fields["ip_address"], IP)
        and valid_optional(fields["user_agent"], AGENT)
        and valid_json(fields["metadata"])
    )


@PROFILE
@given(
    users=st.dictionaries(texts(ID), st.lists(session_fields, min_size=1, max_size=2), max_size=3)
)
def test_sessions_round_trip_and_stay_with_their_user(
    sessions: Pair, users: dict[str, list[dict[str, Any]]]
) -> None:
    created: dict[str, list[Any]] = {}
    try:
        for user, many in users.items():
            for fields in many:
                new = sessions.call(
                    _valid_session(user, fields), "create", user, ttl=LONG, **fields
                )
                if new is REFUSED:
                    continue
                created.setdefault(user, []).append(new)
                record = sessions.live.get(new.token)
                assert record is not None and record.id == new.record.id
                assert record.user_id == user
                for name in ("device_id", "application_id", "ip_address", "user_agent"):
                    assert getattr(record, name) == fields[name], name
                assert same_value(record.metadata, fields["metadata"] or {})
            if not valid_text(user, ID):
                assert sessions.call(False, "list", user) is REFUSED
        for user, news in created.items():
            listed = {record.id for record in sessions.live.list(user)}
            assert listed == {new.record.id for new in news}, user
            assert sessions.live.count(user) == len(news)
            for other in variants(user) - created.keys():
                if valid_text(other, ID):
                    assert sessions.live.list(other) == [], f"{other!r} lists {user!r}'s"
                    assert sessions.live.revoke_all(other) == 0
    finally:
        for user in created:
            sessions.live.revoke_all(user)


# --- TOTP -----------------------------------------------------------------------------


@PROFILE
@given(
    users=st.dictionaries(
        texts(ID), st.lists(texts(CODE), min_size=1, max_size=3, unique=True), max_size=3
    )
)
def test_backup_codes_work_once_and_only_for_their_user(
    totp: Pair, users: dict[str, list[str]]
) -> None:
    saved: dict[str, list[str]] = {}
    enrolled: set[str] = set()
    try:
        for user, codes in users.items():
            ok = valid_text(user, ID)
            if totp.call(ok, "save_pending", user, b"ciphertext") is REFUSED:
                continue
            enrolled.add(user)
            all_ok = all(valid_text(code, CODE) for code in codes)
            if totp.call(all_ok, "replace_backup_codes", user, codes) is not REFUSED:
                saved[user] = codes
        for user, codes in saved.items():
            state = totp.live.load(user)
            assert state is not None and state.backup_codes_left == len(codes)
            for other in variants(user) - enrolled:
                if valid_text(other, ID):
                    assert totp.live.load(other) is None, (other, user)
                    assert totp.live.use_backup_code(other, codes[0]) is False
            for code in codes:
                for other_code in variants(code) - set(codes):
                    if valid_text(other_code, CODE):
                        assert totp.live.use_backup_code(user, other_code) is False
                assert totp.live.use_backup_code(user, code) is True
                assert totp.live.use_backup_code(user, code) is False
            assert totp.live.claim_step(user, 5) is True
            assert totp.live.claim_step(user, 5) is False
    finally:
        for user in enrolled:
            totp.live.disable(user)


# --- magic links ----------------------------------------------------------------------

link_fields = st.fixed_dictionaries(
    {
        "email": texts(EMAIL),
        "application_id": optional(ID),
        "ip_address": optional(IP),
        "user_agent": optional(AGENT),
    }
)


@PROFILE
@given(users=st.dictionaries(texts(ID), link_fields, min_size=1, max_size=3))
def test_magic_links_round_trip_and_work_once(
    links: Pair, users: dict[str, dict[str, Any]]
) -> None:
    issued = {}
    try:
        for user, fields in users.items():
            ok = (
                valid_text(user, ID)
                and valid_text(fields["email"], EMAIL)
                and valid_optional(fields["application_id"], ID)
                and valid_optional(fields["ip_address"], IP)
                and valid_optional(fields["user_agent"], AGENT)
            )
            options = {name: value for name, value in fields.items() if name != "email"}
            new = links.call(ok, "issue", user, fields["email"], ttl=LONG, **options)
            if new is REFUSED:
                continue
            issued[user] = (new, options)
            record = links.live.peek(new.token)
            assert record is not None and (record.user_id, record.id) == (user, new.record.id)
            assert record.email == new.record.email
            for name in ("application_id", "ip_address", "user_agent"):
                assert getattr(record, name) == fields[name], name
        for user, (new, fields) in issued.items():
            for other in variants(user) - issued.keys():
                if valid_text(other, ID):
                    assert links.live.revoke_user(other) == 0, f"{other!r} revoked {user!r}'s"
            application = fields["application_id"]
            if application is not None:
                for other_app in variants(application):
                    if valid_text(other_app, ID):
                        assert links.live.consume(new.token, application_id=other_app) is None
            consumed = links.live.consume(new.token, application_id=application)
            assert consumed is not None and consumed.id == new.record.id
            assert links.live.consume(new.token, application_id=application) is None
    finally:
        for user in issued:
            links.live.revoke_user(user)


def test_the_oracle_agrees_with_the_policy_bounds() -> None:
    """The restated policy must match authstore's constants, or the properties drift."""
    from authstore.contracts import values

    assert values.MAX_KEY_BYTES == KEY
    assert (values.MAX_ID_BYTES, values.MAX_EMAIL_BYTES, values.MAX_IP_BYTES) == (ID, EMAIL, IP)
    assert (values.MAX_USER_AGENT_BYTES, values.MAX_CODE_HASH_BYTES) == (AGENT, CODE)
