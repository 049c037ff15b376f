"""The example apps as a user runs them: a real server process, real HTTP, a real store.

Each app is started with the README's command (uvicorn for FastAPI and for Django's
ASGI application, ``manage.py runserver`` for Django's development server) on a free
loopback port, over SQLite, PostgreSQL and Redis. The sign-in link is read from the
process's console output (the console mail backend), and every flow is driven with
httpx over TCP: link, landing page, session cookie over plain HTTP
(``AUTH_COOKIE_SECURE=0``), access token, TOTP enrolment with its QR code, sign-in with
a code, devices, revoking a device, JSON errors, 429 with Retry-After (wrong codes and
link requests).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pyotp
import pytest
from example_servers import Server, serve

RUNS = [
    ("fastapi", "sqlite"),
    ("fastapi", "postgres"),
    ("fastapi", "redis"),
    ("django-asgi", "sqlite"),
    ("django-asgi", "postgres"),
    ("django-asgi", "redis"),
    ("django-runserver", "sqlite"),  # the same views and stores, another server
]


def store_url_for(store: str, tmp_path: Path, server_url: Callable[[str], str]) -> str:
    """``AUTHSTORE_URL`` in a fresh namespace: a SQLite file, or a shared test server."""
    namespace = f"ex_{uuid.uuid4().hex[:12]}"
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}?namespace={namespace}"
    base = server_url(store)
    return f"{base}{'&' if '?' in base else '?'}namespace={namespace}"


def browser(server: Server, name: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"user-agent": name}, timeout=10)


def sign_in_link(server: Server, client: httpx.Client, email: str) -> str:
    response = client.post("/auth/magic-link", json={"email": email})
    assert response.status_code == 202, response.text
    link = server.link(email)
    assert link.startswith(f"{server.base_url}/sign-in#token=")
    return link.partition("#token=")[2]


@pytest.mark.parametrize(("app", "store"), RUNS)
def test_every_flow_over_http(
    app: str, store: str, tmp_path: Path, server_url: Callable[[str], str]
) -> None:
    user = "alice@example.com"
    with (
        serve(app, store_url_for(store, tmp_path, server_url)) as server,
        browser(server, "laptop") as laptop,
    ):
        missing = laptop.get("/no-such-route")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/json")
        assert "detail" in missing.json()
        wrong_method = laptop.delete("/auth/magic-link")
        assert wrong_method.status_code == 405 and "detail" in wrong_method.json()

        token = sign_in_link(server, laptop, user)
        landing = laptop.get("/sign-in")
        assert landing.status_code == 200 and "text/html" in landing.headers["content-type"]
        signed_in = laptop.post("/auth/magic-link/verify", json={"token": token})
        assert signed_in.status_code == 200, signed_in.text
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        assert laptop.get("/session").json()["user_id"] == user  # the cookie came back
        again = laptop.post("/auth/magic-link/verify", json={"token": token})
        assert again.status_code == 401  # single use

        access = laptop.post("/auth/token").json()["access_token"]
        me = laptop.get("/me", headers={"authorization": f"Bearer {access}"})
        assert me.json() == {"user_id": user}

        enrolled = laptop.post("/2fa/enrol").json()
        assert enrolled["otpauth_uri"].startswith("otpauth://totp/")
        assert enrolled["qr_svg"].startswith("data:image/svg+xml")
        totp, step = pyotp.TOTP(enrolled["secret"]), int(time.time()) // 30
        wrong = laptop.post("/2fa/confirm", json={"code": "not-a-code"})
        assert wrong.status_code == 401
        confirmed = laptop.post("/2fa/confirm", json={"code": totp.generate_otp(step)})
        assert confirmed.status_code == 200, confirmed.text
        assert len(confirmed.json()["backup_codes"]) == 10

        with browser(server, "phone") as phone:
            first = phone.post(
                "/auth/magic-link/verify", json={"token": sign_in_link(server, phone, user)}
            )
            assert first.json()["mfa_required"] is True and "access_token" not in first.json()
            code = totp.generate_otp(step + 1)  # the confirm spent the current step
            body = {"mfa_token": first.json()["mfa_token"], "code": code}
            second = phone.post("/auth/2fa/verify", json=body)
            assert second.status_code == 200, second.text
            phone_session = second.json()["session_id"]
            assert phone.get("/session").status_code == 200

            devices = laptop.get("/sessions").json()
            assert [d["user_agent"] for d in devices] == ["phone", "laptop"]
            assert [d["current"] for d in devices] == [False, True]
            assert laptop.delete(f"/sessions/{phone_session}").json() == {"revoked": True}
            assert phone.get("/session").status_code == 401
            assert laptop.delete(f"/sessions/{phone_session}").status_code == 404

        mfa = laptop.post(
            "/auth/magic-link/verify", json={"token": sign_in_link(server, laptop, user)}
        ).json()["mfa_token"]
        guesses = [
            laptop.post("/auth/2fa/verify", json={"mfa_token": mfa, "code": f"guess{i}"})
            for i in range(5)
        ]  # the default limit: 5 wrong codes per user per 5 minutes, the confirm's one included
        assert [g.status_code for g in guesses] == [401, 401, 401, 401, 429]
        assert 1 <= int(guesses[-1].headers["retry-after"]) <= 300

        for _ in range(5):  # the default limit: 5 links per address per 10 minutes
            sign_in_link(server, laptop, "bob@example.com")
        refused = laptop.post("/auth/magic-link", json={"email": "bob@example.com"})
        assert refused.status_code == 429 and refused.json()["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 600
    assert "Traceback" not in server.output(), server.output()
