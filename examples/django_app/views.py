"""The login service's views: async, JSON in and out, over ``authflows``."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from authflows import Auth, AuthError, Claims, Login, MfaRequired, enrolment, page
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from authstore import SessionRecord
from django_app.stores import get_auth

COOKIE = "session"
View = Callable[..., Coroutine[Any, Any, HttpResponse]]


def endpoint(method: str, limit_per_ip: bool = False) -> Callable[[View], View]:
    """One HTTP method; the view gets the flows as ``auth``. An AuthError becomes a JSON
    answer; a store that is down raises BackendUnavailableError, which the integration's
    middleware answers 503 with Retry-After (fail closed: the view did not finish).

    ``limit_per_ip``: count the request against ``Settings.ip_limit`` of its client IP,
    one budget for requesting and verifying links. authstore's Django integration has
    no rate-limit decorator, so this is the app's own ``check_rate_limit`` call.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method:
                return JsonResponse({"detail": "method not allowed"}, status=405)
            try:
                auth = get_auth()
                if limit_per_ip:
                    await auth.limit(f"ip:{client(request)[0]}", auth.settings.ip_limit)
                return await view(request, auth, *args, **kwargs)
            except AuthError as error:
                response = JsonResponse({"detail": error.detail}, status=error.status)
                for name, value in error.headers.items():
                    response[name] = value
                return response

        return wrapper

    return decorate


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return JsonResponse({"detail": "not found"}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"detail": "internal server error"}, status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return JsonResponse({"detail": "bad request"}, status=400)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return JsonResponse({"detail": "forbidden"}, status=403)


def body(request: HttpRequest, *names: str) -> list[str]:
    try:
        data = json.loads(request.body or b"{}")
        values = [data[name] for name in names]
    except (ValueError, KeyError, TypeError):
        raise AuthError(422, f"a JSON body with {', '.join(names)} is required") from None
    if not all(isinstance(value, str) for value in values):
        raise AuthError(422, "strings expected")
    return values


def client(request: HttpRequest) -> tuple[str, str | None]:
    return request.META.get("REMOTE_ADDR") or "unknown", request.headers.get("user-agent")


async def session(request: HttpRequest, auth: Auth) -> SessionRecord:
    return await auth.check_session(request.COOKIES.get(COOKIE))


async def bearer(request: HttpRequest, auth: Auth) -> Claims:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    return await auth.check_token(token)


def signed_in(login: Login, auth: Auth) -> JsonResponse:
    response = JsonResponse(
        {
            "user_id": login.user_id,
            "session_id": login.session_id,
            "access_token": login.access_token,
            "token_type": "bearer",
        }
    )
    response.set_cookie(
        COOKIE,
        login.session_token,
        max_age=int(auth.settings.session_ttl),
        httponly=True,
        secure=settings.AUTH_COOKIE_SECURE,
        samesite="Lax",
    )
    return response


@endpoint("POST", limit_per_ip=True)
async def request_link(request: HttpRequest, auth: Auth) -> HttpResponse:
    (email,) = body(request, "email")
    await auth.request_link(email, *client(request))
    return JsonResponse({"sent": True}, status=202)


# [readme:django-verify]
@endpoint("POST", limit_per_ip=True)
async def verify_link(request: HttpRequest, auth: Auth) -> HttpResponse:
    (token,) = body(request, "token")
    result = await auth.verify_link(token, *client(request))
    if isinstance(result, MfaRequired):
        return JsonResponse({"mfa_required": True, "mfa_token": result.mfa_token})
    return signed_in(result, auth)


# [/readme:django-verify]


@endpoint("POST")
async def second_factor(request: HttpRequest, auth: Auth) -> HttpResponse:
    mfa_token, code = body(request, "mfa_token", "code")
    return signed_in(await auth.second_factor(mfa_token, code, *client(request)), auth)


@endpoint("POST")
async def refresh(request: HttpRequest, auth: Auth) -> HttpResponse:
    access_token = auth.access_token(await session(request, auth))
    return JsonResponse({"access_token": access_token, "token_type": "bearer"})


@endpoint("GET")
async def whoami(request: HttpRequest, auth: Auth) -> HttpResponse:
    current = await session(request, auth)
    return JsonResponse({"user_id": current.user_id, "session_id": current.id})


@endpoint("GET")
async def me(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse({"user_id": (await bearer(request, auth)).user_id})


@endpoint("GET")
async def devices(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse(await auth.devices(await session(request, auth)), safe=False)


@endpoint("DELETE")
async def revoke_device(request: HttpRequest, auth: Auth, session_id: str) -> HttpResponse:
    if not await auth.revoke_device(await session(request, auth), session_id):
        raise AuthError(404, "no such session")
    return JsonResponse({"revoked": True})


@endpoint("POST")
async def revoke_others(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse({"revoked": await auth.revoke_other_devices(await session(request, auth))})


@endpoint("POST")
async def enrol(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse(enrolment(*await auth.enrol((await session(request, auth)).user_id)))


@endpoint("POST")
async def confirm(request: HttpRequest, auth: Auth) -> HttpResponse:
    current = await session(request, auth)
    (code,) = body(request, "code")
    return JsonResponse({"backup_codes": await auth.confirm(current.user_id, code)})


@endpoint("POST")
async def logout(request: HttpRequest, auth: Auth) -> HttpResponse:
    await auth.logout(await bearer(request, auth))
    response = JsonResponse({"logged_out": True})
    response.delete_cookie(COOKIE)
    return response


@endpoint("POST")
async def logout_everywhere(request: HttpRequest, auth: Auth) -> HttpResponse:
    revoked = await auth.logout_everywhere((await bearer(request, auth)).user_id)
    response = JsonResponse({"sessions_revoked": revoked})
    response.delete_cookie(COOKIE)
    return response


@endpoint("GET")
async def html_front(request: HttpRequest, auth: Auth) -> HttpResponse:
    """The HTML front (shared with the FastAPI example); the link lands on ``/sign-in``."""
    return HttpResponse(page(), content_type="text/html; charset=utf-8")
