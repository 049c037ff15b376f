"""``jsonfile:///abs/path/store.json``: all four authstore stores in one JSON file.

An example third-party backend written only against ``authstore.authoring``.

* ``jsonfile:///abs/path/store.json`` names an absolute path;
  ``jsonfile://./rel/store.json`` a path relative to the working directory.
* ``namespace`` (default ``authstore``); ``timeout`` (seconds, default 5): how long an
  operation may wait for the locks before it raises BackendUnavailableError;
  ``offline=1``: a simulated outage, every operation raises BackendUnavailableError
  (the contract test names it as ``authstore_unreachable_url``).

Every operation checks its arguments first, then takes a thread lock (one per file in
the process) and an ``fcntl.flock`` on ``PATH.lock`` (across processes), reads the
whole file, and writes it back atomically (temp file + ``os.replace``) when it changed.
Data lives per namespace: ``{namespace: {"cache": .., "sessions": .., "totp": ..,
"links": .., "seq": n}}``; expiry instants are epoch seconds.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from authstore.authoring import (
    CACHE_CAPABILITIES,
    MAX_JSON_BYTES,
    MAX_WINDOW,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    IssuedMagicLink,
    JSONValue,
    Limit,
    LimitsLike,
    MagicLinkRecord,
    NewSession,
    RateLimitAlgorithm,
    RateLimitResult,
    SessionRecord,
    StoreKind,
    StoreURL,
    TokenInUseError,
    TotpState,
    Value,
    blacklist_seconds,
    check_caller_token,
    check_count,
    check_key,
    check_keys,
    check_namespace,
    check_optional_text,
    check_text,
    check_token_hash,
    check_ttl,
    decode_value,
    encode_many,
    encode_value,
    hash_token,
    new_public_id,
    new_token,
    parse_limits,
)

__all__ = ["JsonFileBackend", "backend"]

T = TypeVar("T")
Data = dict[str, Any]  # one namespace's part of the file

# Limits of authstore's input policy that authstore.authoring does not export as helpers.
MAX_LIMIT = 2**31 - 1
MAX_ID_BYTES = 255
MAX_EMAIL_BYTES = 320
MAX_IP_BYTES = 64
MAX_USER_AGENT_BYTES = 1024
MAX_CODE_HASH_BYTES = 512
MAX_SECRET_BYTES = 4096
MAX_BACKUP_CODES = 100
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EPSILON = 1e-9


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _id(value: object, what: str) -> str:
    return check_text(value, what, max_bytes=MAX_ID_BYTES)


def _optional_id(value: object, what: str) -> str | None:
    return check_optional_text(value, what, max_bytes=MAX_ID_BYTES)


# -- the file ----------------------------------------------------------------------------


class _File:
    """One JSON file: a thread lock for this process, flock on PATH.lock for the others."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def transact(
        self, timeout: float, fn: Callable[[dict[str, Any]], T], create: bool = False
    ) -> T:
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=timeout):
            raise BackendUnavailableError(f"jsonfile: {self.path} stayed locked for {timeout}s")
        try:
            try:
                lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as error:
                raise BackendUnavailableError(f"jsonfile: cannot open {self.path}.lock") from error
            try:
                self._flock(lock_fd, deadline, timeout)
                root = self._read()
                before = json.dumps(root, sort_keys=True)
                result = fn(root)
                after = json.dumps(root, sort_keys=True)
                if after != before or (create and not os.path.exists(self.path)):
                    self._write(after)
                return result
            finally:
                os.close(lock_fd)  # releases the flock
        finally:
            self.lock.release()

    def _flock(self, fd: int, deadline: float, timeout: float) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackendUnavailableError(
                        f"jsonfile: another process held {self.path} for {timeout}s"
                    ) from None
                time.sleep(0.002)
            except OSError as error:
                raise BackendUnavailableError(f"jsonfile: cannot lock {self.path}") from error

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise BackendUnavailableError(f"jsonfile: cannot read {self.path}") from error
        if not text:
            return {}
        try:
            root = json.loads(text)
        except ValueError as error:
            raise BackendError(f"jsonfile: {self.path} is not valid JSON") from error
        if not isinstance(root, dict):
            raise BackendError(f"jsonfile: {self.path} does not hold a JSON object")
        return root

    def _write(self, text: str) -> None:
        directory = os.path.dirname(self.path) or "."
        try:
            fd, temp = tempfile.mkstemp(prefix=".jsonfile-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temp, self.path)
            except BaseException:
                os.unlink(temp)
                raise
        except OSError as error:
            raise BackendUnavailableError(f"jsonfile: cannot write {self.path}") from error


class _Store:
    """What every store kind shares: namespace, timeout, offline, closed."""

    def __init__(self, file: _File, namespace: str, timeout: float, offline: bool) -> None:
        self._file = file
        self.namespace = check_namespace(namespace)
        self._timeout = timeout
        self._offline = offline
        self._closed = False

    def _run(self, fn: Callable[[Data, float], T]) -> T:
        """Run fn(namespace data, now) atomically; arguments are checked before this."""
        if self._closed:
            raise BackendError("this jsonfile store is closed")
        if self._offline:
            raise BackendUnavailableError("the jsonfile store is offline")

        def step(root: dict[str, Any]) -> T:
            data = root.setdefault(self.namespace, {})
            result = fn(data, time.time())
            if not any(data.values()):
                del root[self.namespace]
            return result

        return self._file.transact(self._timeout, step)

    def ping(self) -> None:
        """One locked read-and-write of the file, as any operation (the file answers)."""
        self._run(lambda _data, _now: None)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- cache -------------------------------------------------------------------------------

KV, BLACKLIST, USER, FIXED, SLIDING, GCRA = "k:", "b:", "u:", "f:", "s:", "g:"
LIMITERS = {
    RateLimitAlgorithm.FIXED_WINDOW: FIXED,
    RateLimitAlgorithm.SLIDING_WINDOW: SLIDING,
    RateLimitAlgorithm.GCRA: GCRA,
}


def _live(data: Data, key: str, now: float) -> Any | None:
    """The value of a live cache entry [value, expires_at|None]; expired ones are dropped."""
    table = data.get("cache", {})
    entry = table.get(key)
    if entry is None:
        return None
    if entry[1] is not None and entry[1] <= now:
        del table[key]
        return None
    return entry[0]


def _put(data: Data, key: str, value: Any, expires_at: float | None) -> None:
    data.setdefault("cache", {})[key] = [value, expires_at]


def _pop(data: Data, key: str, now: float) -> bool:
    found = _live(data, key, now) is not None
    data.get("cache", {}).pop(key, None)
    return found


def _integer(raw: bytes) -> int | None:
    """Canonical signed 64-bit decimal text only (what incr can add to)."""
    text = raw.decode("utf-8", "replace")
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isdigit() and digits.isascii()) or str(int(text)) != text:
        return None
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _algorithm(value: object) -> RateLimitAlgorithm:
    if isinstance(value, RateLimitAlgorithm):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"algorithm must be a RateLimitAlgorithm or str, not {type(value).__name__}"
        )
    try:
        return RateLimitAlgorithm(value)
    except ValueError:
        raise ValueError(f"unknown rate-limit algorithm {value!r}") from None


def _fixed_window(
    state: list[Any] | None, now: float, limit: int, window: float, cost: int
) -> tuple[RateLimitResult, list[Any], float]:
    """State [count, window end]; the window starts at the first hit."""
    count, end = (0, now + window) if state is None or state[1] <= now else state
    allowed = count + cost <= limit
    count = count + cost if allowed else count
    reset_after = max(0.0, end - now)
    result = RateLimitResult(
        allowed=allowed,
        remaining=max(0, limit - count),
        reset_after=reset_after,
        retry_after=0.0 if allowed else reset_after,
        limit=limit,
    )
    return result, [count, end], end


def _sliding_window(
    state: list[Any] | None, now: float, limit: int, window: float, cost: int
) -> tuple[RateLimitResult, list[Any], float]:
    """State [previous, current, current start]; windows aligned to multiples of window."""
    start = math.floor(now / window) * window
    previous = current = 0
    if state is not None:
        if abs(state[2] - start) < window / 2:
            previous, current = state[0], state[1]
        elif abs(state[2] - (start - window)) < window / 2:
            previous = state[1]
    elapsed = min(max(now - start, 0.0), window)
    weight = 1.0 - elapsed / window
    allowed = previous * weight + current + cost <= limit * (1 + EPSILON)
    if allowed:
        current += cost
    estimate = previous * weight + current
    if current:
        reset_after = start + 2 * window - now
    elif previous:
        reset_after = start + window - now
    else:
        reset_after = 0.0
    retry_after = 0.0
    if not allowed:
        room = limit - current - cost
        if previous and room >= 0:
            retry_after = window * (1.0 - room / previous) - elapsed
        else:
            later = window * (1.0 - (limit - cost) / current) if current > limit - cost else 0.0
            retry_after = (window - elapsed) + later
    result = RateLimitResult(
        allowed=allowed,
        remaining=max(0, math.floor(limit - estimate + EPSILON)),
        reset_after=max(0.0, reset_after),
        retry_after=max(0.0, retry_after),
        limit=limit,
    )
    return result, [previous, current, start], start + 2 * window


def _gcra(
    state: list[Any] | None, now: float, limit: int, window: float, cost: int
) -> tuple[RateLimitResult, list[Any], float]:
    """State [anchor, units]: the theoretical arrival time is anchor + units * window / limit."""

    def backlog(anchor: float, units: int) -> float:
        return units * window / limit - (now - anchor)

    anchor, units = (now, 0) if state is None else state
    behind = backlog(anchor, units)
    if behind <= 0:
        anchor, units = now, 0
    elif behind > window:
        anchor, units = now, limit  # the limit or window was lowered since
    allowed = backlog(anchor, units + cost) <= window * (1 + EPSILON)
    if allowed:
        units += cost
    interval = window / limit
    left = max(0.0, backlog(anchor, units))
    result = RateLimitResult(
        allowed=allowed,
        remaining=max(0, min(limit, math.floor((window - left) / interval + EPSILON * limit))),
        reset_after=left,
        retry_after=0.0 if allowed else max(0.0, left + cost * interval - window),
        limit=limit,
    )
    return result, [anchor, units], now + backlog(anchor, units)


STEPS = {FIXED: _fixed_window, SLIDING: _sliding_window, GCRA: _gcra}
GROUP = "r:"


def _binding(results: list[RateLimitResult]) -> RateLimitResult:
    """A group's result: the refusing limit that makes the caller wait longest, or when
    all allow, the one with the fewest units left (then the longest to reset)."""
    refused = [result for result in results if not result.allowed]
    if refused:
        return max(refused, key=lambda result: result.retry_after)
    return min(results, key=lambda result: (result.remaining, -result.reset_after))


def _peek(
    step: Any, state: list[Any] | None, now: float, limit: int, window: float, cost: int
) -> RateLimitResult:
    """A hit of ``cost`` computed and thrown away: its decision and wait, and the units
    left now (the same step with no cost)."""
    hit, idle = step(state, now, limit, window, cost)[0], step(state, now, limit, window, 0)[0]
    return RateLimitResult(
        allowed=hit.allowed,
        remaining=idle.remaining,
        reset_after=idle.reset_after,
        retry_after=hit.retry_after,
        limit=limit,
    )


def _group(key: object, limits: object, cost: object) -> tuple[str, list[Limit], int]:
    """The group's entry, its limits in canonical order, the checked cost."""
    name = check_key(key)
    group = sorted(set(parse_limits(limits)), key=lambda x: (-x.window, x.limit, x.algorithm))  # type: ignore[arg-type]
    weight = check_count(cost, "cost", maximum=min(limit.limit for limit in group))
    signature = ";".join(f"{x.limit}/{x.window!r}/{x.algorithm.value}" for x in group)
    return f"{GROUP}{signature}:{name}", group, weight


class JsonFileCache(_Store):
    capabilities = CACHE_CAPABILITIES

    # -- key/value ---------------------------------------------------------------------

    def get(self, key: str) -> Value | None:
        full = KV + check_key(key)
        raw = self._run(lambda d, now: _live(d, full, now))
        return None if raw is None else decode_value(_unb64(raw))

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        full, raw, seconds = KV + check_key(key), _b64(encode_value(value)), check_ttl(ttl)
        self._run(lambda d, now: _put(d, full, raw, None if seconds is None else now + seconds))

    def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        full, raw, seconds = KV + check_key(key), _b64(encode_value(value)), check_ttl(ttl)

        def add(d: Data, now: float) -> bool:
            if _live(d, full, now) is not None:
                return False
            _put(d, full, raw, None if seconds is None else now + seconds)
            return True

        return self._run(add)

    def delete(self, key: str) -> bool:
        full = KV + check_key(key)
        return self._run(lambda d, now: _pop(d, full, now))

    def exists(self, key: str) -> bool:
        full = KV + check_key(key)
        return self._run(lambda d, now: _live(d, full, now) is not None)

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        full = KV + check_key(key)
        step = check_count(delta, "delta", minimum=-(2**62), maximum=2**62)
        seconds = check_ttl(ttl)

        def incr(d: Data, now: float) -> int:
            raw = _live(d, full, now)
            if raw is None:
                _put(d, full, _b64(str(step).encode()), None if seconds is None else now + seconds)
                return step
            current = _integer(_unb64(raw))
            if current is None or not INT64_MIN <= current + step <= INT64_MAX:
                raise ValueError(
                    "the cached value is not an integer, or adding delta leaves 64 bits"
                )
            d["cache"][full][0] = _b64(str(current + step).encode())
            return current + step

        return self._run(incr)

    def expire(self, key: str, ttl: float | None) -> bool:
        full, seconds = KV + check_key(key), check_ttl(ttl)

        def expire(d: Data, now: float) -> bool:
            if _live(d, full, now) is None:
                return False
            d["cache"][full][1] = None if seconds is None else now + seconds
            return True

        return self._run(expire)

    def ttl(self, key: str) -> float | None:
        full = KV + check_key(key)

        def ttl(d: Data, now: float) -> float | None:
            if _live(d, full, now) is None:
                return None
            deadline = d["cache"][full][1]
            return math.inf if deadline is None else float(deadline - now)

        return self._run(ttl)

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        names = check_keys(keys)
        if not names:
            return {}
        found = self._run(lambda d, now: {k: _live(d, KV + k, now) for k in names})
        return {k: decode_value(_unb64(raw)) for k, raw in found.items() if raw is not None}

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        items = {KV + k: _b64(raw) for k, raw in encode_many(mapping).items()}
        seconds = check_ttl(ttl)
        if not items:
            return

        def set_many(d: Data, now: float) -> None:
            for full, raw in items.items():
                _put(d, full, raw, None if seconds is None else now + seconds)

        self._run(set_many)

    def delete_many(self, keys: Iterable[str]) -> int:
        names = check_keys(keys)
        if not names:
            return 0
        return self._run(lambda d, now: sum(_pop(d, KV + k, now) for k in names))

    # -- rate limits -------------------------------------------------------------------

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
    ) -> RateLimitResult:
        kind = LIMITERS[_algorithm(algorithm)]
        full = kind + check_key(key)
        hits = check_count(limit, "limit", maximum=MAX_LIMIT)
        seconds = check_ttl(window, "window", optional=False, maximum=MAX_WINDOW)
        assert seconds is not None
        weight = check_count(cost, "cost", maximum=hits)

        def check(d: Data, now: float) -> RateLimitResult:
            result, state, expires_at = STEPS[kind](_live(d, full, now), now, hits, seconds, weight)
            _put(d, full, state, expires_at)
            return result

        return self._run(check)

    def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
        cost: int = 1,
    ) -> RateLimitResult:
        kind = LIMITERS[_algorithm(algorithm)]
        full = kind + check_key(key)
        hits = check_count(limit, "limit", maximum=MAX_LIMIT)
        seconds = check_ttl(window, "window", optional=False, maximum=MAX_WINDOW)
        assert seconds is not None
        weight = check_count(cost, "cost", maximum=hits)

        def peek(d: Data, now: float) -> RateLimitResult:
            return _peek(STEPS[kind], _live(d, full, now), now, hits, seconds, weight)

        return self._run(peek)

    def check_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        """Every limit's state in one entry, all decided under the file's lock."""
        full, group, weight = _group(key, limits, cost)

        def check(d: Data, now: float) -> RateLimitResult:
            states = _live(d, full, now) or [None] * len(group)
            steps = [
                STEPS[LIMITERS[x.algorithm]](state, now, x.limit, x.window, weight)
                for x, state in zip(group, states, strict=True)
            ]
            results = [result for result, _, _ in steps]
            if all(result.allowed for result in results):
                _put(d, full, [state for _, state, _ in steps], max(at for _, _, at in steps))
            return _binding(results)

        return self._run(check)

    def peek_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        full, group, weight = _group(key, limits, cost)

        def peek(d: Data, now: float) -> RateLimitResult:
            states = _live(d, full, now) or [None] * len(group)
            return _binding(
                [
                    _peek(STEPS[LIMITERS[x.algorithm]], state, now, x.limit, x.window, weight)
                    for x, state in zip(group, states, strict=True)
                ]
            )

        return self._run(peek)

    def reset_rate_limit(self, key: str) -> None:
        name = check_key(key)

        def reset(d: Data, now: float) -> None:
            for kind in LIMITERS.values():
                _pop(d, kind + name, now)

        self._run(reset)

    # -- revocation --------------------------------------------------------------------

    def _raise_to(self, full: str, at: float | None, seconds: float | None) -> float:
        """Store an instant that never moves back and an expiry that never comes sooner."""

        def raise_to(d: Data, now: float) -> float:
            instant = now if at is None else at
            expires_at = None if seconds is None else now + seconds
            if _live(d, full, now) is not None:
                old_instant, old_expiry = d["cache"][full]
                instant = max(instant, float(old_instant))
                if expires_at is not None and (old_expiry is None or old_expiry > expires_at):
                    expires_at = old_expiry
            _put(d, full, instant, expires_at)
            return instant

        return self._run(raise_to)

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        full = BLACKLIST + check_key(jti, "jti")
        seconds = blacklist_seconds(expires_in, expires_at)
        if seconds is not None:  # None: an instant already past, nothing to revoke
            self._raise_to(full, None, seconds)

    def is_blacklisted(self, jti: str) -> bool:
        full = BLACKLIST + check_key(jti, "jti")
        return self._run(lambda d, now: _live(d, full, now) is not None)

    def remove_from_blacklist(self, jti: str) -> bool:
        full = BLACKLIST + check_key(jti, "jti")
        return self._run(lambda d, now: _pop(d, full, now))

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        full = USER + _id(user_id, "user_id")
        instant: float | None = None
        if at is not None:
            if not isinstance(at, datetime):
                raise TypeError(f"at must be a datetime, not {type(at).__name__}")
            if at.utcoffset() is None:
                raise ValueError("at must be timezone-aware (naive datetimes are ambiguous)")
            instant = at.timestamp()
        seconds = check_ttl(expires_in, "expires_in")
        return _at(self._raise_to(full, instant, seconds))

    def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        full = USER + _id(user_id, "user_id")
        stored = self._run(lambda d, now: _live(d, full, now))
        return None if stored is None else _at(float(stored))

    def purge_expired(self) -> int:
        def purge(d: Data, now: float) -> int:
            table = d.get("cache", {})
            dead = [k for k, (_, at) in table.items() if at is not None and at <= now]
            for key in dead:
                del table[key]
            return len(dead)

        return self._run(purge)


# -- sessions ----------------------------------------------------------------------------


def _session(row: dict[str, Any]) -> SessionRecord:
    meta = decode_value(row["meta"].encode("utf-8"))
    return SessionRecord(
        id=row["id"],
        user_id=row["user"],
        created_at=_at(row["created"]),
        last_seen_at=_at(row["seen"]),
        expires_at=_at(row["expires"]),
        device_id=row["device"],
        application_id=row["app"],
        ip_address=row["ip"],
        user_agent=row["ua"],
        metadata=meta if isinstance(meta, dict) else {},
    )


def _metadata(metadata: object) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    raw = encode_value(metadata)  # JSON types only, valid Unicode
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"metadata is longer than {MAX_JSON_BYTES} bytes encoded")
    return raw.decode("utf-8")


def _live_sessions(d: Data, now: float) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = d.setdefault("sessions", {})
    for token_hash in [h for h, row in table.items() if row["expires"] <= now]:
        del table[token_hash]
    return table


def _taken(d: Data, table: str, token_hash: str, now: float) -> bool:
    """A revoked (or used) record's hash stays taken until the record would have expired."""
    revoked: dict[str, float] = d.setdefault(table, {})
    for old in [h for h, until in revoked.items() if until <= now]:
        del revoked[old]
    return token_hash in revoked


def _revoke_session(d: Data, token_hash: str) -> None:
    row = d["sessions"].pop(token_hash)
    d.setdefault("revoked_sessions", {})[token_hash] = row["expires"]


def _user_sessions(d: Data, user: str, now: float) -> list[tuple[str, dict[str, Any]]]:
    rows = [(h, row) for h, row in _live_sessions(d, now).items() if row["user"] == user]
    rows.sort(key=lambda item: item[1]["order"], reverse=True)
    return rows


class JsonFileSessions(_Store):
    def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> NewSession:
        user = _id(user_id, "user_id")
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        fields = {
            "device": _optional_id(device_id, "device_id"),
            "app": _optional_id(application_id, "application_id"),
            "ip": check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES),
            "ua": check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES),
        }
        meta = _metadata(metadata)
        cap = None if max_sessions is None else check_count(max_sessions, "max_sessions")
        secret, token_hash = new_token() if token is None else check_caller_token(token)
        session_id = new_public_id()

        def create(d: Data, now: float) -> SessionRecord:
            if token_hash in _live_sessions(d, now) or _taken(
                d, "revoked_sessions", token_hash, now
            ):
                raise TokenInUseError("a session that has not expired holds this token")
            if cap is not None:
                for old_hash, _ in _user_sessions(d, user, now)[cap - 1 :]:
                    _revoke_session(d, old_hash)
            d["seq"] = d.get("seq", 0) + 1
            row = {
                "id": session_id,
                "user": user,
                "created": now,
                "seen": now,
                "expires": now + seconds,
                "meta": meta,
                "order": [now, d["seq"]],
                **fields,
            }
            _live_sessions(d, now)[token_hash] = row
            return _session(row)

        return NewSession(self._run(create), secret)

    def get(self, token: str) -> SessionRecord | None:
        token_hash = hash_token(token)

        def get(d: Data, now: float) -> SessionRecord | None:
            row = _live_sessions(d, now).get(token_hash)
            return None if row is None else _session(row)

        return self._run(get)

    def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        token_hash, seconds = hash_token(token), check_ttl(ttl)

        def touch(d: Data, now: float) -> SessionRecord | None:
            row = _live_sessions(d, now).get(token_hash)
            if row is None:
                return None
            row["seen"] = now
            if seconds is not None:
                row["expires"] = now + seconds
            return _session(row)

        return self._run(touch)

    def revoke(self, token: str) -> bool:
        token_hash = hash_token(token)

        def revoke(d: Data, now: float) -> bool:
            if token_hash not in _live_sessions(d, now):
                return False
            _revoke_session(d, token_hash)
            return True

        return self._run(revoke)

    def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        public_id, owner = _id(session_id, "session_id"), _optional_id(user_id, "user_id")

        def revoke(d: Data, now: float) -> bool:
            table = _live_sessions(d, now)
            for token_hash, row in table.items():
                if row["id"] == public_id and (owner is None or row["user"] == owner):
                    _revoke_session(d, token_hash)
                    return True
            return False

        return self._run(revoke)

    def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        user = _id(user_id, "user_id")
        keep_hash = None if except_token is None else hash_token(except_token)
        keep_id = _optional_id(except_id, "except_id")

        def revoke_all(d: Data, now: float) -> int:
            revoked = 0
            for token_hash, row in _user_sessions(d, user, now):
                if token_hash != keep_hash and row["id"] != keep_id:
                    _revoke_session(d, token_hash)
                    revoked += 1
            return revoked

        return self._run(revoke_all)

    def list(self, user_id: str) -> list[SessionRecord]:
        user = _id(user_id, "user_id")
        return self._run(lambda d, now: [_session(r) for _, r in _user_sessions(d, user, now)])

    def count(self, user_id: str) -> int:
        user = _id(user_id, "user_id")
        return self._run(lambda d, now: len(_user_sessions(d, user, now)))

    def purge_expired(self) -> int:
        def purge(d: Data, now: float) -> int:
            table = d.setdefault("sessions", {})
            before = len(table)
            _taken(d, "revoked_sessions", "", now)  # drops the expired revocations
            return before - len(_live_sessions(d, now))

        return self._run(purge)


# -- TOTP --------------------------------------------------------------------------------


def _secret(secret: object) -> str:
    if not isinstance(secret, (bytes, bytearray, memoryview)):
        raise TypeError(f"secret must be bytes (ciphertext), not {type(secret).__name__}")
    data = bytes(secret)
    if not data:
        raise ValueError("secret must not be empty")
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret is longer than {MAX_SECRET_BYTES} bytes")
    return _b64(data)


def _code_hash(value: object) -> str:
    return check_text(value, "code_hash", max_bytes=MAX_CODE_HASH_BYTES)


def _totp_row(d: Data, user: str, now: float) -> dict[str, Any]:
    row: dict[str, Any] = d.setdefault("totp", {}).setdefault(
        user,
        {
            "secret": None,
            "pending": None,
            "enabled": False,
            "enabled_at": None,
            "last_step": None,
            "codes": [],
            "created": now,
            "updated": now,
        },
    )
    return row


class JsonFileTotp(_Store):
    def save_pending(self, user_id: str, secret: bytes) -> None:
        user, data = _id(user_id, "user_id"), _secret(secret)

        def save(d: Data, now: float) -> None:
            row = _totp_row(d, user, now)
            row["pending"], row["updated"] = data, now

        self._run(save)

    def enable(self, user_id: str) -> bool:
        user = _id(user_id, "user_id")

        def enable(d: Data, now: float) -> bool:
            row = d.get("totp", {}).get(user)
            if row is None or row["pending"] is None:
                return False
            row["secret"], row["pending"], row["enabled"] = row["pending"], None, True
            row["enabled_at"] = row["updated"] = now
            return True

        return self._run(enable)

    def disable(self, user_id: str) -> bool:
        user = _id(user_id, "user_id")
        return self._run(lambda d, now: d.get("totp", {}).pop(user, None) is not None)

    def load(self, user_id: str) -> TotpState | None:
        user = _id(user_id, "user_id")

        def load(d: Data, now: float) -> TotpState | None:
            row = d.get("totp", {}).get(user)
            if row is None:
                return None
            return TotpState(
                user_id=user,
                enabled=row["enabled"],
                secret=None if row["secret"] is None else _unb64(row["secret"]),
                pending_secret=None if row["pending"] is None else _unb64(row["pending"]),
                last_step=row["last_step"],
                backup_codes_left=len(row["codes"]),
                backup_code_hashes=tuple(row["codes"]),
                created_at=_at(row["created"]),
                updated_at=_at(row["updated"]),
                enabled_at=None if row["enabled_at"] is None else _at(row["enabled_at"]),
            )

        return self._run(load)

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        user = _id(user_id, "user_id")
        if isinstance(code_hashes, (str, bytes)) or not hasattr(code_hashes, "__iter__"):
            raise TypeError("code_hashes must be an iterable of str")
        hashes = list(dict.fromkeys(_code_hash(h) for h in code_hashes))
        if len(hashes) > MAX_BACKUP_CODES:
            raise ValueError(f"at most {MAX_BACKUP_CODES} backup codes")

        def replace(d: Data, now: float) -> None:
            row = d.get("totp", {}).get(user)
            if row is not None:  # codes belong to a TOTP state: none without one
                row["codes"], row["updated"] = hashes, now

        self._run(replace)

    def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        user, digest = _id(user_id, "user_id"), _code_hash(code_hash)

        def use(d: Data, now: float) -> bool:
            row = d.get("totp", {}).get(user)
            if row is None or digest not in row["codes"]:
                return False
            row["codes"].remove(digest)
            return True

        return self._run(use)

    def claim_step(self, user_id: str, step: int) -> bool:
        user = _id(user_id, "user_id")
        value = check_count(step, "step", minimum=0, maximum=2**62)

        def claim(d: Data, now: float) -> bool:
            row = d.get("totp", {}).get(user)
            if row is None or (row["last_step"] is not None and row["last_step"] >= value):
                return False
            row["last_step"] = value
            return True

        return self._run(claim)


# -- magic links -------------------------------------------------------------------------


def _link(row: dict[str, Any]) -> MagicLinkRecord:
    return MagicLinkRecord(
        id=row["id"],
        user_id=row["user"],
        email=row["email"],
        created_at=_at(row["created"]),
        expires_at=_at(row["expires"]),
        application_id=row["app"],
        ip_address=row["ip"],
        user_agent=row["ua"],
        consumed_at=None if row["consumed"] is None else _at(row["consumed"]),
    )


def _usable(d: Data, token_hash: str, now: float) -> dict[str, Any] | None:
    row: dict[str, Any] | None = d.get("links", {}).get(token_hash)
    if row is None or row["consumed"] is not None or row["expires"] <= now:
        return None
    return row


def _forget_link(d: Data, token_hash: str, now: float) -> None:
    """Drop a link; until it expires its hash stays taken (in ``revoked_links``)."""
    row = d["links"].pop(token_hash)
    if row["expires"] > now:
        d.setdefault("revoked_links", {})[token_hash] = row["expires"]


def _revoke_links(d: Data, user: str, now: float) -> int:
    table = d.setdefault("links", {})
    mine = [h for h, row in table.items() if row["user"] == user]
    usable = sum(_usable(d, h, now) is not None for h in mine)
    for token_hash in mine:
        _forget_link(d, token_hash, now)
    return usable


class JsonFileMagicLinks(_Store):
    def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> IssuedMagicLink:
        fields = self._fields(
            user_id, email, ttl, application_id, ip_address, user_agent, revoke_previous
        )
        secret, token_hash = new_token() if token is None else check_caller_token(token)
        return IssuedMagicLink(self._issue(token_hash, fields), secret)

    def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> MagicLinkRecord:
        fields = self._fields(
            user_id, email, ttl, application_id, ip_address, user_agent, revoke_previous
        )
        return self._issue(check_token_hash(token_hash), fields)

    @staticmethod
    def _fields(
        user_id: object,
        email: object,
        ttl: object,
        application_id: object,
        ip_address: object,
        user_agent: object,
        revoke_previous: object,
    ) -> dict[str, Any]:
        user = _id(user_id, "user_id")
        address = check_text(email, "email", max_bytes=MAX_EMAIL_BYTES)
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        if not isinstance(revoke_previous, bool):
            raise TypeError("revoke_previous must be a bool")
        return {
            "user": user,
            "email": address,
            "seconds": seconds,
            "revoke_previous": revoke_previous,
            "app": _optional_id(application_id, "application_id"),
            "ip": check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES),
            "ua": check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES),
        }

    def _issue(self, token_hash: str, fields: dict[str, Any]) -> MagicLinkRecord:
        link_id = new_public_id()
        user, seconds = fields.pop("user"), fields.pop("seconds")
        address, revoke_previous = fields.pop("email"), fields.pop("revoke_previous")

        def issue(d: Data, now: float) -> MagicLinkRecord:
            table = d.setdefault("links", {})
            for old in [h for h, row in table.items() if row["expires"] <= now]:
                del table[old]
            if token_hash in table or _taken(d, "revoked_links", token_hash, now):
                raise TokenInUseError("a magic link that has not expired holds this token")
            if revoke_previous:
                _revoke_links(d, user, now)
            row = {
                "id": link_id,
                "user": user,
                "email": address,
                "created": now,
                "expires": now + seconds,
                "consumed": None,
                **fields,
            }
            table[token_hash] = row
            return _link(row)

        return self._run(issue)

    def peek(self, token: str) -> MagicLinkRecord | None:
        token_hash = hash_token(token)

        def peek(d: Data, now: float) -> MagicLinkRecord | None:
            row = _usable(d, token_hash, now)
            return None if row is None else _link(row)

        return self._run(peek)

    def consume(self, token: str, *, application_id: str | None = None) -> MagicLinkRecord | None:
        token_hash, app = hash_token(token), _optional_id(application_id, "application_id")

        def consume(d: Data, now: float) -> MagicLinkRecord | None:
            row = _usable(d, token_hash, now)
            if row is None or row["app"] != app:
                return None
            row["consumed"] = now
            return _link(row)

        return self._run(consume)

    def revoke_user(self, user_id: str) -> int:
        user = _id(user_id, "user_id")
        return self._run(lambda d, now: _revoke_links(d, user, now))

    def purge_expired(self) -> int:
        def purge(d: Data, now: float) -> int:
            table = d.setdefault("links", {})
            dead = [
                h
                for h, row in table.items()
                if row["consumed"] is not None or row["expires"] <= now
            ]
            for token_hash in dead:
                _forget_link(d, token_hash, now)  # a used link's hash stays taken
            _taken(d, "revoked_links", "", now)  # drops the expired ones
            return len(dead)

        return self._run(purge)


# -- async: the same stores, each call on a worker thread -----------------------------------


class _Async:
    """Runs the sync store's methods in a thread; each one is atomic by the file locks."""

    def __init__(self, sync: _Store) -> None:
        self._sync = sync
        self.namespace = sync.namespace
        if isinstance(sync, JsonFileCache):
            self.capabilities = sync.capabilities

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def aclose(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- the backend -------------------------------------------------------------------------

STORES: dict[StoreKind, type[_Store]] = {
    StoreKind.CACHE: JsonFileCache,
    StoreKind.SESSIONS: JsonFileSessions,
    StoreKind.TOTP: JsonFileTotp,
    StoreKind.MAGIC_LINKS: JsonFileMagicLinks,
}


class JsonFileBackend:
    """What the ``authstore.backends`` entry point names."""

    name = "jsonfile"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}

    def _file(self, url: StoreURL) -> _File:
        if url.hosts not in ((), ((".", None),)) or url.username or url.password:
            raise ConfigurationError(
                f"{url.redacted()}: jsonfile takes a path, jsonfile:///abs/store.json "
                "or jsonfile://./relative/store.json"
            )
        path = url.path[1:] if url.hosts else url.path
        if not path or path.endswith("/"):
            raise ConfigurationError(f"{url.redacted()}: jsonfile needs a file name")
        full = os.path.realpath(path)
        with self._lock:
            return self._files.setdefault(full, _File(full))

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        file = self._file(url)
        options = url.reader()
        namespace = options.text("namespace", "authstore")
        timeout = options.seconds("timeout", 5.0)
        offline = options.flag("offline", False)
        options.done()
        try:
            namespace = check_namespace(namespace)
        except ValueError as error:
            raise ConfigurationError(f"{url.redacted()}: {error}") from None
        store = STORES[kind](file, namespace, timeout, offline)
        return _Async(store) if asynchronous else store

    def migrate(self, url: StoreURL) -> list[str]:
        file = self._file(url)
        existed = os.path.exists(file.path)
        file.transact(5.0, lambda root: None, create=True)
        if existed:
            return [f"jsonfile: {file.path} exists; nothing to migrate"]
        return [f"jsonfile: created {file.path}"]

    # Optional (authstore.authoring.UnreachableTwin): `authstore check` proves fail-closed
    # on this URL: the same file, offline.
    def unreachable_url(self, url: StoreURL) -> StoreURL:
        return url.with_options({"offline": "1"})

    # Optional (authstore.authoring.NamespaceCleaner), for `authstore check`.
    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        self._file(url).transact(5.0, lambda root: root.pop(namespace, None))

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        def count(root: dict[str, Any]) -> int:
            data = root.get(namespace, {})
            return sum(len(part) for part in data.values() if isinstance(part, dict))

        return self._file(url).transact(5.0, count)


backend = JsonFileBackend()
