"""Argument checks, the value codec and secret tokens: shared by every backend.

Everything here runs before any I/O, so bad input fails fast with a ValueError or
TypeError that says what is wrong, and nothing is half-written.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import json.scanner
import math
import re
import secrets
from _json import make_encoder
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn, Protocol

from authstore.contracts.records import JSONValue, Value

__all__ = [
    "MAX_BACKUP_CODES",
    "MAX_CALLER_TOKEN_CHARS",
    "MAX_CODE_HASH_BYTES",
    "MAX_EMAIL_BYTES",
    "MAX_ID_BYTES",
    "MAX_IP_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_KEY_BYTES",
    "MAX_LIMIT",
    "MAX_SECRET_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_TTL",
    "MAX_USER_AGENT_BYTES",
    "MAX_VALUE_BYTES",
    "MAX_WINDOW",
    "MIN_CALLER_TOKEN_CHARS",
    "MIN_TTL",
    "check_utf8",
    "check_count",
    "check_key",
    "check_keys",
    "check_namespace",
    "check_optional_text",
    "check_text",
    "check_token",
    "check_ttl",
    "decode_value",
    "encode_json",
    "encode_value",
    "hash_secret",
    "hash_token",
    "new_public_id",
    "new_token",
]

# The input policy. Every limit is in UTF-8 bytes (never characters): the narrowest
# backend column is a MySQL/MariaDB VARBINARY sized in bytes, and a PostgreSQL
# VARCHAR(n) of n characters holds any n bytes of UTF-8.
MAX_KEY_BYTES = 1024
MAX_LIMIT = 2**31 - 1
"""A rate limit's ``limit``: fits a signed 32-bit column and a Lua number exactly."""
MAX_TEXT_BYTES = 4096
MAX_TOKEN_BYTES = 512
MAX_JSON_BYTES = 64 * 1024
"""Session metadata, encoded: well inside a MySQL MEDIUMTEXT and a 16 MiB BSON document."""
MAX_JSON_DEPTH = 64
"""Lists and dicts nested in a cache value or session metadata, the outermost counted:
a value that deep is checked, encoded and decoded from any call stack (Python's limit
is about 1,000 frames: 3,000 levels raised RecursionError, 950 could be stored but
not read back from a deeper stack)."""
MAX_VALUE_BYTES = 4 * 1024 * 1024
"""A cache value, encoded. Below MariaDB's default 16 MiB max_allowed_packet even when
every byte is escaped (x2), and MongoDB's 16 MiB document."""

# Record fields, each sized to the narrowest column that holds it (sql.schema; MySQL's
# VARBINARY counts bytes).
MAX_ID_BYTES = 255
"""A user id, session id, device id or application id."""
MAX_EMAIL_BYTES = 320
"""An email address: RFC 5321's 64-byte local part, "@" and 255-byte domain."""
MAX_IP_BYTES = 64
MAX_USER_AGENT_BYTES = 1024
MAX_CODE_HASH_BYTES = 512
"""One backup code hash, whatever hash the core chose."""
MAX_SECRET_BYTES = 4096
"""A TOTP secret as the store receives it: the core's ciphertext, as bytes."""
MAX_BACKUP_CODES = 100
MIN_CALLER_TOKEN_CHARS = 32
"""A caller-supplied token is a bearer secret: a short one could be guessed."""
MAX_CALLER_TOKEN_CHARS = 512

# Durations. Every expiry is computed as now + seconds (an epoch float on SQL, an
# integer of milliseconds on Redis, a BSON date on MongoDB, a datetime in records).
MIN_TTL = 0.001
"""One millisecond: the finest unit Redis (PX) and BSON dates keep; a positive TTL
below it would round to zero (Redis refuses PX 0) or lose the entry at once."""
MAX_TTL = 10 * 365 * 86400
"""Ten years (315,360,000 s). now + MAX_TTL stays far below datetime's year 9999 and
every backend's range; a finite TTL beyond it (1e12 s is year 33715) could be written
but never read back as a datetime."""
MAX_WINDOW = 366 * 86400
"""A rate-limit window: 1 ms to 366 days. Sliding-window state lives two windows; a
window below 1 ms makes ``now / window`` and GCRA's interval lose all precision."""
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


def _fips_mode() -> bool:
    """Whether hashlib's OpenSSL runs in FIPS mode (false where it cannot say)."""
    try:
        return bool(importlib.import_module("_hashlib").get_fips_mode())
    except (ImportError, AttributeError, ValueError):
        return False


def _fastest_sha256() -> Callable[[bytes], _Digest]:
    """CPython's own SHA-256 (``_sha2`` since 3.12, ``_sha256`` in 3.11), else hashlib's.

    The same digest. Every session and link operation hashes its token, and OpenSSL's
    SHA-256 (hashlib's) costs far more time per call than its instruction count says: in
    the async PostgreSQL session get (about 120 to 150 µs a call here), CPython's took 3 to
    12 µs off each call in interleaved runs, about what skipping the hash altogether did.
    A Python built without its own hashes (some FIPS builds) has neither module, and an
    OpenSSL in FIPS mode must do every hash (its validated module): hashlib's then."""
    if _fips_mode():
        return hashlib.sha256
    for module in ("_sha2", "_sha256"):
        try:
            sha256: Callable[[bytes], _Digest] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return sha256
    return hashlib.sha256


_sha256 = _fastest_sha256()
_BYTES_TAG = b"\x00"
"""Marks raw bytes: JSON text never starts with NUL, and an integer stays plain
decimal text so Redis INCRBY, memcached incr and SQL arithmetic work on it."""


def check_key(key: object, what: str = "key") -> str:
    """A cache key (or jti): a non-empty str of at most MAX_KEY_BYTES UTF-8 bytes, no
    lone surrogate, no NUL. TypeError for a non-str, ValueError otherwise; ``what``
    names the argument in the message. Returns the key unchanged."""
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError(f"{what} must not be empty")
    if not key.isascii() or len(key) > MAX_KEY_BYTES:
        check_utf8(key, what, MAX_KEY_BYTES)
    if "\x00" in key:
        raise ValueError(f"{what} must not contain NUL characters")
    return key


def check_keys(keys: object) -> list[str]:
    """An iterable of keys (not a single str) checked with ``check_key``, duplicates
    dropped, order kept: what ``get_many``/``delete_many`` take."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise TypeError("keys must be an iterable of str (not a single str)")
    return list(dict.fromkeys(check_key(k) for k in keys))


def check_namespace(namespace: object) -> str:
    """Namespaces cannot contain ':' so ``{namespace}:{kind}:{key}`` never collides across tenants."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError("namespace must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return namespace


def check_utf8(text: str, what: str, max_bytes: int) -> int:
    """The UTF-8 size of ``text``; ValueError for a lone surrogate or more than ``max_bytes``."""
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    if size > max_bytes:
        raise ValueError(f"{what} is longer than {max_bytes} bytes of UTF-8")
    return size


def check_ttl(
    ttl: object, what: str = "ttl", *, optional: bool = True, maximum: int = MAX_TTL
) -> float | None:
    """Seconds from MIN_TTL (1 ms) to ``maximum`` as a float. When ``optional``, None
    and ``math.inf`` both mean "no expiry" and return None; otherwise they are errors.

    An int is compared as an int: ``float(10**400)`` would raise OverflowError.
    """
    kind = type(ttl)
    if kind is float or kind is int:  # the common case, once: NaN and inf fail the range test
        if MIN_TTL <= ttl <= maximum:  # type: ignore[operator]
            return float(ttl)  # type: ignore[arg-type]
    elif ttl is None and optional:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(ttl).__name__}")
    if ttl != ttl:
        raise ValueError(f"{what} must not be NaN")
    if ttl <= 0:
        raise ValueError(f"{what} must be positive, got {_shown(ttl)}")
    if ttl == math.inf:
        if optional:
            return None
        raise ValueError(f"{what} must be finite")
    if not MIN_TTL <= ttl <= maximum:
        raise ValueError(
            f"{what} must be between {MIN_TTL} and {maximum} seconds, got {_shown(ttl)}"
        )
    return float(ttl)


def _shown(number: float) -> str:
    """A number for an error message; never str() of a huge int (slow, or refused)."""
    if isinstance(number, int) and not -(10**15) < number < 10**15:
        return f"an int of {number.bit_length()} bits"
    return repr(number)


def check_count(value: object, what: str, *, minimum: int = 1, maximum: int = 2**53) -> int:
    """An int (never a bool or float) from ``minimum`` to ``maximum`` (TypeError, else
    ValueError). The ranges the contracts use: ``limit`` 1 to MAX_LIMIT (2**31-1),
    ``cost`` 1 to ``limit``, incr ``delta`` -2**62 to 2**62, ``max_sessions`` 1 to 2**53
    (the defaults), a TOTP ``step`` 0 to 2**62."""
    if type(value) is int and minimum <= value <= maximum:  # the common case, once
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return int(value)  # an IntEnum or int subclass becomes a plain int for every driver


def check_text(value: object, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Non-empty valid Unicode of at most ``max_bytes`` UTF-8 bytes, without NUL."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > max_bytes or not value.isascii():
        check_utf8(value, what, max_bytes)
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def check_optional_text(value: object, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str | None:
    """None, or ``check_text``: optional ids and user agents."""
    return None if value is None else check_text(value, what, max_bytes=max_bytes)


def _check_json(value: object, path: str, depth: int = 1) -> None:
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValueError(f"{path}: NaN and infinity are not JSON")
        return
    if (kind is list or kind is dict) and depth > MAX_JSON_DEPTH:
        root = path.partition("[")[0]
        raise ValueError(f"{root}: lists and dicts nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, list) and kind is list:
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict) and kind is dict:
        for name, entry in value.items():
            if type(name) is not str:
                raise TypeError(f"{path}: dict keys must be str, not {type(name).__name__}")
            _check_json(entry, f"{path}[{name!r}]", depth + 1)
        return
    raise TypeError(
        f"{path}: {kind.__name__} is not storable; use JSON types (dict, list, str, int, "
        "float, bool, None inside containers) or bytes at the top level"
    )


def _is_json(value: dict[object, object] | list[object], depth: int = 1) -> bool:
    """``_check_json``'s verdict on a dict or list without building any path: the fast
    path. When it says False, ``_check_json`` finds the culprit and raises."""
    if depth > MAX_JSON_DEPTH:
        return False
    if type(value) is dict:
        for name in value:
            if type(name) is not str:
                return False
        items: Iterable[object] = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item - item != 0.0:  # type: ignore[operator]  # inf - inf and NaN are NaN
                return False
        elif not ((kind is dict or kind is list) and _is_json(item, depth + 1)):  # type: ignore[arg-type]
            return False
    return True


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
"""The C scanner itself: json.loads adds encoding detection and two regex passes."""


def _unencodable(value: object) -> NoReturn:
    raise TypeError(f"{type(value).__name__} is not storable")  # pragma: no cover - checked first


_chunks = make_encoder(
    None, _unencodable, json.encoder.encode_basestring, None, ":", ",", False, False, False
)
"""The C encoder, built once (``JSONEncoder.encode`` builds one per call) with the
settings of ``_ENCODE``. No circular check: ``_is_json``/``_check_json`` walked the value."""


def _encode(value: object) -> str:
    return "".join(_chunks(value, 0))


_encode_str = json.encoder.encode_basestring


def _json_text(value: object, what: str) -> str:
    """Compact JSON text of a checked value: each value is walked once, without paths,
    and again with paths only to say what is wrong. A top-level scalar is written as
    the encoder writes it, without the encoder's per-call setup."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)  # type: ignore[arg-type]
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if (kind is float and value - value == 0.0) or (  # type: ignore[operator]
        (kind is dict or kind is list) and _is_json(value)  # type: ignore[arg-type]
    ):
        return _encode(value)
    _check_json(value, what)
    raise AssertionError(f"{what}: _is_json and _check_json disagree")  # pragma: no cover


def encode_json(value: object, what: str = "value", max_bytes: int = MAX_JSON_BYTES) -> str:
    """JSON text of valid Unicode (no lone surrogate, in any string or dict key) of at
    most ``max_bytes`` UTF-8 bytes."""
    text = _json_text(value, what)
    check_utf8(text, what, max_bytes)
    return text


def encode_value(value: object) -> bytes:
    """Encode a cache value; the result round-trips to an equal value of the same type."""
    kind = type(value)
    if (kind is dict or kind is list) and _is_json(value):  # type: ignore[arg-type]
        text = "".join(_chunks(value, 0))  # the common case, in one frame
    elif value is None:
        raise ValueError("None is not a storable value (get() returns None for a missing key)")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = _BYTES_TAG + bytes(value)
        if len(raw) > MAX_VALUE_BYTES:
            raise ValueError(f"value is longer than {MAX_VALUE_BYTES} bytes encoded")
        return raw
    else:
        text = _json_text(value, "value")
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        raise ValueError("value is not valid Unicode (it holds a lone surrogate)") from None
    if len(raw) > MAX_VALUE_BYTES:
        raise ValueError(f"value is longer than {MAX_VALUE_BYTES} bytes encoded")
    return raw


def decode_value(raw: bytes) -> Value:
    """The value ``encode_value`` encoded, with its exact type (``1``, ``1.0``, ``True``,
    ``"1"`` and ``b"1"`` stay distinct). ValueError for bytes it did not make."""
    if raw[:1] == _BYTES_TAG:
        return bytes(raw[1:])
    text = raw.decode()
    try:
        decoded, end = _SCAN(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        raise ValueError(f"stored value is not JSON: {text[:40]!r}")
    if decoded is None:
        raise ValueError("stored value is JSON null, which authstore never stores")
    return decoded  # type: ignore[no-any-return]


def decode_json(raw: str | bytes) -> JSONValue:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        decoded, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError(f"stored value is not JSON: {text[:40]!r}") from None
    if end != len(text):
        raise ValueError(f"stored value is not JSON: {text[:40]!r}")
    return decoded  # type: ignore[no-any-return]


def encode_many(mapping: object) -> dict[str, bytes]:
    """``set_many``'s mapping: every key checked and every value encoded before any I/O."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a Mapping of str to values, not {type(mapping).__name__}")
    return {check_key(k): encode_value(v) for k, v in mapping.items()}


def hash_secret(secret: object, what: str) -> str:
    """SHA-256 of a high-entropy secret; such secrets need no salt or slow hash."""
    if (
        type(secret) is str
        and secret.isascii()
        and 0 < len(secret) <= MAX_TOKEN_BYTES
        and "\x00" not in secret
    ):  # check_text's verdict on the usual token, in one step
        return _sha256(secret.encode()).hexdigest()
    text = check_text(secret, what, max_bytes=MAX_TOKEN_BYTES)
    return _sha256(text.encode()).hexdigest()


def check_token(token: object, what: str = "token") -> str:
    """A bearer token as ``get``/``touch``/``revoke``/``peek``/``consume`` take it: a str
    of 1 to MAX_TOKEN_BYTES (512) UTF-8 bytes, valid Unicode, no NUL. Any such text is
    a valid lookup (it simply finds nothing); returns it unchanged."""
    return check_text(token, what, max_bytes=MAX_TOKEN_BYTES)


def hash_token(token: object) -> str:
    """What a backend stores and looks up in place of a session or link token: the
    SHA-256 hex digest (64 lowercase hex characters) of the token, after ``check_token``."""
    return hash_secret(token, "token")


def new_token() -> tuple[str, str]:
    """A 256-bit URL-safe secret and the hash that is stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def new_public_id() -> str:
    """A session's or link's public id (128 random bits, URL-safe): safe to show and to
    pass to ``revoke_by_id``, never usable as the secret."""
    return secrets.token_urlsafe(16)


def check_metadata(metadata: object) -> str:
    """A session's metadata (None or a dict of JSON values) as compact JSON text, at most
    ``MAX_JSON_BYTES``: what a backend stores and later gives back as a dict."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    return encode_json(metadata, "metadata")
