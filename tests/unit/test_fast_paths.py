"""The hot paths' shortcuts decide exactly as the full checks do.

Each fast path (the JSON walk without paths, the C encoder built once, the one-step
checks of TTLs, counts and tokens, the memory sweeper's single item per entry) must
accept, refuse and produce what the slow, path-building code does.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict, UserDict
from collections.abc import Generator
from dataclasses import FrozenInstanceError, fields
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import authstore
from authstore.contracts.records import RateLimitResult
from authstore.contracts.values import (
    MAX_TOKEN_BYTES,
    _check_json,
    check_count,
    check_text,
    check_ttl,
    encode_json,
    encode_value,
    hash_secret,
)


class Level(IntEnum):
    LOW = 1


class Text(str):
    pass


class Listy(list[Any]):
    pass


_reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities included: they must be refused
    st.text(max_size=8),  # lone surrogates included: they must be refused
    st.sampled_from([Level.LOW, Text("x"), (1, 2), b"raw", 1j, object()]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.dictionaries(st.sampled_from([1, None, True, 2.5]), inner, min_size=1, max_size=2),
        st.builds(Listy, st.lists(inner, max_size=2)),
        st.builds(OrderedDict, st.dictionaries(st.text(max_size=2), inner, max_size=2)),
        st.tuples(inner),
    ),
    max_leaves=12,
)


def _slow_verdict(value: object) -> tuple[type[Exception] | None, bytes | None]:
    """What the path-building check and the stock encoder say about a nested value."""
    try:
        _check_json(value, "value")
        text = _reference(value)
        return None, text.encode("utf-8")
    except (TypeError, ValueError) as error:
        return type(error), None
    except UnicodeEncodeError:
        return ValueError, None


@given(st.one_of(st.lists(values, max_size=4), st.dictionaries(st.text(max_size=4), values)))
def test_encoding_agrees_with_the_path_building_check(value: object) -> None:
    expected_error, expected = _slow_verdict(value)
    if expected_error is None:
        assert encode_value(value) == expected
    else:
        with pytest.raises((TypeError, ValueError)) as raised:
            encode_value(value)
        assert isinstance(raised.value, expected_error)


@pytest.mark.parametrize(
    ("value", "error", "where"),
    [
        ({"a": [1, (2, 3)]}, TypeError, "value['a'][1]"),
        ({"a": {1: "x"}}, TypeError, "value['a']"),
        ([0.5, [math.nan]], ValueError, "value[1][0]"),
        ({"n": math.inf}, ValueError, "value['n']"),
        ({"e": Level.LOW}, TypeError, "value['e']"),
        (Listy([1]), TypeError, "value"),
        ({"s": Text("x")}, TypeError, "value['s']"),
    ],
)
def test_refusals_still_say_where(value: object, error: type[Exception], where: str) -> None:
    with pytest.raises(error, match="^" + re.escape(where) + ":"):
        encode_value(value)


def test_metadata_takes_the_same_path() -> None:
    assert encode_json({"a": [1, "é", None, 2.5]}) == '{"a":[1,"é",null,2.5]}'
    with pytest.raises(TypeError, match=r"^metadata\['k'\]:"):
        encode_json({"k": (1,)}, "metadata")


@given(st.one_of(st.integers(), st.floats(), st.none(), st.booleans()))
def test_ttl_fast_path_agrees_with_the_bounds(ttl: object) -> None:
    try:
        got: object = check_ttl(ttl)
    except (TypeError, ValueError) as error:
        got = type(error)
    if ttl is None or ttl == math.inf:
        assert got is None
    elif isinstance(ttl, bool):
        assert got is TypeError
    elif ttl != ttl or not 0.001 <= ttl <= 10 * 365 * 86400:  # type: ignore[operator]
        assert got is ValueError
    else:
        assert got == float(ttl)  # type: ignore[arg-type]


@given(st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.booleans(), st.floats()))
def test_count_fast_path_agrees_with_the_bounds(count: object) -> None:
    try:
        got: object = check_count(count, "cost", minimum=1, maximum=2**53)
    except (TypeError, ValueError) as error:
        got = type(error)
    if type(count) is not int:
        assert got is TypeError
    elif not 1 <= count <= 2**53:
        assert got is ValueError
    else:
        assert got == count


@given(st.text(max_size=MAX_TOKEN_BYTES + 2))
def test_token_hash_fast_path_checks_as_check_text(token: str) -> None:
    try:
        check_text(token, "token", max_bytes=MAX_TOKEN_BYTES)
    except ValueError:
        with pytest.raises(ValueError, match=r"^token"):
            hash_secret(token, "token")
    else:
        assert len(hash_secret(token, "token")) == 64


@pytest.mark.parametrize("token", ["", "a\x00b", "x" * (MAX_TOKEN_BYTES + 1), 5, b"tok"])
def test_token_hash_refusals(token: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        hash_secret(token, "token")


def test_rescheduled_entries_are_still_swept() -> None:
    """A key whose expiry moved later keeps one sweep item; when it comes due the entry
    is rescheduled, and swept for good once its final expiry passes (memory stays bounded
    for keys written with a TTL and never read again)."""
    cache = authstore.open_cache("memory://")
    data = cache._runner.data  # type: ignore[attr-defined]
    now = [1_000_000.0]
    data.clock = lambda: now[0]
    for ttl in (10, 20, 30):  # each write moves the expiry later: no new heap item
        cache.set("moving", b"x", ttl=ttl)
        cache.check_rate_limit("limited", 5, ttl)
        now[0] += 1
    assert len(data.cache_sweeper) == 2
    now[0] += 15  # the first item is due, the entries live on: they are rescheduled
    cache.set("other", b"y", ttl=1000)
    assert "authstore:k:moving" in data.values
    now[0] += 20  # past every final expiry: the next write sweeps both entries away
    cache.set("other", b"y", ttl=1000)
    assert "authstore:k:moving" not in data.values
    assert not data.guarded
    assert cache.get("other") == b"y"


def test_an_earlier_expiry_is_scheduled_at_once() -> None:
    cache = authstore.open_cache("memory://")
    data = cache._runner.data  # type: ignore[attr-defined]
    now = [1_000_000.0]
    data.clock = lambda: now[0]
    cache.set("shrinking", b"x", ttl=100)
    cache.set("shrinking", b"x", ttl=5)  # earlier than the item it has: a new one
    now[0] += 6
    cache.set("other", b"y")
    assert "authstore:k:shrinking" not in data.values


def test_refused_hits_leave_limiter_state_as_it_was() -> None:
    cache = authstore.open_cache("memory://")
    data = cache._runner.data  # type: ignore[attr-defined]
    for algorithm in ("fixed_window", "sliding_window", "gcra"):
        assert cache.check_rate_limit(algorithm, 1, 60, algorithm=algorithm).allowed
        kind = {"fixed_window": "f", "sliding_window": "s", "gcra": "g"}[algorithm]
        entry = data.guarded[f"authstore:{kind}:{algorithm}"]
        state, expires_at = entry.value, entry.expires_at
        result = cache.check_rate_limit(algorithm, 1, 60, algorithm=algorithm)
        assert not result.allowed
        assert (entry.value, entry.expires_at) == (state, expires_at)
        assert data.guarded[f"authstore:{kind}:{algorithm}"] is entry


def test_unknown_dict_like_values_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_value(UserDict(a=1))


def test_the_memory_runner_refuses_an_operation_that_yields() -> None:
    """An operation that asks for I/O is closed (its cleanup runs), the runner says so,
    and the lock is free again for the next operation."""
    cache = authstore.open_cache("memory://")
    runner = cache._runner  # type: ignore[attr-defined]
    cleaned: list[str] = []

    def asks_for_io() -> Generator[str, object, int]:
        try:
            yield "SELECT 1"
        finally:
            cleaned.append("closed")
        return 1

    with pytest.raises(RuntimeError, match="performs no I/O"):
        runner.run(asks_for_io())
    assert cleaned == ["closed"]
    assert not runner._lock.locked()
    cache.set("after", 1)
    assert cache.get("after") == 1


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limit_results_are_whole_frozen_records(algorithm: str) -> None:
    cache = authstore.open_cache("memory://")
    for _ in range(3):
        result = cache.check_rate_limit("k", 2, 60, algorithm=algorithm)
        same = RateLimitResult(**{f.name: getattr(result, f.name) for f in fields(result)})
        assert result == same
        assert hash(result) == hash(same)
        assert repr(result) == repr(same)
        with pytest.raises(FrozenInstanceError):
            result.allowed = True  # type: ignore[misc]


def test_sliding_touches_keep_the_session_sweep_bounded() -> None:
    """Each touch with a ttl moves the session's expiry and leaves its earlier sweep item
    stale; the heap is rebuilt from the live sessions before it grows without bound."""
    sessions = authstore.open_sessions("memory://")
    data = sessions._runner.data  # type: ignore[attr-defined]
    token = sessions.create("alice", ttl=60).token
    revoked = sessions.create("bob", ttl=60).token
    sessions.revoke(revoked)
    for _ in range(5000):
        sessions.touch(token, ttl=60)
    assert len(data.session_sweeper) <= 2 * 2 + 1024 + 1
    now = [data.clock() + 3600]
    data.clock = lambda: now[0]
    sessions.create("carol", ttl=60)  # a write sweeps what is due: both old sessions
    assert sessions.get(token) is None
    assert ("authstore", hash_secret(token, "token")) not in data.sessions
    assert not data.revoked_sessions


@given(
    metadata=st.dictionaries(
        st.text(max_size=8),
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        max_size=4,
    ),
    optional=st.none() | st.text(min_size=1, max_size=8),
    created=st.floats(min_value=0, max_value=4e9),
)
def test_sql_session_records_are_what_the_dataclass_builds(
    metadata: dict[str, Any], optional: str | None, created: float
) -> None:
    """The SQL ops build session records without SessionRecord's __init__ and decode
    their metadata without json.loads: the same record, as frozen."""
    from authstore.adapters.sql.ops.sessions import _session
    from authstore.contracts.records import SessionRecord, from_epoch

    text = json.dumps(metadata, separators=(",", ":"))
    row = (
        "sid",
        "alice",
        created,
        created + 1.5,
        created + 60,
        optional,
        None,
        optional,
        None,
        text,
    )
    record = _session(row)
    same = SessionRecord(
        id="sid",
        user_id="alice",
        created_at=from_epoch(created),
        last_seen_at=from_epoch(created + 1.5),
        expires_at=from_epoch(created + 60),
        device_id=optional,
        application_id=None,
        ip_address=optional,
        user_agent=None,
        metadata=json.loads(text),
    )
    assert record == same
    assert repr(record) == repr(same)
    assert [getattr(record, f.name) for f in fields(record)] == [
        getattr(same, f.name) for f in fields(same)
    ]
    assert record.created_at.tzinfo is same.created_at.tzinfo
    with pytest.raises(FrozenInstanceError):
        record.user_id = "mallory"  # type: ignore[misc]


def test_sql_session_records_without_metadata_each_get_a_dict_of_their_own() -> None:
    """No metadata ("{}", the usual row) skips the JSON scanner: still a new dict per
    record, so a caller changing one record's metadata changes no other."""
    from authstore.adapters.sql.ops.sessions import _session

    row = ("sid", "alice", 1.0, 2.0, 3.0, None, None, None, None, "{}")
    first, second = _session(row), _session(row)
    assert first.metadata == {} and type(first.metadata) is dict
    first.metadata["changed"] = True
    assert second.metadata == {}
    assert _session(row).metadata == {}
