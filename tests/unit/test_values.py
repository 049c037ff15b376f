"""The value codec and argument checks shared by every backend."""

from __future__ import annotations

import hashlib
import importlib
import math
from typing import Any

import pytest

from authstore.contracts import values
from authstore.contracts.values import (
    MAX_JSON_BYTES,
    MAX_TTL,
    MAX_VALUE_BYTES,
    MAX_WINDOW,
    MIN_TTL,
    check_key,
    check_metadata,
    check_namespace,
    check_text,
    check_ttl,
    check_utf8,
    decode_value,
    encode_value,
    hash_token,
    new_token,
)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        True,
        False,
        "",
        "héllo ✓",
        b"",
        b"\x00\xff",
        [],
        {},
        [1, [2, {"a": None}]],
    ],
)
def test_round_trip_keeps_type_and_value(value: object) -> None:
    decoded = decode_value(encode_value(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_integers_are_plain_decimal_text() -> None:
    """So Redis INCRBY, memcached incr and SQL arithmetic work on stored integers."""
    assert encode_value(42) == b"42"
    assert encode_value(-3) == b"-3"


def test_bytes_never_look_like_json() -> None:
    assert encode_value(b"42") != encode_value(42)
    assert decode_value(encode_value(b"42")) == b"42"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, ValueError),
        (math.nan, ValueError),
        ([math.inf], ValueError),
        ((1, 2), TypeError),
        ({1, 2}, TypeError),
        ({1: "a"}, TypeError),
        (object(), TypeError),
        ([b"nested bytes"], TypeError),
    ],
)
def test_unstorable_values(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_value(value)


@pytest.mark.parametrize(
    ("ttl", "expected"), [(None, None), (math.inf, None), (1, 1.0), (0.25, 0.25)]
)
def test_ttl_accepted(ttl: object, expected: float | None) -> None:
    assert check_ttl(ttl) == expected


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_ttl_rejected(ttl: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_ttl(ttl)


def test_required_ttl_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        check_ttl(math.inf, optional=False)
    with pytest.raises(TypeError):
        check_ttl(None, optional=False)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", ValueError),
        ("x" * 1025, ValueError),
        ("é" * 513, ValueError),
        (b"k", TypeError),
        (1, TypeError),
        ("a\x00b", ValueError),
    ],
)
def test_bad_keys(key: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_key(key)


def test_namespaces_cannot_contain_the_separator() -> None:
    assert check_namespace("tenant-1.app_x") == "tenant-1.app_x"
    for bad in ("", "a:b", "x" * 65, "sp ace"):
        with pytest.raises(ValueError):
            check_namespace(bad)


def test_tokens_are_random_and_only_hashes_are_kept() -> None:
    token, digest = new_token()
    other, _ = new_token()
    assert token != other and len(token) >= 43
    assert digest == hash_token(token) and token not in digest and len(digest) == 64


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [(MIN_TTL, MIN_TTL), (MAX_TTL, float(MAX_TTL)), (float(MAX_TTL), float(MAX_TTL))],
)
def test_ttl_bounds_are_inclusive(ttl: float, expected: float) -> None:
    assert check_ttl(ttl, optional=False) == expected


@pytest.mark.parametrize(
    "ttl", [MIN_TTL / 2, 5e-324, MAX_TTL + 1, MAX_TTL + 1e-3, 1e12, 1e300, 10**400, 2**1024]
)
def test_ttl_out_of_range_is_a_value_error(ttl: float) -> None:
    """Never OverflowError: an int is compared as an int, not converted to a float."""
    with pytest.raises(ValueError, match="between") as caught:
        check_ttl(ttl)
    assert not isinstance(caught.value, OverflowError)


def test_window_has_its_own_maximum() -> None:
    assert check_ttl(MAX_WINDOW, "window", optional=False, maximum=MAX_WINDOW) == MAX_WINDOW
    with pytest.raises(ValueError):
        check_ttl(MAX_WINDOW + 1, "window", optional=False, maximum=MAX_WINDOW)


def test_text_limits_count_utf8_bytes() -> None:
    assert check_text("\U0001f600" * 63 + "abc", "id", max_bytes=255)
    with pytest.raises(ValueError, match="255 bytes"):
        check_text("\U0001f600" * 64, "id", max_bytes=255)
    assert check_utf8("é", "x", 2) == 2


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\U0001f600\udc00"])
def test_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        check_text(text, "id")
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_value(text)
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_value({"k": [text]})
    with pytest.raises(ValueError, match="lone surrogate"):
        check_metadata({text: 1})


def test_value_and_metadata_sizes() -> None:
    assert len(encode_value(b"x" * (MAX_VALUE_BYTES - 1))) == MAX_VALUE_BYTES
    with pytest.raises(ValueError):
        encode_value(b"x" * MAX_VALUE_BYTES)
    with pytest.raises(ValueError):
        encode_value("x" * MAX_VALUE_BYTES)
    assert len(check_metadata({"k": "x" * (MAX_JSON_BYTES - 8)})) == MAX_JSON_BYTES
    with pytest.raises(ValueError):
        check_metadata({"k": "x" * (MAX_JSON_BYTES - 7)})


def test_nesting_is_limited_before_python_runs_out_of_stack() -> None:
    import sys

    from authstore import open_cache
    from authstore.contracts.testing.base import nested
    from authstore.contracts.values import MAX_JSON_DEPTH

    with open_cache("memory://") as cache:
        for too_deep in (nested(MAX_JSON_DEPTH + 1), nested(3000), nested(100_000, dict)):
            with pytest.raises(ValueError, match="nested deeper than 64 levels"):
                cache.set("k", too_deep)  # never RecursionError
        deepest = nested(MAX_JSON_DEPTH, dict)
        cache.set("k", deepest)

        def read_from_depth(frames: int) -> object:
            return cache.get("k") if frames == 0 else read_from_depth(frames - 1)

        # what was accepted reads back from a stack nearly at Python's limit
        assert read_from_depth(sys.getrecursionlimit() - 150) == deepest


@pytest.mark.parametrize(
    "token",
    ["a", "x" * 43, "x" * 512, "é" * 256, "tøken ✓ with spaces", "\U0001f511" * 128, "z" * 64],
)
def test_token_hashes_are_hashlibs_sha256_whichever_implementation_runs(token: str) -> None:
    """Tokens are hashed with CPython's own SHA-256 where it has one (faster than OpenSSL's
    per call): stored hashes must stay exactly hashlib's, every token length and kind."""
    expected = hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) == expected
    assert values._sha256(token.encode()).hexdigest() == expected


def test_token_hashes_fall_back_to_hashlib_without_cpythons_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Python built without its own hash modules (some FIPS builds) uses hashlib's."""
    real = importlib.import_module

    def without_builtin_hashes(name: str, *args: Any) -> Any:
        if name in ("_sha2", "_sha256"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_builtin_hashes)
    assert values._fastest_sha256() is hashlib.sha256


def test_token_hashes_go_through_openssl_in_fips_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenSSL in FIPS mode does every hash, CPython's own SHA-256 though present."""
    monkeypatch.setattr(values, "_fips_mode", lambda: True)
    assert values._fastest_sha256() is hashlib.sha256
    monkeypatch.setattr(values, "_fips_mode", lambda: False)
    assert values._fastest_sha256() is not hashlib.sha256
