"""What every contract class shares: the mode parameter, store fixtures and assertions."""

from __future__ import annotations

import dataclasses
import inspect
import math
import reprlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from authstore.contracts.errors import AuthStoreError, BackendUnavailableError
from authstore.contracts.records import StoreKind
from authstore.contracts.testing.harness import (
    CacheSubject,
    MagicLinkSubject,
    Mode,
    RunnerLoop,
    SessionSubject,
    StoreFactory,
    Stores,
    TotpSubject,
    View,
    open_store,
)
from authstore.contracts.values import (
    MAX_CALLER_TOKEN_CHARS,
    MAX_ID_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TTL,
    MAX_WINDOW,
    MIN_CALLER_TOKEN_CHARS,
    MIN_TTL,
)

if TYPE_CHECKING:
    from authstore.registry import StoreURL

__all__ = [
    "BAD_COUNTS",
    "BAD_IDS",
    "BAD_REQUIRED_TTLS",
    "BAD_TTLS",
    "BAD_WINDOWS",
    "SURROGATES",
    "INF",
    "LONG",
    "NAN",
    "Bad",
    "BadCase",
    "ContractBase",
    "assert_rejected",
    "assert_utc",
    "cases",
    "close_to",
    "require",
    "same_value",
]

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


def require(store: CacheSubject, capability: str) -> None:
    """Skip (never fail, even when strict) what the store declares it does not do."""
    if capability not in store.capabilities:
        pytest.skip(f"the cache does not declare the {capability!r} capability")


def nested(depth: int, container: type[list[Any]] | type[dict[str, Any]] = list) -> Any:
    """``depth`` lists (or dicts under the key "d") nested in each other, built without
    recursion: the input policy's nesting limit at its edge."""
    value: Any = [] if container is list else {}
    for _ in range(depth - 1):
        value = [value] if container is list else {"d": value}
    return value


def same_value(left: object, right: object) -> bool:
    """Equal with the same types all the way down: 1 != 1.0 != True, b"1" != "1"."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return left.keys() == right.keys() and all(same_value(v, right[k]) for k, v in left.items())
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(map(same_value, left, right))
    return left == right


def assert_utc(moment: object) -> datetime:
    """Records carry timezone-aware UTC datetimes (naive ones are ambiguous)."""
    assert isinstance(moment, datetime), f"expected a datetime, got {moment!r}"
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0), (
        f"{moment!r} is not an aware UTC datetime"
    )
    return moment


def close_to(moment: datetime, expected: datetime, seconds: float = 2.0) -> bool:
    """Store clocks (a server's) may differ a little from the test's clock."""
    return abs((moment - expected).total_seconds()) <= seconds


@dataclass(frozen=True)
class BadCase:
    """A call with one bad argument and the exact error it must raise before any I/O."""

    method: str
    args: tuple[Any, ...]
    error: type[Exception]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = [_short.repr(a) for a in self.args]
        shown += [f"{k}={_short.repr(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(shown)}) should raise {self.error.__name__}"


def assert_rejected(targets: Sequence[tuple[str, Any]], bad_cases: Sequence[BadCase]) -> None:
    """Every case raises its ValueError/TypeError on every target, and never an AuthStoreError.

    ConfigurationError is both a ValueError and an AuthStoreError: accepting it
    would let a backend error pass for an argument check, so it is refused too.
    """
    assert bad_cases, "no bad-input case applies"
    problems: list[str] = []
    for label, store in targets:
        for case in bad_cases:
            try:
                getattr(store, case.method)(*case.args, **case.kwargs)
            except case.error as error:
                if isinstance(error, AuthStoreError):
                    problems.append(f"[{label}] {case}, got {type(error).__name__}: {error}")
            except Exception as error:
                problems.append(f"[{label}] {case}, got {type(error).__name__}: {error}")
            else:
                problems.append(f"[{label}] {case}, but it returned normally")
    assert not problems, f"{len(problems)} bad-input problem(s):\n" + "\n".join(problems)


NAN, INF = math.nan, math.inf
LONG = 3600.0
"""A window or TTL no test outlives, so counts are exact and nothing expires by accident."""

Bad = Sequence[tuple[Any, type[Exception]]]
"""Bad values for one argument, each with the exact exception it must raise."""

SURROGATES: Bad = [("\ud800", ValueError), ("a\udfffb", ValueError), ("\udc80" * 3, ValueError)]
"""Lone surrogates: a str Python holds but no UTF-8 encoder (nor any backend) accepts."""

WIDEST = "\U0001f600"
"""A 4-byte UTF-8 character: text of it is 4 times longer in bytes than in characters,
so it tells a limit in bytes (the policy's) from one in characters."""


def text_of_bytes(size: int) -> str:
    """Exactly ``size`` bytes of UTF-8, in 4-byte characters as far as they go."""
    return WIDEST * (size // 4) + "a" * (size % 4)


def text_beyond(limit: int) -> str:
    """Over ``limit`` bytes of UTF-8 in fewer than ``limit`` characters: a byte limit
    refuses it, a character limit would not."""
    return WIDEST * (limit // 4 + 1)


BAD_IDS: Bad = [
    (1, TypeError),
    (None, TypeError),
    (b"user", TypeError),
    ("", ValueError),
    ("u" * 100000, ValueError),
    ("a\x00b", ValueError),
    *SURROGATES,
    (text_beyond(MAX_ID_BYTES), ValueError),
]
"""The last is fewer characters than MAX_ID_BYTES but more bytes: ids are limited in bytes."""

BAD_TTLS: Bad = [
    (NAN, ValueError),
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.5, ValueError),
    (-INF, ValueError),
    ("10", TypeError),
    (True, TypeError),
    (False, TypeError),
    (b"1", TypeError),
    ([1], TypeError),
    (5e-324, ValueError),
    (MIN_TTL / 2, ValueError),
    (MAX_TTL + 1, ValueError),
    (MAX_TTL * 1.0001, ValueError),
    (1e12, ValueError),
    (1e300, ValueError),
    (1.7976931348623157e308, ValueError),
    (10**400, ValueError),
    (-(10**400), ValueError),
]
"""For optional TTLs, where None and inf mean no expiry. A finite TTL beyond MAX_TTL
(1e12 s ends in year 33715) is refused, never written and then unreadable."""
BAD_REQUIRED_TTLS: Bad = [*BAD_TTLS, (None, TypeError), (INF, ValueError)]
"""For TTLs that must be finite: a blacklist entry's life, a session's or a link's."""
BAD_WINDOWS: Bad = [
    *BAD_REQUIRED_TTLS,
    (1e-300, ValueError),
    (1e-9, ValueError),
    (MAX_WINDOW + 1, ValueError),
    (1.79e308, ValueError),
]
"""Rate-limit windows: from MIN_TTL (1 ms) to MAX_WINDOW (366 days)."""

BAD_COUNTS: Bad = [
    ("10", TypeError),
    (1.5, TypeError),
    (10.0, TypeError),
    (True, TypeError),
    (None, TypeError),
    (0, ValueError),
    (-1, ValueError),
    (2**64, ValueError),
    (10**400, ValueError),
]


MILLISECOND = timedelta(milliseconds=1)
MICROSECOND = timedelta(microseconds=1)
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
BAD_OPTIONAL_IDS: Bad = [*BAD_OPTIONAL_TEXT, (text_beyond(MAX_ID_BYTES), ValueError)]
WIDE_ID = text_of_bytes(MAX_ID_BYTES)
"""Exactly MAX_ID_BYTES of UTF-8 in 4-byte characters: the longest id the policy accepts."""
A_TOKEN = "x" * 43
"""Well-formed but unknown: for bad-input cases about another argument."""
BAD_CALLER_TOKENS: Bad = [
    ("t" * (MIN_CALLER_TOKEN_CHARS - 1), ValueError),
    ("", ValueError),
    ("t" * (MAX_CALLER_TOKEN_CHARS + 1), ValueError),
    (text_beyond(MAX_TOKEN_BYTES), ValueError),
    ("\ud800" * 40, ValueError),
    (b"t" * 40, TypeError),
    (40, TypeError),
    (["t" * 40], TypeError),
]
"""A caller-supplied token: a str of MIN_CALLER_TOKEN_CHARS to MAX_CALLER_TOKEN_CHARS
characters, and at most MAX_TOKEN_BYTES of UTF-8."""


def cases(method: str, bad: Bad, *args: Any, **kwargs: Any) -> list[BadCase]:
    """One case per bad value, put where ``...`` stands in the arguments (after the
    positional ones when there is no ``...``)."""
    keyword = next((name for name, value in kwargs.items() if value is ...), None)
    position = next((i for i, value in enumerate(args) if value is ...), None)
    result = []
    for value, error in bad:
        if keyword is not None:
            result.append(BadCase(method, args, error, {**kwargs, keyword: value}))
        elif position is not None:
            filled = (*args[:position], value, *args[position + 1 :])
            result.append(BadCase(method, filled, error, kwargs))
        else:
            result.append(BadCase(method, (*args, value), error, kwargs))
    return result


def _capability_of(request: pytest.FixtureRequest) -> str | None:
    """The ``capability`` of the mixin that defines the requesting test."""
    name = request.function.__name__
    for klass in type(request.instance).__mro__:
        if name in vars(klass):
            capability: str | None = vars(klass).get("capability")
            return capability
    return None


class ContractBase:
    """Fixtures shared by every contract class; a subclass provides ``authstore_url``
    or ``authstore_factory`` and may tune the class attributes below."""

    capability: ClassVar[str | None] = None
    """The cache capability a mixin's tests need; they skip when the store lacks it."""

    backend_does_io: ClassVar[bool] = True
    """False declares that the backend does no I/O (its data lives in the test's own
    process, like ``memory://``): it cannot be down, so the fail-closed tests skip for
    it, also in strict mode. Every other backend must define an
    ``authstore_unreachable_url`` fixture, or the fail-closed tests skip when not strict
    and FAIL under ``--authstore-strict`` / ``AUTHSTORE_STRICT=1``: a security property
    (a revoked token stays revoked during an outage) is never left unproven silently."""

    short_ttl: ClassVar[float] = 0.3
    """Seconds; raise it for a backend whose expiry is coarser (say 1.0 for memcached)."""

    @property
    def expiry_wait(self) -> float:
        """How long to sleep for ``short_ttl`` to have surely passed."""
        return self.short_ttl + max(0.15, self.short_ttl / 2)

    def wait_expiry(self) -> None:
        time.sleep(self.expiry_wait)

    @pytest.fixture(params=["sync", "async"])
    def authstore_mode(self, request: pytest.FixtureRequest) -> Mode:
        mode: Mode = request.param
        return mode

    @pytest.fixture
    def authstore_stores(
        self,
        authstore_factory: StoreFactory,
        authstore_mode: Mode,
        request: pytest.FixtureRequest,
    ) -> Iterator[Stores]:
        """The test's stores. Async ones run on pytest-asyncio's function-scoped loop when
        pytest-asyncio is active (async fixtures then share it), else on a loop thread."""
        loop: RunnerLoop | None = None
        if authstore_mode == "async" and request.config.pluginmanager.has_plugin("asyncio"):
            loop = RunnerLoop(_pytest_asyncio_runner(request))
        stores = Stores(authstore_factory, authstore_mode, loop)
        yield stores
        stores.close()

    @pytest.fixture
    def authstore_unreachable_url(self, request: pytest.FixtureRequest) -> str | None:
        """A URL of this backend that opens lazily but cannot be reached (by default
        ``--authstore-unreachable-url``). Override it in every backend that does I/O.

        The fail-closed tests open their stores there: security reads must raise
        BackendUnavailableError. Bad-input tests also run on a store there: an
        argument check that came after any I/O would show up as a
        BackendUnavailableError. Without it, see ``backend_does_io``.
        """
        url: str | None = request.config.getoption("authstore_unreachable_url", None)
        return url

    @pytest.fixture
    def cache_store(self, authstore_stores: Stores, request: pytest.FixtureRequest) -> CacheSubject:
        store = authstore_stores.cache()
        capability = _capability_of(request)
        if capability is not None:
            require(store, capability)
        return store

    @pytest.fixture
    def session_store(self, authstore_stores: Stores) -> SessionSubject:
        return authstore_stores.sessions()

    @pytest.fixture
    def totp_store(self, authstore_stores: Stores) -> TotpSubject:
        return authstore_stores.totp()

    @pytest.fixture
    def magic_link_store(self, authstore_stores: Stores) -> MagicLinkSubject:
        return authstore_stores.magic_links()

    def other_namespace(self, url: str | None) -> StoreFactory:
        """A factory over the same backend in a fresh namespace; needs the URL."""
        if url is None:
            pytest.skip(
                "namespace isolation needs an authstore_url fixture: the suite opens a "
                "second store with another namespace= from it"
            )
        return partial(open_store, url, namespace=self.fresh_namespace("o"))

    def fresh_namespace(self, initial: str) -> str:
        """A new namespace for this test (``authstore check`` names and clears them)."""
        return initial + uuid.uuid4().hex

    @staticmethod
    def io_free_targets(
        stores: Stores, kind: StoreKind, unreachable_url: str | StoreURL | None
    ) -> list[tuple[str, Any]]:
        """Stores on which bad input must fail with ValueError/TypeError.

        Argument checks must come before any I/O. A closed store (and a store on
        an unreachable URL, when the backend names one) cannot do I/O, so a check
        that ran after I/O surfaces there as an AuthStoreError or a leaked driver
        error, which ``assert_rejected`` reports. On a backend without I/O (memory)
        a closed store may keep working; the "nothing half-written" tests cover it.
        """
        live = stores.open(kind)
        closed = stores.open(kind)
        closed.close()
        targets = [("open store", live), ("closed store", closed)]
        if unreachable_url is not None:
            targets.append(
                (
                    "unreachable store",
                    stores.open(
                        kind, partial(open_store, unreachable_url, namespace="unreachable")
                    ),
                )
            )
        return targets

    def unreachable(self, stores: Stores, kind: StoreKind, url: str | StoreURL | None) -> Any:
        """A store on the backend's ``authstore_unreachable_url``.

        Without one: a skip when the class declares ``backend_does_io = False``; else a
        skip when not strict and a failure in strict mode that names the fixture to add.
        """
        if url is None:
            from authstore.contracts.testing import is_strict

            applicable, message = self.no_unreachable_url()
            if not applicable:
                pytest.skip(message)
            if is_strict():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        return stores.open(kind, partial(open_store, url, namespace="unreachable"))

    def no_unreachable_url(self) -> tuple[bool, str]:
        """Why a test has no unreachable URL: (whether fail-closed applies, the message)."""
        if not self.backend_does_io:
            return False, (
                f"{type(self).__name__} declares backend_does_io = False: "
                "a backend without I/O cannot be down"
            )
        return True, (
            f"fail-closed is unproven: {type(self).__name__} defines no "
            "authstore_unreachable_url fixture. Add one returning a URL of this backend "
            "that opens without I/O but cannot be reached, e.g.\n"
            "    @pytest.fixture\n"
            "    def authstore_unreachable_url(self) -> str:\n"
            '        return "mybackend://127.0.0.1:1/"\n'
            "or, only if the backend does no I/O at all (in-process data), set the "
            "class attribute backend_does_io = False"
        )

    @staticmethod
    def fails_closed(store: Any, calls: dict[str, Callable[[Any], Any]]) -> None:
        """Security reads on a backend that is down raise BackendUnavailableError:
        never a False, None or "allowed" that would let a revoked credential through."""
        problems = []
        for name, call in calls.items():
            try:
                answer = call(store)
            except BackendUnavailableError:
                continue
            except Exception as error:
                problems.append(f"{name} raised {type(error).__name__}: {error}")
            else:
                problems.append(f"{name} answered {answer!r}")
        assert not problems, "a down backend must raise BackendUnavailableError:\n" + "\n".join(
            problems
        )


def _pytest_asyncio_runner(request: pytest.FixtureRequest) -> Any:
    """pytest-asyncio's function-scoped ``asyncio.Runner`` (a fixture since 1.1)."""
    try:
        return request.getfixturevalue("_function_scoped_runner")
    except pytest.FixtureLookupError:
        from importlib.metadata import version

        pytest.fail(
            "authstore's contract suite runs async stores on pytest-asyncio's loop and needs "
            f"pytest-asyncio >= 1.1 (installed: {version('pytest-asyncio')}); upgrade it, or "
            "run without it (-p no:asyncio) to use the suite's own loop thread",
            pytrace=False,
        )


# -- shared by the store contracts ---------------------------------------------------


def ttl_within(store: CacheSubject, key: str, low: float, high: float) -> float:
    """The key's TTL is a finite number of seconds in (low, high]."""
    left = store.ttl(key)
    assert isinstance(left, float | int) and not isinstance(left, bool), f"ttl({key!r}) = {left!r}"
    assert low < left <= high, f"ttl({key!r}) = {left!r}, expected in ({low}, {high}]"
    return float(left)


def caller_token() -> str:
    """A token as a core with its own token scheme would make it (not authstore's format)."""
    return "core." + secrets.token_hex(24)


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
