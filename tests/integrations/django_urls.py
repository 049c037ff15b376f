"""Views of the Django tests: a login-like flow over ``request.session``, sync and async."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


def login(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()  # as django.contrib.auth.login does
    request.session["user"] = request.GET.get("user", "alice")
    return JsonResponse({"ok": True})


def whoami(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user": request.session.get("user")})


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({"ok": True})


async def alogin(request: HttpRequest) -> HttpResponse:
    await request.session.acycle_key()
    await request.session.aset("user", request.GET.get("user", "alice"))
    return JsonResponse({"ok": True})


async def awhoami(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user": await request.session.aget("user")})


async def acache(request: HttpRequest) -> HttpResponse:
    from django.core.cache import caches

    cache = caches["authstore"]
    await cache.aset("visits", 0, timeout=None) if not await cache.ahas_key("visits") else None
    return JsonResponse({"visits": await cache.aincr("visits")})


def stores_view(request: HttpRequest) -> HttpResponse:
    from authstore.integrations.django import get_stores

    return JsonResponse({"seen": get_stores().cache.exists("seen")})


async def astores_view(request: HttpRequest) -> HttpResponse:
    from authstore.integrations.django import aget_stores

    return JsonResponse({"seen": await (await aget_stores()).cache.exists("seen")})


urlpatterns = [
    path("stores", stores_view),
    path("astores", astores_view),
    path("login", login),
    path("whoami", whoami),
    path("logout", logout),
    path("alogin", alogin),
    path("awhoami", awhoami),
    path("acache", acache),
]
