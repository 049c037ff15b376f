"""authstore in FastAPI (and any Starlette app): an atomic rate-limit dependency, the
error handlers that keep failures closed, and a lifespan that opens the async stores.

::

    app = FastAPI(lifespan=authstore_lifespan("redis://localhost:6379/0"))
    add_exception_handlers(app)

    @app.post("/login", dependencies=[Depends(RateLimit("5/minute;100/day", key=by_client_ip))])
    async def login() -> dict[str, str]: ...

Only async stores are used (never a thread per store call). A limiter whose backend
is down answers 503: the request never goes through unchecked.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authstore.contracts.errors import AuthStoreError, BackendUnavailableError, ConfigurationError
from authstore.contracts.records import RateLimitAlgorithm, RateLimitResult, StoreKind
from authstore.integrations._stores import (
    ALL_KINDS,
    StoreSet,
    open_async_store_set,
    probe,
    run_async,
    specs_for,
)
from authstore.limits import Limit, LimitsLike, parse_limits

__all__ = [
    "HeaderStyle",
    "RateLimit",
    "RateLimitExceeded",
    "add_exception_handlers",
    "authstore_lifespan",
    "by_client_ip",
    "open_app_stores",
    "rate_limit_headers",
]

log = logging.getLogger("authstore.integrations.fastapi")

HeaderStyle = Literal["ietf", "x-ratelimit"] | None
"""``"ietf"``: ``RateLimit-Limit``/``-Remaining``/``-Reset`` (the IETF draft; Reset in
seconds from now); ``"x-ratelimit"``: ``X-RateLimit-*`` (Reset as a Unix time, as GitHub
and slowapi send it); None: no rate-limit headers (``Retry-After`` on 429 stays)."""

STATE_NAME = "authstore"
KeyFunction = Callable[[Request], str | Awaitable[str]]
CostFunction = Callable[[Request], int | Awaitable[int]]
MAX_PLAIN_KEY = 200
"""Longer client keys (a header, say) are kept as their SHA-256: a cache key is bounded."""


def by_client_ip(request: Request) -> str:
    """The peer address as the ASGI server saw it. Behind a proxy, run the server with
    its forwarded-headers option (uvicorn ``--forwarded-allow-ips``) so this is the client."""
    return request.client.host if request.client else "unknown"


def _seconds(value: float) -> int:
    """Whole seconds, rounded up: a client that waits this long is not refused again."""
    return max(0, math.ceil(value))


def rate_limit_headers(result: RateLimitResult, style: HeaderStyle = "ietf") -> dict[str, str]:
    """The headers of one answer of the limiter; ``Retry-After`` when it refused."""
    headers: dict[str, str] = {}
    if style == "ietf":
        headers["RateLimit-Limit"] = str(result.limit)
        headers["RateLimit-Remaining"] = str(result.remaining)
        headers["RateLimit-Reset"] = str(_seconds(result.reset_after))
    elif style == "x-ratelimit":
        headers["X-RateLimit-Limit"] = str(result.limit)
        headers["X-RateLimit-Remaining"] = str(result.remaining)
        headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + result.reset_after))
    elif style is not None:
        raise ValueError(f"headers must be 'ietf', 'x-ratelimit' or None, not {style!r}")
    if not result.allowed:
        headers["Retry-After"] = str(max(1, _seconds(result.retry_after)))
    return headers


class RateLimitExceeded(HTTPException):
    """429 with the limiter's headers (``Retry-After`` in whole seconds, rounded up).
    A Starlette HTTPException, so FastAPI's default handler answers it as JSON."""

    def __init__(self, result: RateLimitResult, headers: dict[str, str]) -> None:
        super().__init__(429, "rate limit exceeded", headers)
        self.result = result


class RateLimit:
    """A dependency that counts one hit against ``limits`` for the request's key, atomically.

    ``limits``: ``"10/minute"``, ``"100/day;10/minute"`` (all apply; the headers describe
    the binding one), a Limit or a list. ``key``: a function of the Request (sync or
    async) naming the client, ``by_client_ip`` by default. ``cost``: what one request
    weighs (an int, or a function of the Request). ``scope``: the counter's name, by
    default the route (method and path template); give two routes one scope to share a
    budget. ``headers``: see ``HeaderStyle``. ``cache``: an async cache store, or a
    function of the Request returning one; by default ``request.app.state.authstore.cache``
    (``authstore_lifespan`` puts it there).

    A refused hit raises ``RateLimitExceeded`` (429) and consumes nothing. The backend
    being down raises ``BackendUnavailableError``, which ``add_exception_handlers`` maps
    to 503: the request is never let through unchecked.

    As a FastAPI dependency the headers go on the response FastAPI builds; an endpoint
    that returns a Response itself adds ``rate_limit_headers(result)`` on its own.
    """

    def __init__(
        self,
        limits: LimitsLike,
        *,
        key: KeyFunction = by_client_ip,
        cost: int | CostFunction = 1,
        scope: str | None = None,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.FIXED_WINDOW,
        headers: HeaderStyle = "ietf",
        cache: Any = None,
    ) -> None:
        self.limits: tuple[Limit, ...] = parse_limits(limits, algorithm)
        if not callable(key):
            raise TypeError(f"key must be a function of the Request, not {type(key).__name__}")
        if not callable(cost) and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 1):
            raise ValueError(f"cost must be a positive int or a function, not {cost!r}")
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise ValueError("scope must be a non-empty str")
        if headers not in ("ietf", "x-ratelimit", None):
            raise ValueError(f"headers must be 'ietf', 'x-ratelimit' or None, not {headers!r}")
        self.key = key
        self.cost = cost
        self.scope = scope
        self.headers: HeaderStyle = headers
        self._cache = cache

    async def __call__(self, request: Request, response: Response) -> RateLimitResult:
        result = await self.hit(request)
        response.headers.update(rate_limit_headers(result, self.headers))
        return result

    async def hit(self, request: Request) -> RateLimitResult:
        """Count this request; raise RateLimitExceeded when refused (for Starlette apps
        without dependencies: call it, then add ``rate_limit_headers(result)``)."""
        key = await self.counter_key(request)
        cost = await _value(self.cost(request)) if callable(self.cost) else self.cost
        cache = self.cache_of(request)
        if len(self.limits) == 1:
            only = self.limits[0]
            result: RateLimitResult = await cache.check_rate_limit(
                key, only.limit, only.window, cost, only.algorithm
            )
        else:
            several = getattr(cache, "check_rate_limits", None)
            if several is None:
                raise ConfigurationError(
                    f"{type(cache).__name__} cannot check several limits in one step "
                    "(check_rate_limits)"
                )
            result = await several(key, self.limits, cost)
        if not result.allowed:
            raise RateLimitExceeded(result, rate_limit_headers(result, self.headers))
        return result

    async def counter_key(self, request: Request) -> str:
        client = await _value(self.key(request))
        if not isinstance(client, str):
            raise TypeError(f"the key function returned {type(client).__name__}, not str")
        scope = self.scope or _route_scope(request)
        key = f"ratelimit:{scope}:{client}"
        if len(key.encode("utf-8", "surrogatepass")) > MAX_PLAIN_KEY:
            digest = hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()
            key = f"ratelimit:{hashlib.sha256(scope.encode()).hexdigest()}:{digest}"
        return key

    def cache_of(self, request: Request) -> Any:
        if self._cache is None:
            stores = getattr(request.app.state, STATE_NAME, None)
            cache = getattr(stores, "cache", None)
            if cache is None:
                raise ConfigurationError(
                    "no authstore cache on app.state: open it with authstore_lifespan(url) "
                    "or give RateLimit(cache=...)"
                )
            return cache
        if callable(self._cache) and not hasattr(self._cache, "check_rate_limit"):
            return self._cache(request)
        return self._cache


def _route_scope(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    return f"{request.method} {path}"


async def _value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- errors --------------------------------------------------------------------------------


def add_exception_handlers(app: Any, *, retry_after: int = 5) -> None:
    """``BackendUnavailableError`` becomes 503 with ``Retry-After: retry_after``; any other
    authstore error (a configuration error, an unexpected backend answer) 500. Neither
    body says more than that: the details (redacted URLs included) go to the log."""
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
        raise ValueError(f"retry_after must be a positive int of seconds, not {retry_after!r}")

    async def unavailable(request: Request, error: Exception) -> Response:
        log.warning("authstore backend unavailable: %s", error)
        return JSONResponse(
            {"detail": "service temporarily unavailable"},
            503,
            headers={"Retry-After": str(retry_after)},
        )

    async def failed(request: Request, error: Exception) -> Response:
        log.error("authstore error: %s: %s", type(error).__name__, error)
        return JSONResponse({"detail": "internal server error"}, 500)

    app.add_exception_handler(BackendUnavailableError, unavailable)
    app.add_exception_handler(AuthStoreError, failed)


# -- lifespan ------------------------------------------------------------------------------


@asynccontextmanager
async def open_app_stores(
    url: str,
    *,
    stores: Iterable[StoreKind | str] = ALL_KINDS,
    check: bool = True,
    **options: Any,
) -> AsyncIterator[StoreSet]:
    """The async stores of ``url`` (``stores``: which kinds; memcached has only the
    cache), checked with a cheap read each when ``check``, closed on exit."""
    kinds = [StoreKind(kind) for kind in stores]
    opened = open_async_store_set(specs_for(url, kinds, options))
    try:
        if check:
            for kind, store in opened.opened():
                await run_async(probe(kind), store)
        yield opened
    finally:
        await opened.aclose()


def authstore_lifespan(
    url: str,
    *,
    stores: Iterable[StoreKind | str] = ALL_KINDS,
    check: bool = True,
    **options: Any,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """``FastAPI(lifespan=authstore_lifespan(url))``: opens the stores at startup (a
    backend that does not answer stops the startup), puts them on ``app.state.authstore``
    (``.cache``, ``.sessions``, ``.totp``, ``.magic_links``) and closes them at shutdown.
    With a lifespan of your own, use ``open_app_stores`` inside it."""
    kinds = [StoreKind(kind) for kind in stores]
    specs_for(url, kinds, options)  # a bad URL or option type fails here, not at startup

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with open_app_stores(url, stores=kinds, check=check, **options) as opened:
            setattr(app.state, STATE_NAME, opened)
            try:
                yield
            finally:
                setattr(app.state, STATE_NAME, None)

    return lifespan
