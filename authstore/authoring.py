"""Everything a backend author uses, from one typed module: this help page is the reference.

The walk-through (package layout, entry point, test file, checklist) is the backend
authors' guide, ``docs/backend-authors.md``. Import only from here; importing this
module imports no driver and no built-in backend::

    from authstore.authoring import Backend, StoreURL, StoreKind, check_key, check_ttl

The functions and constants are listed by ``help()`` below. The types are summarized
here (each has its own ``help()``): they are importable from this module but kept out
of its ``__all__`` so that this page shows their meaning, not what they inherit.

Backend object
--------------
Backend
    What an ``authstore.backends`` entry point (``ENTRY_POINT_GROUP``) names: ``name``,
    ``open(url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> store`` (raise
    UnsupportedOperationError for a kind you lack) and ``migrate(url) -> list[str]``
    (idempotent; returns what it did).
UnreachableTwin
    An optional method of the backend object: ``unreachable_url(url) -> StoreURL | None``,
    the same backend at a place that cannot answer (closed loopback ports, a missing
    directory; ``loopback_twin(url)`` makes the first). ``authstore check`` and the
    packaged suite open the fail-closed tests' stores there; None: no I/O to fail.
NamespaceCleaner
    Optional methods of the backend object, used by ``authstore check``:
    ``clear_namespace(url, namespace)`` deletes every entry of every store kind in the
    namespace; ``count_namespace(url, namespace) -> int`` counts the entries (rows,
    keys, documents) it still holds, expired ones not yet purged included.
StoreURL, Options
    ``StoreURL.parse(text)``; ``url.reader()`` returns an Options that takes each query
    option once (``text``, ``integer``, ``seconds``, ``flag``...) and whose ``done()``
    raises ConfigurationError for an option nobody took. ``url.redacted()`` hides the
    password: use it in every message.
StoreKind
    ``"cache"``, ``"sessions"``, ``"totp"``, ``"magic_links"`` (a StrEnum).

Stores
------
Implement one sync and one async class per kind you offer. The async class has the
same methods as coroutines, ``aclose()`` for ``close()`` and ``async with`` for
``with``. Every store has ``namespace: str`` and the methods of StoreLifecycle (the
four protocols extend it); a cache store also ``capabilities``, a subset of
``CACHE_CAPABILITIES`` (methods outside it raise UnsupportedOperationError).
Every method checks its arguments before any I/O (see the checks below), is atomic
on the backend and bounded by the store's timeout; security reads raise
BackendUnavailableError when the backend cannot answer.

StoreLifecycle (async twin: AsyncStoreLifecycle)
    ping()
        One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer (readiness checks).
    close()
        Release the store's connections; every later call raises StoreClosedError.
CacheStore (async twin: AsyncCacheStore)
    get(key)
        The value with its exact type, or None when missing or expired.
    set(key, value, ttl=None)
        Store a value; without ``ttl`` any previous expiry is cleared.
    add(key, value, ttl=None)
        Set only if absent (or expired); True when this call stored the value.
    delete(key)
        True when a live key was removed.
    exists(key)
        True for a live key; an expired one is absent whether or not it was deleted.
    incr(key, delta=1, ttl=None)
        Add ``delta`` to an integer value; a missing key starts at 0 and gets ``ttl``.
    expire(key, ttl)
        Give an existing key a new TTL (None removes the expiry); False if missing.
    ttl(key)
        Seconds left; None for a missing key, ``math.inf`` for a key without expiry.
    get_many(keys)
        The keys that exist, with their values; missing keys are left out.
    set_many(mapping, ttl=None)
        ``set`` for several keys, all with the same ``ttl``.
    delete_many(keys)
        How many live keys were removed.
    check_rate_limit(key, limit, window, cost=1, algorithm='fixed_window')
        Count a hit of weight ``cost``; a refused hit consumes nothing.
    check_rate_limits(key, limits, cost=1)
        One hit of ``cost`` on several limits of ``key`` in one atomic step: allowed
        only if every limit allows it; refused, nothing is consumed in any of them.
    peek_rate_limit(key, limit, window, algorithm='fixed_window', cost=1)
        What ``check_rate_limit`` would answer now, consuming, creating and extending
        nothing: ``allowed`` (would a hit of ``cost`` pass), ``remaining`` (units left
        now), ``reset_after`` and ``retry_after`` as a hit would see them.
    peek_rate_limits(key, limits, cost=1)
        ``peek_rate_limit`` for a group's state (see ``check_rate_limits``).
    reset_rate_limit(key)
        Forget the state of every algorithm's limiter for ``key``.
    add_to_blacklist(jti, expires_in=None, *, expires_at=None)
        Revoke one token id until it would have expired anyway.
    is_blacklisted(jti)
        Raises BackendUnavailableError when the backend is down: never a False by
        default.
    remove_from_blacklist(jti)
        Un-revoke a token id; True when a live entry was removed.
    revoke_user_tokens(user_id, at=None, expires_in=None)
        Revoke every token of a user issued before ``at`` (default: now on the store's
        clock).
    user_tokens_revoked_at(user_id)
        The instant in force (aware UTC, sub-second), or None. Fails closed.
    purge_expired()
        Physically delete what has expired; reads never depend on it.
SessionStore (async twin: AsyncSessionStore)
    create(user_id, *, ttl, device_id=None, application_id=None, ip_address=None, user_agent=None, metadata=None, max_sessions=None, token=None)
        Store a session and return it with its secret token.
    get(token)
        The live session of this token, or None (expired, revoked or unknown).
    touch(token, *, ttl=None)
        Record activity; with ``ttl`` the expiry slides to now + ttl.
    revoke(token)
        True when a live session was revoked.
    revoke_by_id(session_id, *, user_id=None)
        Revoke by public id; with ``user_id`` only if the session is that user's.
    revoke_all(user_id, *, except_token=None, except_id=None)
        Revoke every live session of a user but the one named; returns how many.
    count(user_id)
        How many live sessions the user has.
    purge_expired()
        Physically delete expired sessions (revoked ones are kept until they expire, so
        their token hash stays taken); returns how many it deleted, 0 where the backend
        expires entries by itself (Redis, memcached).
    list(user_id)
        Live sessions of a user, newest first.
TotpStore (async twin: AsyncTotpStore)
    save_pending(user_id, secret)
        Start (or restart) enrolment; an active secret stays active until ``enable``.
    enable(user_id)
        Make the pending secret the active one; False when nothing is pending.
    disable(user_id)
        Forget the secrets, the backup codes and the replay state.
    load(user_id)
        The user's state, or None when there is none (never enrolled, or disabled).
    replace_backup_codes(user_id, code_hashes)
        Store new backup code hashes in place of all previous ones.
    use_backup_code(user_id, code_hash)
        True exactly once per stored code, even under concurrency.
    claim_step(user_id, step)
        Accept a TOTP time step only if it is later than the last one claimed.
MagicLinkStore (async twin: AsyncMagicLinkStore)
    issue(user_id, email, *, ttl, application_id=None, ip_address=None, user_agent=None, revoke_previous=True, token=None)
        Store a link and return it with its secret token.
    issue_hashed(user_id, email, token_hash, *, ttl, application_id=None, ip_address=None, user_agent=None, revoke_previous=True)
        ``issue`` for a core that hands storage only the SHA-256 of its own token.
    peek(token)
        The link if it is still usable, without using it.
    consume(token, *, application_id=None)
        Use the link: among any number of concurrent callers exactly one gets the
        record.
    revoke_user(user_id)
        Revoke the user's usable links (live, unconsumed, unrevoked); returns how many.
    purge_expired()
        Physically delete expired links (used ones are kept until they expire, so their
        token hash stays taken); returns how many it deleted, 0 where the backend
        expires entries by itself (Redis, memcached).

Records (frozen; datetimes are timezone-aware UTC; ids are str)
---------------------------------------------------------------
SessionRecord(id, user_id, created_at, last_seen_at, expires_at, device_id,
    application_id, ip_address, user_agent, metadata)
MagicLinkRecord(id, user_id, email, created_at, expires_at, application_id,
    ip_address, user_agent, consumed_at)
TotpState(user_id, enabled, secret, pending_secret, last_step, backup_codes_left,
    created_at, updated_at, enabled_at, backup_code_hashes)
NewSession(record, token), IssuedMagicLink(record, token)
    What ``create``/``issue`` return: the record and the secret token, shown once.
RateLimitResult(allowed, remaining, reset_after, retry_after, limit)
    Unpacks as ``allowed, remaining, reset_after``; build it with the ``*_result``
    functions. RateLimitAlgorithm: ``fixed_window``, ``sliding_window``, ``gcra``.
Limit(limit, window, algorithm), LimitsLike
    One checked limit, and what ``check_rate_limits``/``peek_rate_limits`` take: text
    (``"100/day;10/minute"``), a Limit or several; ``parse_limits`` makes the tuple.
Value, JSONValue
    What a cache stores: a JSON value other than None, or bytes (never pickle).
from_epoch(seconds) turns a store's epoch float into an aware UTC datetime.

Rate-limit states
-----------------
A backend keeps each limiter's state atomically and returns it to one of the
``*_result`` functions, which compute what the caller sees:

FixedWindowState = (allowed, count after this hit, window end, store now)
SlidingWindowState = (allowed, previous count, current count, current start, store now)
GcraState = (allowed, anchor, units, store now); TAT = anchor + units * window / limit

Instants are epoch seconds (float) on the store's clock. The ``step_*`` functions are
the reference transitions: run them under your lock, or mirror them in your server's
language with the same EPSILON slack. A limiter's clock never runs backwards: if the
clock you read is earlier than the one the state was last written with (a command
that waited behind another, a clock step), use the later one. A refused hit consumes
nothing. State may expire once it cannot matter: a fixed window at its end, a sliding
window two windows after its current start, GCRA one window after its TAT.

Argument ranges (checked before any I/O; exact)
-----------------------------------------------
key, jti                 check_key: 1 to MAX_KEY_BYTES (1024) UTF-8 bytes, no NUL
ttl, expires_in          check_ttl: MIN_TTL (0.001) to MAX_TTL (315,360,000 s = 10
                         years); None or inf mean "no expiry" where optional, and
                         check_ttl then returns None (so ``touch(ttl=inf)`` is
                         ``touch(ttl=None)``: last_seen only, no sliding)
window                   check_ttl(window, "window", optional=False,
                         maximum=MAX_WINDOW): 0.001 s to 366 days
limit                    check_count(limit, "limit", maximum=MAX_LIMIT): 1 to 2**31-1
cost                     check_count(cost, "cost", maximum=limit): 1 to limit
delta (incr)             check_count(delta, "delta", minimum=-2**62, maximum=2**62)
max_sessions             check_count(max_sessions, "max_sessions"): 1 to 2**53, or None
TOTP step                0 to 2**62
algorithm                check_algorithm: a RateLimitAlgorithm or its value (TypeError
                         for 1 or None, ValueError for an unknown name)
revoke_previous          check_flag: a real bool (TypeError for 1, "yes", None)
at (revoke_user_tokens)  check_instant: an aware datetime (TypeError for a str, float
                         or date; ValueError when naive)
code_hashes              an iterable of str, never a single str (TypeError); duplicates
                         are dropped before the MAX_BACKUP_CODES count
token (get, touch,       check_token: 1 to MAX_TOKEN_BYTES (512) UTF-8 bytes; then
  revoke, peek, consume) store and look up hash_token(token), never the token
caller token             check_caller_token: MIN_CALLER_TOKEN_CHARS (32) to
                         MAX_CALLER_TOKEN_CHARS (512) characters
token_hash               check_token_hash: 64 lowercase hex characters
user_id, ids             check_text(..., max_bytes=MAX_ID_BYTES): 1 to 255 bytes
email / ip_address /     MAX_EMAIL_BYTES (320) / MAX_IP_BYTES (64) /
  user_agent             MAX_USER_AGENT_BYTES (1024)
code_hash                1 to MAX_CODE_HASH_BYTES (512); at most MAX_BACKUP_CODES (100)
TOTP secret              bytes, 1 to MAX_SECRET_BYTES (4096)
metadata                 check_metadata: a dict of JSON values, at most MAX_JSON_BYTES
                         (65,536) encoded, nested at most MAX_JSON_DEPTH (64) deep
cache value              encode_value: at most MAX_VALUE_BYTES (4 MiB) encoded; lists
                         and dicts nested at most MAX_JSON_DEPTH (64) deep
other text               check_text: 1 to MAX_TEXT_BYTES (4096) bytes
namespace                check_namespace: 1 to 64 of A-Z a-z 0-9 _ . -

Errors (wrap every driver exception, keep it as __cause__)
---------------------------------------------------------
AuthStoreError           the base of every authstore error
ConfigurationError       bad URL or option (also MissingDriverError, via
                         require_module; UnknownSchemeError; SchemeConflictError)
UnsupportedOperationError  a kind or method the backend does not offer
BackendUnavailableError  down, refused, timed out: security reads raise it
BackendError             any other backend failure
StoreFullError           a bounded store is full
TokenInUseError          a create/issue with a hash a live, revoked or used record
                         holds (a ValueError too); nothing changed
"""

from __future__ import annotations

import inspect
import textwrap

from authstore.adapters.common.logic import (
    blacklist_seconds,
    check_algorithm,
    check_caller_token,
    check_flag,
    check_instant,
    check_token_hash,
)
from authstore.adapters.common.ops import FixedWindowState as FixedWindowState
from authstore.adapters.common.ops import GcraState as GcraState
from authstore.adapters.common.ops import SlidingWindowState as SlidingWindowState
from authstore.adapters.common.ratelimit import (
    EPSILON,
    fixed_window_result,
    gcra_result,
    sliding_window_result,
    step_fixed_window,
    step_gcra,
    step_sliding_window,
)
from authstore.contracts.cache import CACHE_CAPABILITIES
from authstore.contracts.cache import AsyncCacheStore as AsyncCacheStore
from authstore.contracts.cache import CacheStore as CacheStore
from authstore.contracts.errors import AuthStoreError as AuthStoreError
from authstore.contracts.errors import BackendError as BackendError
from authstore.contracts.errors import BackendUnavailableError as BackendUnavailableError
from authstore.contracts.errors import ConfigurationError as ConfigurationError
from authstore.contracts.errors import MissingDriverError as MissingDriverError
from authstore.contracts.errors import StoreFullError as StoreFullError
from authstore.contracts.errors import TokenInUseError as TokenInUseError
from authstore.contracts.errors import UnsupportedOperationError as UnsupportedOperationError
from authstore.contracts.lifecycle import AsyncStoreLifecycle as AsyncStoreLifecycle
from authstore.contracts.lifecycle import StoreLifecycle as StoreLifecycle
from authstore.contracts.magic_links import AsyncMagicLinkStore as AsyncMagicLinkStore
from authstore.contracts.magic_links import MagicLinkStore as MagicLinkStore
from authstore.contracts.records import IssuedMagicLink as IssuedMagicLink
from authstore.contracts.records import JSONValue as JSONValue
from authstore.contracts.records import MagicLinkRecord as MagicLinkRecord
from authstore.contracts.records import NewSession as NewSession
from authstore.contracts.records import RateLimitAlgorithm as RateLimitAlgorithm
from authstore.contracts.records import RateLimitResult as RateLimitResult
from authstore.contracts.records import SessionRecord as SessionRecord
from authstore.contracts.records import StoreKind as StoreKind
from authstore.contracts.records import TotpState as TotpState
from authstore.contracts.records import Value as Value
from authstore.contracts.records import from_epoch
from authstore.contracts.sessions import AsyncSessionStore as AsyncSessionStore
from authstore.contracts.sessions import SessionStore as SessionStore
from authstore.contracts.totp import AsyncTotpStore as AsyncTotpStore
from authstore.contracts.totp import TotpStore as TotpStore
from authstore.contracts.values import (
    MAX_BACKUP_CODES,
    MAX_CALLER_TOKEN_CHARS,
    MAX_CODE_HASH_BYTES,
    MAX_EMAIL_BYTES,
    MAX_ID_BYTES,
    MAX_IP_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_KEY_BYTES,
    MAX_LIMIT,
    MAX_SECRET_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TTL,
    MAX_USER_AGENT_BYTES,
    MAX_VALUE_BYTES,
    MAX_WINDOW,
    MIN_CALLER_TOKEN_CHARS,
    MIN_TTL,
    check_count,
    check_key,
    check_keys,
    check_metadata,
    check_namespace,
    check_optional_text,
    check_text,
    check_token,
    check_ttl,
    decode_value,
    encode_json,
    encode_many,
    encode_value,
    hash_token,
    new_public_id,
    new_token,
)
from authstore.limits import Limit as Limit
from authstore.limits import LimitsLike as LimitsLike
from authstore.limits import parse_limits
from authstore.registry import (
    ENTRY_POINT_GROUP,
    loopback_twin,
    register_backend,
    require_module,
    unregister_backend,
)
from authstore.registry import Backend as Backend
from authstore.registry import NamespaceCleaner as NamespaceCleaner
from authstore.registry import Options as Options
from authstore.registry import StoreURL as StoreURL
from authstore.registry import UnreachableTwin as UnreachableTwin

TYPES = (
    "AsyncCacheStore",
    "AsyncMagicLinkStore",
    "AsyncSessionStore",
    "AsyncStoreLifecycle",
    "AsyncTotpStore",
    "AuthStoreError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "CacheStore",
    "ConfigurationError",
    "FixedWindowState",
    "GcraState",
    "IssuedMagicLink",
    "JSONValue",
    "Limit",
    "LimitsLike",
    "MagicLinkRecord",
    "MagicLinkStore",
    "MissingDriverError",
    "NamespaceCleaner",
    "NewSession",
    "Options",
    "RateLimitAlgorithm",
    "RateLimitResult",
    "SessionRecord",
    "SessionStore",
    "SlidingWindowState",
    "StoreFullError",
    "StoreKind",
    "StoreLifecycle",
    "StoreURL",
    "TokenInUseError",
    "TotpState",
    "TotpStore",
    "UnreachableTwin",
    "UnsupportedOperationError",
    "Value",
)
"""The types this module offers besides ``__all__``: summarized in its docstring."""

__all__ = [
    "CACHE_CAPABILITIES",
    "ENTRY_POINT_GROUP",
    "EPSILON",
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
    "blacklist_seconds",
    "check_algorithm",
    "check_caller_token",
    "check_count",
    "check_flag",
    "check_instant",
    "check_key",
    "check_keys",
    "check_metadata",
    "check_namespace",
    "check_optional_text",
    "check_text",
    "check_token",
    "check_token_hash",
    "check_ttl",
    "decode_value",
    "encode_json",
    "encode_many",
    "encode_value",
    "fixed_window_result",
    "from_epoch",
    "gcra_result",
    "hash_token",
    "loopback_twin",
    "new_public_id",
    "new_token",
    "parse_limits",
    "register_backend",
    "require_module",
    "sliding_window_result",
    "step_fixed_window",
    "step_gcra",
    "step_sliding_window",
    "unregister_backend",
]


def stores_reference() -> str:
    """The "Stores" part of this module's docstring, made from the protocols themselves:
    a test keeps the docstring equal to it, so the reference cannot drift."""
    lines: list[str] = []
    for protocol in (StoreLifecycle, CacheStore, SessionStore, TotpStore, MagicLinkStore):
        lines.append(f"{protocol.__name__} (async twin: Async{protocol.__name__})")
        for name, member in protocol.__dict__.items():
            if name.startswith("_") or not callable(member):
                continue
            parameters = list(inspect.signature(member).parameters.values())[1:]
            shown = _parameters(parameters)
            doc = inspect.getdoc(member)
            summary = " ".join(doc.split("\n\n")[0].split()) if doc else ""
            lines.append(f"    {name}({shown})")
            if summary:
                lines.append(
                    textwrap.fill(summary, 88, initial_indent=" " * 8, subsequent_indent=" " * 8)
                )
    return "\n".join(lines) + "\n"


def _parameters(parameters: list[inspect.Parameter]) -> str:
    shown: list[str] = []
    for parameter in parameters:
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in shown:
            shown.append("*")
        if parameter.default is parameter.empty:
            shown.append(parameter.name)
        else:
            default = getattr(parameter.default, "value", parameter.default)
            shown.append(f"{parameter.name}={default!r}")
    return ", ".join(shown)
