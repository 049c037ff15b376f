"""Choosing a backend by URL.

Schemes come from the ``authstore.backends`` entry-point group, so a third-party
package adds one by declaring it; two packages claiming one scheme is an error.
Backends import their drivers only when a store is opened, so importing authstore
imports no driver.
"""

from __future__ import annotations

import importlib
import math
import re
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote

from authstore.contracts.errors import (
    ConfigurationError,
    MissingDriverError,
    SchemeConflictError,
    UnknownSchemeError,
    UnsupportedOperationError,
)
from authstore.contracts.records import StoreKind

if TYPE_CHECKING:
    from authstore.contracts.cache import AsyncCacheStore, CacheStore
    from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
    from authstore.contracts.sessions import AsyncSessionStore, SessionStore
    from authstore.contracts.totp import AsyncTotpStore, TotpStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "NamespaceCleaner",
    "Options",
    "StoreURL",
    "UnreachableTwin",
    "backend_for",
    "connect_eagerly",
    "known_schemes",
    "loopback_twin",
    "migrate",
    "open_async_cache",
    "open_async_magic_links",
    "open_async_sessions",
    "open_async_totp",
    "open_cache",
    "open_magic_links",
    "open_sessions",
    "open_store",
    "open_totp",
    "register_backend",
    "require_module",
    "unreachable_url",
    "unregister_backend",
]

ENTRY_POINT_GROUP = "authstore.backends"

BUILTIN_BACKENDS = {
    "memory": "authstore.adapters.memory:backend",
    "sqlite": "authstore.adapters.sqlite:backend",
    "postgresql": "authstore.adapters.postgres:backend",
    "postgres": "authstore.adapters.postgres:backend",
    "mysql": "authstore.adapters.mysql:backend",
    "mariadb": "authstore.adapters.mysql:backend",
    "redis": "authstore.adapters.redis:backend",
    "rediss": "authstore.adapters.redis:backend",
    "redis+unix": "authstore.adapters.redis:backend",
    "redis+cluster": "authstore.adapters.redis:backend",
    "redis+sentinel": "authstore.adapters.redis:backend",
    "memcached": "authstore.adapters.memcached:backend",
    "mongodb": "authstore.adapters.mongodb:backend",
    "mongodb+srv": "authstore.adapters.mongodb:backend",
}
"""Also declared as entry points in pyproject.toml; listed here so a source checkout works too."""


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL; its repr and str never show the password."""

    scheme: str
    hosts: tuple[tuple[str, int | None], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str | StoreURL) -> StoreURL:
        if isinstance(url, StoreURL):
            return url
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if "://" not in url:
            raise ConfigurationError("a store URL looks like scheme://..., e.g. sqlite:///auth.db")
        scheme, rest = url.split("://", 1)
        if not _SCHEME.fullmatch(scheme):
            # Not repeated: text before the first "://" may be a password holding "://"
            # whose URL lost its scheme or one of its slashes (//user:pw..., redis:/user:pw...).
            raise ConfigurationError(
                "malformed store URL: it must start with a scheme (a letter, then letters, "
                "digits, '+', '-' or '.') and '://', e.g. sqlite:///auth.db or "
                "redis://host:6379/0; percent-encode ':', '/' and '@' in a password"
            )
        try:
            userinfo, hostlist, slash, path, query = _split(rest)
        except _AmbiguousURL:
            raise ConfigurationError(
                f"ambiguous store URL {scheme.lower()}://...: an '@' could end the password "
                "or belong to an option; percent-encode '@', '/' and '?' in the password "
                "(%40, %2F, %3F) and '@' in options"
            ) from None
        username, _, password = userinfo.partition(":")
        # No message below repeats any text of the URL: in "redis://user:pass" (no host)
        # the password reads as a port and its tail as the path, and an unencoded '/',
        # '?' or '@' in a password moves parts of it into the host list or the options.
        where = f"malformed store URL {scheme.lower()}://..."
        try:
            options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        except ValueError:
            raise ConfigurationError(
                f"{where}: an option is not name=value (options are ?name=value&name=value)"
            ) from None
        parts = [part for part in hostlist.split(",") if part]
        hosts = tuple(_host(scheme, number, part) for number, part in enumerate(parts, 1))
        return cls(
            scheme=scheme.lower(),
            hosts=hosts,
            username=_unquote_secret(username, scheme, "user name") if username else None,
            password=(
                _unquote_secret(password, scheme, "password")
                if userinfo and ":" in userinfo
                else None
            ),
            path=slash + path if path or slash else "",
            options=options,
        )

    def with_options(self, extra: Mapping[str, Any]) -> StoreURL:
        merged = dict(self.options)
        merged.update({k: v for k, v in extra.items()})
        return StoreURL(self.scheme, self.hosts, self.username, self.password, self.path, merged)

    def redacted(self) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            auth += ":***@" if self.password is not None else "@"
        elif self.password is not None:
            auth = ":***@"
        hosts = ",".join(h if p is None else f"{_bracket(h)}:{p}" for h, p in self.hosts)
        query = "&".join(
            f"{k}={'***' if _secret_option(k) else v}" for k, v in self.options.items()
        )
        if auth and "@" in self.path:
            # user:pw@x/@host: an unencoded '@' and '/' in a password ended the userinfo
            # early; the host list and the path would show the password's tail
            return f"{self.scheme}://{auth}..."
        return f"{self.scheme}://{auth}{hosts}{self.path}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"StoreURL({self.redacted()!r})"

    def reader(self) -> Options:
        """A fresh ``Options`` over this URL's query options (and the keywords the
        caller passed to ``open_*``): read each option once, then call ``done()``."""
        return Options(self)


def _unquote_secret(text: str, scheme: str, what: str) -> str:
    """``text`` percent-decoded as UTF-8; a ConfigurationError (showing none of it) when
    its escapes are not UTF-8: replacing them would send another password than the one
    written (two such passwords would even be the same)."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"malformed store URL {scheme.lower()}://...: the {what} has a %-escape that is "
            "not UTF-8 (write the characters as UTF-8, e.g. %C3%A9 for \u00e9)"
        ) from None


def _secret_option(name: str) -> bool:
    return any(word in name.lower() for word in ("password", "secret", "token", "key"))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
"""RFC 3986's scheme syntax."""
_HOSTLIST = re.compile(r"[A-Za-z0-9._%\-:,\[\]]+")
_QUERY_LIKE = re.compile(r"\?[^@]*=")


class _AmbiguousURL(ValueError):
    """An '@' that may end a password or sit in an option value: guessing could show a
    piece of the password as a host or an option, so the caller must percent-encode."""


def _split(rest: str) -> tuple[str, str, str, str, str]:
    """userinfo, host list, '/' or '', path, query of what follows ``scheme://``.

    A password written without percent-encoding may hold '/', '?' or '@' (base64 holds
    '/'): the userinfo ends at the last '@' that is followed by a host list. Without
    an authority (``sqlite:///a@b.db``) an '@' is part of the path.
    """
    userinfo = ""
    if not rest.startswith("/"):
        for at in (i for i in range(len(rest) - 1, -1, -1) if rest[i] == "@"):
            end = len(rest)
            for stop in "/?":
                found = rest.find(stop, at)
                end = found if found != -1 and found < end else end
            if _HOSTLIST.fullmatch(rest[at + 1 : end]):
                if _QUERY_LIKE.search(rest[:at]):
                    raise _AmbiguousURL
                userinfo, rest = rest[:at], rest[at + 1 :]
                break
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    if not userinfo and "@" in netloc:  # a host list the pattern does not know (IDN)
        userinfo, _, netloc = netloc.rpartition("@")
    elif not userinfo and netloc and "@" in path:
        raise _AmbiguousURL
    return userinfo, netloc, slash, path, query


def _host(scheme: str, number: int, part: str) -> tuple[str, int | None]:
    """Host ``number`` of the list, as (host, port); its text is never shown (above)."""
    if part.startswith("["):
        host, _, rest = part[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = part.partition(":")
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        which = "the host" if number == 1 else f"host {number}"
        raise ConfigurationError(
            f"malformed store URL {scheme.lower()}://...: the port of {which} is not a "
            "number from 0 to 65535 (a URL without a host, e.g. redis://user:password, "
            "reads its password as a port; percent-encode '@', '/' and '?' in a password)"
        )
    return unquote(host), int(port) if port else None


class Options:
    """Reads a URL's query options once each; ``done()`` rejects the ones nobody read."""

    def __init__(self, url: StoreURL) -> None:
        self._url = url
        self._left = dict(url.options)

    def text(self, name: str, default: str) -> str:
        """Option ``name`` as a str (``default`` when absent); marks it as read."""
        value = self._left.pop(name, default)
        return value if isinstance(value, str) else str(value)

    def optional_text(self, name: str) -> str | None:
        """Option ``name`` as a str, or None when absent."""
        value = self._left.pop(name, None)
        return None if value is None else str(value)

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        """A whole number of at least ``minimum``; ConfigurationError otherwise."""
        value = self._left.pop(name, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self._bad(name, value, "a whole number") from None
        if number < minimum:
            raise self._bad(name, value, f"at least {minimum}")
        return number

    def optional_integer(self, name: str, *, minimum: int = 0) -> int | None:
        return None if name not in self._left else self.integer(name, 0, minimum=minimum)

    def seconds(self, name: str, default: float) -> float:
        """A finite positive number of seconds (a timeout); ConfigurationError otherwise."""
        value = self._left.pop(name, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._bad(name, value, "a number of seconds") from None
        if not math.isfinite(number) or number <= 0:
            raise self._bad(name, value, "a positive number of seconds")
        return number

    def flag(self, name: str, default: bool) -> bool:
        """1/true/yes/on or 0/false/no/off (any case); ConfigurationError otherwise."""
        value = self._left.pop(name, default)
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise self._bad(name, value, "true or false")

    def take(self, name: str) -> Any:
        """A non-string option passed as a keyword (an existing client, say)."""
        return self._left.pop(name, None)

    def done(self) -> None:
        """Raise ConfigurationError naming every option nobody read: a misspelt
        option must never be ignored silently. Call it after the last read."""
        if self._left:
            if any(_secret_option(name) for name in self._url.options):
                # an unencoded '&' in a password option's value starts a new "option"
                # holding the rest of the password: the names are not shown
                raise ConfigurationError(
                    f"{len(self._left)} unknown option(s) for {self._url.scheme}:// (names "
                    "not shown: this URL holds a secret option, and an unencoded '&' in its "
                    "value would make the rest of it an option name; percent-encode it as %26)"
                )
            names = ", ".join(sorted(self._left))
            raise ConfigurationError(f"unknown option(s) for {self._url.scheme}://: {names}")

    def _bad(self, name: str, value: object, expected: str) -> ConfigurationError:
        shown = "***" if _secret_option(name) else repr(value)
        return ConfigurationError(f"option {name}={shown} must be {expected}")


@runtime_checkable
class Backend(Protocol):
    """What an ``authstore.backends`` entry point names: cheap to import, no driver import."""

    name: str

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        """Return a store of ``kind``; raise UnsupportedOperationError for a kind it lacks."""

    def migrate(self, url: StoreURL) -> list[str]:
        """Create or upgrade what the stores need; return what was done."""

    # Optional methods, each its own protocol: ``NamespaceCleaner`` (clear_namespace,
    # count_namespace) and ``UnreachableTwin`` (unreachable_url).


@runtime_checkable
class NamespaceCleaner(Protocol):
    """Optional backend methods: ``authstore check`` clears each test's namespace with them.

    A backend object that has both lets ``authstore check`` remove what every test
    wrote and report the count left behind (which must be 0). Both are synchronous,
    administrative calls: open what they need from ``url`` and close it again.
    """

    def clear_namespace(self, url: StoreURL, namespace: str) -> None:
        """Delete every entry of every store under ``namespace`` at ``url``."""

    def count_namespace(self, url: StoreURL, namespace: str) -> int:
        """How many entries (rows, keys, documents) ``namespace`` holds at ``url``."""


@runtime_checkable
class UnreachableTwin(Protocol):
    """Optional backend method: how ``authstore check`` proves fail-closed on a deployment.

    The contract's fail-closed tests open stores on a URL that is the deployment's
    twin in every option but cannot be reached, and require every security read there
    to raise BackendUnavailableError. A backend without this method leaves them
    untested unless the operator passes ``authstore check --unreachable-url``.
    """

    def unreachable_url(self, url: StoreURL) -> StoreURL | None:
        """A URL like ``url`` (same options and credentials) whose stores open without
        I/O but whose every operation fails as an outage would: for a network backend,
        ``loopback_twin(url)``. None declares that the backend does no I/O (its data
        lives in the process), so it cannot be down and fail-closed does not apply.
        Raise UnsupportedOperationError, saying why, when no twin of ``url`` exists."""


def loopback_twin(url: StoreURL, **options: str) -> StoreURL:
    """``url`` with each host replaced by 127.0.0.1 on a port found closed just now
    (connections are refused at once), user, password, path and options kept;
    ``options`` are added (a short timeout, say)."""
    ports: list[int] = []
    while len(ports) < max(1, len(url.hosts)):
        port = _closed_port()
        if port not in ports:
            ports.append(port)
    hosts = tuple(("127.0.0.1", port) for port in ports)
    twin = StoreURL(url.scheme, hosts, url.username, url.password, url.path, url.options)
    return twin.with_options(options)


def _closed_port() -> int:
    """A loopback port nothing listens on, below Linux's ephemeral range (32768 and up):
    a client's own source port can then never be it (a TCP self-connect would answer)."""
    for _ in range(100):
        port = 20000 + secrets.randbelow(12768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: someone may listen there
            return port
    raise OSError("no free loopback port found between 20000 and 32767")


def unreachable_url(url: str | StoreURL) -> StoreURL | None:
    """The backend's unreachable twin of ``url`` (see ``UnreachableTwin``); None when the
    backend does no I/O. UnsupportedOperationError says why there is none."""
    backend, parsed = backend_for(url)
    if not isinstance(backend, UnreachableTwin):
        raise UnsupportedOperationError(
            f"the {parsed.scheme}:// backend declares no unreachable_url()"
        )
    return backend.unreachable_url(parsed)


def require_module(module: str, backend: str, extra: str) -> Any:
    """Import a driver, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and not module.startswith(error.name) and error.name != module:
            raise
        raise MissingDriverError(backend, extra, module) from error


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, tuple[str, str]] | None = None
        self._loaded: dict[str, Backend] = {}

    def targets(self) -> dict[str, tuple[str, str]]:
        """scheme -> (entry point value, who declared it)."""
        with self._lock:
            if self._targets is None:
                self._targets = self._discover()
            return self._targets

    @staticmethod
    def _discover() -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {
            scheme: (target, "authstore") for scheme, target in _builtin_schemes().items()
        }
        from importlib.metadata import entry_points  # ~25 ms: only when a URL is opened

        for point in entry_points(group=ENTRY_POINT_GROUP):
            owner = point.dist.name if point.dist is not None else "an unknown distribution"
            scheme = point.name.lower()
            previous = found.get(scheme)
            if previous is not None and previous[0] != point.value:
                raise SchemeConflictError(
                    f"URL scheme {scheme!r} is claimed by both {previous[1]} ({previous[0]}) "
                    f"and {owner} ({point.value}); uninstall one of them"
                )
            found[scheme] = (point.value, owner)
        return found

    def register(self, scheme: str, backend: Backend | str, owner: str) -> None:
        scheme = scheme.lower()
        targets = self.targets()
        with self._lock:
            if scheme in targets or scheme in self._loaded:
                claimed = targets.get(scheme, ("", "register_backend"))[1]
                raise SchemeConflictError(f"URL scheme {scheme!r} is already claimed by {claimed}")
            if isinstance(backend, str):
                targets[scheme] = (backend, owner)
            else:
                targets[scheme] = (f"{type(backend).__module__}:<object>", owner)
                self._loaded[scheme] = backend

    def unregister(self, scheme: str) -> None:
        with self._lock:
            if self._targets is not None:
                self._targets.pop(scheme, None)
            self._loaded.pop(scheme, None)

    def get(self, scheme: str) -> Backend:
        targets = self.targets()
        if scheme in self._loaded:
            return self._loaded[scheme]
        if scheme not in targets:
            raise UnknownSchemeError(scheme, list(targets))
        module_name, _, attribute = targets[scheme][0].partition(":")
        backend: Backend = getattr(importlib.import_module(module_name), attribute)
        with self._lock:
            self._loaded.setdefault(scheme, backend)
        return backend


def _builtin_schemes() -> dict[str, str]:
    return dict(BUILTIN_BACKENDS)


_registry = _Registry()


def known_schemes() -> list[str]:
    return sorted(_registry.targets())


def register_backend(
    scheme: str, backend: Backend | str, *, owner: str = "register_backend"
) -> None:
    """Add a scheme at run time (tests, plugins without packaging); conflicts are errors."""
    _registry.register(scheme, backend, owner)


def unregister_backend(scheme: str) -> None:
    """Forget a scheme registered with ``register_backend`` (tests, plugins reloading)."""
    _registry.unregister(scheme.lower())


def backend_for(url: str | StoreURL) -> tuple[Backend, StoreURL]:
    parsed = StoreURL.parse(url)
    return _registry.get(parsed.scheme), parsed


CONNECT_MODES = ("lazy", "eager")


def connect_eagerly(url: StoreURL) -> tuple[StoreURL, bool]:
    """Take the ``connect`` option (``lazy``, the default, or ``eager``) out of ``url``:
    every backend honours it the same way, so none of them reads it."""
    mode = url.options.get("connect", "lazy")
    if mode not in CONNECT_MODES:
        shown = mode if isinstance(mode, str) else type(mode).__name__
        raise ConfigurationError(f"option connect={shown!r} must be lazy or eager")
    if "connect" not in url.options:
        return url, False
    options = {name: value for name, value in url.options.items() if name != "connect"}
    return StoreURL(url.scheme, url.hosts, url.username, url.password, url.path, options), (
        mode == "eager"
    )


def _open(
    url: str | StoreURL, kind: StoreKind, asynchronous: bool, options: Mapping[str, Any]
) -> Any:
    """A store of ``kind``; with ``connect=eager`` a sync store pings here (closing itself
    if that fails) and an async one when ``async with`` enters it."""
    backend, parsed = backend_for(url)
    parsed, eager = connect_eagerly(parsed.with_options(options))
    store = backend.open(parsed, kind, asynchronous=asynchronous)
    if not eager:
        return store
    if asynchronous:
        if not hasattr(store, "connect_on_enter"):
            raise ConfigurationError(
                f"{parsed.redacted()}: this backend's async stores cannot connect eagerly; "
                "await store.ping() at startup instead"
            )
        store.connect_on_enter = True
        return store
    try:
        store.ping()
    except BaseException:
        store.close()
        raise
    return store


def open_store(
    url: str | StoreURL, kind: StoreKind, *, asynchronous: bool = False, **options: Any
) -> Any:
    """A store of ``kind`` in either mode, for code that picks both at run time (the
    framework integrations); ``open_cache`` and the other typed openers are this."""
    return _open(url, kind, asynchronous, options)


def open_cache(url: str | StoreURL, **options: Any) -> CacheStore:
    """``open_cache("redis://localhost:6379/0", namespace="myapp")``; keywords override query options."""
    store: CacheStore = _open(url, StoreKind.CACHE, False, options)
    return store


def open_async_cache(url: str | StoreURL, **options: Any) -> AsyncCacheStore:
    store: AsyncCacheStore = _open(url, StoreKind.CACHE, True, options)
    return store


def open_sessions(url: str | StoreURL, **options: Any) -> SessionStore:
    store: SessionStore = _open(url, StoreKind.SESSIONS, False, options)
    return store


def open_async_sessions(url: str | StoreURL, **options: Any) -> AsyncSessionStore:
    store: AsyncSessionStore = _open(url, StoreKind.SESSIONS, True, options)
    return store


def open_totp(url: str | StoreURL, **options: Any) -> TotpStore:
    store: TotpStore = _open(url, StoreKind.TOTP, False, options)
    return store


def open_async_totp(url: str | StoreURL, **options: Any) -> AsyncTotpStore:
    store: AsyncTotpStore = _open(url, StoreKind.TOTP, True, options)
    return store


def open_magic_links(url: str | StoreURL, **options: Any) -> MagicLinkStore:
    store: MagicLinkStore = _open(url, StoreKind.MAGIC_LINKS, False, options)
    return store


def open_async_magic_links(url: str | StoreURL, **options: Any) -> AsyncMagicLinkStore:
    store: AsyncMagicLinkStore = _open(url, StoreKind.MAGIC_LINKS, True, options)
    return store


def migrate(url: str | StoreURL) -> list[str]:
    """Create or upgrade the schema behind a URL (what ``authstore migrate`` runs)."""
    backend, parsed = backend_for(url)
    return backend.migrate(parsed)
