"""A passwordless-plus-2FA login service on FastAPI and authstore's async stores.

How to install and run it: ``examples/README.md``. ``GET /`` is a small HTML front over
the JSON routes; the sign-in mail goes to the console unless ``AUTH_MAIL=smtp``
(``fastapi_app/mail.py``). JSON routes: ``POST /auth/magic-link`` (mail a link, rate-limited: 429 with Retry-After),
``POST /auth/magic-link/verify`` (single use: a session cookie and an access token, or
an ``mfa_token``), ``POST /auth/2fa/verify`` (TOTP or backup code), ``POST /auth/token``
(a new access token for the cookie's session), ``GET /session``, ``GET /me`` (bearer),
``GET /sessions``, ``DELETE /sessions/{id}``, ``POST /sessions/revoke-others``,
``POST /2fa/enrol``, ``POST /2fa/confirm``, ``POST /logout``, ``POST /logout-everywhere``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from authflows import (
    Auth,
    AuthError,
    Claims,
    Login,
    Mailer,
    MfaRequired,
    Settings,
    Stores,
    enrolment,
    page,
)
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from authstore import RateLimitResult, SessionRecord
from authstore.integrations.fastapi import RateLimit, add_exception_handlers, open_app_stores
from authstore.limits import Limit
from fastapi_app.mail import mailer_from_env

COOKIE = "session"
router = APIRouter()


async def auth_error(request: Request, error: AuthError) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, error.status, headers=error.headers)


async def server_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": "internal server error"}, 500)


def add_error_answers(app: FastAPI) -> None:
    """Every error is a JSON ``{"detail": ...}``: FastAPI's own 404/405/422 already are,
    and ``add_exception_handlers`` answers 503 for a store that is down (fail closed:
    no answer is better than "not revoked" from a store that could not be asked)."""
    app.add_exception_handler(AuthError, auth_error)  # type: ignore[arg-type]
    add_exception_handlers(app)
    app.add_exception_handler(Exception, server_error)


def auth(request: Request) -> Auth:
    result: Auth = request.app.state.auth
    return result


def client(request: Request) -> tuple[str, str | None]:
    return (request.client.host if request.client else "unknown"), request.headers.get("user-agent")


async def session(request: Request) -> SessionRecord:
    return await auth(request).check_session(request.cookies.get(COOKIE))


async def bearer(request: Request) -> Claims:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    return await auth(request).check_token(token)


async def per_client_ip(request: Request, response: Response) -> RateLimitResult:
    """``Settings.ip_limit``: one budget per client IP for requesting and verifying links."""
    limiter: RateLimit = request.app.state.ip_limit
    return await limiter(request, response)


Session = Annotated[SessionRecord, Depends(session)]
Bearer = Annotated[Claims, Depends(bearer)]
PerClientIp = Depends(per_client_ip)


def signed_in(request: Request, response: Response, login: Login) -> dict[str, Any]:
    settings = auth(request).settings
    response.set_cookie(
        COOKIE,
        login.session_token,
        max_age=int(settings.session_ttl),
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
    )
    return {
        "user_id": login.user_id,
        "session_id": login.session_id,
        "access_token": login.access_token,
        "token_type": "bearer",
    }


class EmailIn(BaseModel):
    email: str


class TokenIn(BaseModel):
    token: str


class CodeIn(BaseModel):
    code: str


class SecondFactorIn(BaseModel):
    mfa_token: str
    code: str


@router.post("/auth/magic-link", status_code=202, dependencies=[PerClientIp])
async def request_link(body: EmailIn, request: Request) -> dict[str, bool]:
    await auth(request).request_link(body.email, *client(request))
    return {"sent": True}


# [readme:fastapi-verify]
@router.post("/auth/magic-link/verify", dependencies=[PerClientIp])
async def verify_link(body: TokenIn, request: Request, response: Response) -> dict[str, Any]:
    result = await auth(request).verify_link(body.token, *client(request))
    if isinstance(result, MfaRequired):
        return {"mfa_required": True, "mfa_token": result.mfa_token}
    return signed_in(request, response, result)


# [/readme:fastapi-verify]


@router.post("/auth/2fa/verify")
async def second_factor(
    body: SecondFactorIn, request: Request, response: Response
) -> dict[str, Any]:
    login = await auth(request).second_factor(body.mfa_token, body.code, *client(request))
    return signed_in(request, response, login)


@router.post("/auth/token")
async def refresh(current: Session, request: Request) -> dict[str, str]:
    return {"access_token": auth(request).access_token(current), "token_type": "bearer"}


@router.get("/session")
async def whoami(current: Session) -> dict[str, str]:
    return {"user_id": current.user_id, "session_id": current.id}


@router.get("/me")
async def me(claims: Bearer) -> dict[str, str]:
    return {"user_id": claims.user_id}


@router.get("/sessions")
async def devices(current: Session, request: Request) -> list[dict[str, Any]]:
    return await auth(request).devices(current)


@router.delete("/sessions/{session_id}")
async def revoke_device(session_id: str, current: Session, request: Request) -> dict[str, bool]:
    if not await auth(request).revoke_device(current, session_id):
        raise AuthError(404, "no such session")
    return {"revoked": True}


@router.post("/sessions/revoke-others")
async def revoke_others(current: Session, request: Request) -> dict[str, int]:
    return {"revoked": await auth(request).revoke_other_devices(current)}


@router.post("/2fa/enrol")
async def enrol(current: Session, request: Request) -> dict[str, str]:
    return enrolment(*await auth(request).enrol(current.user_id))


@router.post("/2fa/confirm")
async def confirm(body: CodeIn, current: Session, request: Request) -> dict[str, list[str]]:
    return {"backup_codes": await auth(request).confirm(current.user_id, body.code)}


@router.post("/logout")
async def logout(claims: Bearer, request: Request, response: Response) -> dict[str, bool]:
    await auth(request).logout(claims)
    response.delete_cookie(COOKIE)
    return {"logged_out": True}


@router.post("/logout-everywhere")
async def logout_everywhere(claims: Bearer, request: Request, response: Response) -> dict[str, int]:
    revoked = await auth(request).logout_everywhere(claims.user_id)
    response.delete_cookie(COOKIE)
    return {"sessions_revoked": revoked}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def html_front() -> HTMLResponse:
    """The HTML front (shared with the Django example); the link lands on ``/sign-in``."""
    return HTMLResponse(page())


def create_app(settings: Settings | None = None, mailer: Mailer | None = None) -> FastAPI:
    """The app; ``settings`` default to the environment, ``mailer`` to ``AUTH_MAIL``."""
    settings = settings or Settings.from_env()
    mailer = mailer or mailer_from_env()

    # [readme:fastapi-lifespan]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one URL, four async stores, opened once; not probed at startup: while a store
        # is down the app starts and answers 503 until it is back
        async with open_app_stores(settings.authstore_url, check=False) as opened:
            app.state.authstore = opened  # where RateLimit finds the cache
            stores = Stores(opened.cache, opened.sessions, opened.totp, opened.magic_links)
            app.state.auth = Auth(settings, stores, mailer)
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.ip_limit = RateLimit(Limit(*settings.ip_limit), scope="ip")
    # [/readme:fastapi-lifespan]

    add_error_answers(app)
    app.include_router(router)
    return app
