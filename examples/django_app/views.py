"""The login service's views: async, JSON in and out, over ``authflows``."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from authflows import AuthError, Claims, Login, MfaRequired, enrolment, page
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from authstore import BackendUnavailableError, SessionRecord
from django_app.stores import get_auth

COOKIE = "session"
View = Callable[..., Coroutine[Any, Any, HttpResponse]]


# -- glue: error answers (authstore.integrations.django will provide the 503 one) ---------


def endpoint(method: str) -> Callable[[View], View]:
    """One HTTP method; AuthError and a store that is down become JSON error answers."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method:
                return JsonResponse({"detail": "method not allowed"}, status=405)
            try:
                return await view(request, *args, **kwargs)
            except AuthError as error:
                status, detail, headers = error.status, error.detail, error.headers
            except BackendUnavailableError:  # fail closed: no answer rather than "valid"
                status, detail, headers = 503, "try again later", {"Retry-After": "5"}
            response = JsonResponse({"detail": detail}, status=status)
            for name, value in headers.items():
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


# -- end of glue ----------------------------------------------------------------------


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


async def session(request: HttpRequest) -> SessionRecord:
    return await get_auth().check_session(request.COOKIES.get(COOKIE))


async def bearer(request: HttpRequest) -> Claims:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    return await get_auth().check_token(token)


def signed_in(login: Login) -> JsonResponse:
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
        max_age=int(get_auth().settings.session_ttl),
        httponly=True,
        secure=settings.AUTH_COOKIE_SECURE,
        samesite="Lax",
    )
    return response


@endpoint("POST")
async def request_link(request: HttpRequest) -> HttpResponse:
    (email,) = body(request, "email")
    await get_auth().request_link(email, *client(request))
    return JsonResponse({"sent": True}, status=202)


# [readme:django-verify]
@endpoint("POST")
async def verify_link(request: HttpRequest) -> HttpResponse:
    (token,) = body(request, "token")
    result = await get_auth().verify_link(token, *client(request))
    if isinstance(result, MfaRequired):
        return JsonResponse({"mfa_required": True, "mfa_token": result.mfa_token})
    return signed_in(result)


# [/readme:django-verify]


@endpoint("POST")
async def second_factor(request: HttpRequest) -> HttpResponse:
    mfa_token, code = body(request, "mfa_token", "code")
    return signed_in(await get_auth().second_factor(mfa_token, code, *client(request)))


@endpoint("POST")
async def refresh(request: HttpRequest) -> HttpResponse:
    access_token = get_auth().access_token(await session(request))
    return JsonResponse({"access_token": access_token, "token_type": "bearer"})


@endpoint("GET")
async def whoami(request: HttpRequest) -> HttpResponse:
    current = await session(request)
    return JsonResponse({"user_id": current.user_id, "session_id": current.id})


@endpoint("GET")
async def me(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user_id": (await bearer(request)).user_id})


@endpoint("GET")
async def devices(request: HttpRequest) -> HttpResponse:
    return JsonResponse(await get_auth().devices(await session(request)), safe=False)


@endpoint("DELETE")
async def revoke_device(request: HttpRequest, session_id: str) -> HttpResponse:
    if not await get_auth().revoke_device(await session(request), session_id):
        raise AuthError(404, "no such session")
    return JsonResponse({"revoked": True})


@endpoint("POST")
async def revoke_others(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"revoked": await get_auth().revoke_other_devices(await session(request))})


@endpoint("POST")
async def enrol(request: HttpRequest) -> HttpResponse:
    return JsonResponse(enrolment(*await get_auth().enrol((await session(request)).user_id)))


@endpoint("POST")
async def confirm(request: HttpRequest) -> HttpResponse:
    current = await session(request)
    (code,) = body(request, "code")
    return JsonResponse({"backup_codes": await get_auth().confirm(current.user_id, code)})


@endpoint("POST")
async def logout(request: HttpRequest) -> HttpResponse:
    await get_auth().logout(await bearer(request))
    response = JsonResponse({"logged_out": True})
    response.delete_cookie(COOKIE)
    return response


@endpoint("POST")
async def logout_everywhere(request: HttpRequest) -> HttpResponse:
    revoked = await get_auth().logout_everywhere((await bearer(request)).user_id)
    response = JsonResponse({"sessions_revoked": revoked})
    response.delete_cookie(COOKIE)
    return response


@endpoint("GET")
async def html_front(request: HttpRequest) -> HttpResponse:
    """The HTML front (shared with the FastAPI example); the link lands on ``/sign-in``."""
    return HttpResponse(page(), content_type="text/html; charset=utf-8")
