"""examples/django_app end to end with Django's test clients, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import django
import pyotp
import pytest
from example_keys import JWT_SECRET, TOTP_KEYS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")
django.setup()

from django.core import mail  # noqa: E402  (after django.setup)
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django_app import stores  # noqa: E402

from tests.outages import free_port  # noqa: E402


@pytest.fixture
def configured(example_url: str) -> Iterator[None]:
    with override_settings(
        AUTHSTORE={"URL": example_url},
        AUTH_JWT_SECRET=JWT_SECRET,
        AUTH_TOTP_KEYS=TOTP_KEYS,
        AUTH_COOKIE_SECURE=False,
        AUTH_OPTIONS={"login_limit": (5, 60), "totp_limit": (10, 300)},
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    ):
        mail.outbox = []
        yield


def link(client: Client, email: str) -> str:
    response = client.post("/auth/magic-link", {"email": email}, content_type="application/json")
    assert response.status_code == 202, response.content
    return mailed_token(email)


def mailed_token(email: str) -> str:
    message = mail.outbox.pop()
    assert message.to == [email]
    return message.body.partition("#token=")[2].split()[0]


def sign_in(client: Client, email: str, device: Client | None = None) -> dict[str, Any]:
    response = (device or client).post(
        "/auth/magic-link/verify", {"token": link(client, email)}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.usefixtures("configured")
def test_sign_in_session_token_single_use_and_rate_limit() -> None:
    client = Client()
    token = link(client, "alice@example.com")
    verify = {"path": "/auth/magic-link/verify", "content_type": "application/json"}
    response = client.post(data={"token": token}, **verify)
    assert response.status_code == 200
    assert response.cookies["session"]["httponly"] and response.cookies["session"]["samesite"]
    assert client.get("/session").json()["user_id"] == "alice@example.com"
    access = response.json()["access_token"]
    assert client.get("/me", headers=bearer(access)).json() == {"user_id": "alice@example.com"}
    assert client.post(data={"token": token}, **verify).status_code == 401
    assert client.get("/session", headers={}).status_code == 200
    assert client.get("/auth/magic-link").status_code == 405

    for _ in range(5):
        link(client, "bob@example.com")
    refused = client.post("/auth/magic-link", {"email": "bob@example.com"}, "application/json")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    assert mail.outbox == []


@pytest.mark.usefixtures("configured")
def test_one_per_ip_budget_for_requesting_and_verifying_links() -> None:
    client = Client()
    with override_settings(AUTH_OPTIONS={"ip_limit": (3, 60)}):
        token = link(client, "ivy@example.com")
        verify = {"path": "/auth/magic-link/verify", "content_type": "application/json"}
        assert client.post(data={"token": token}, **verify).status_code == 200
        assert client.post(data={"token": "x" * 43}, **verify).status_code == 401
        refused = client.post("/auth/magic-link", {"email": "joe@example.com"}, "application/json")
        assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
        assert mail.outbox == []  # no link mailed for the refused request
        assert client.post(data={"token": token}, **verify).status_code == 429


@pytest.mark.asyncio
@pytest.mark.usefixtures("configured")
async def test_fifty_concurrent_verifications_of_one_link_sign_in_once() -> None:
    client = AsyncClient()
    response = await client.post(
        "/auth/magic-link", {"email": "carol@example.com"}, content_type="application/json"
    )
    assert response.status_code == 202
    token = mailed_token("carol@example.com")
    responses = await asyncio.gather(
        *(
            client.post(
                "/auth/magic-link/verify", {"token": token}, content_type="application/json"
            )
            for _ in range(50)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 49


@pytest.mark.usefixtures("configured")
def test_devices_and_logouts() -> None:
    phone, laptop, tablet = Client(), Client(), Client()
    logins = {
        name: sign_in(phone, "dan@example.com", device)
        for name, device in (("phone", phone), ("laptop", laptop), ("tablet", tablet))
    }
    listed = phone.get("/sessions").json()
    assert [d["current"] for d in listed] == [False, False, True]
    assert phone.delete(f"/sessions/{logins['laptop']['session_id']}").status_code == 200
    assert laptop.get("/session").status_code == 401
    assert phone.post("/sessions/revoke-others").json() == {"revoked": 1}
    assert tablet.get("/session").status_code == 401
    assert tablet.get("/me", headers=bearer(logins["tablet"]["access_token"])).status_code == 200

    assert (
        tablet.post("/logout", headers=bearer(logins["tablet"]["access_token"])).status_code == 200
    )
    assert tablet.get("/me", headers=bearer(logins["tablet"]["access_token"])).status_code == 401
    assert phone.get("/me", headers=bearer(logins["phone"]["access_token"])).status_code == 200

    again = sign_in(laptop, "dan@example.com", laptop)
    out = laptop.post("/logout-everywhere", headers=bearer(again["access_token"]))
    assert out.json() == {"sessions_revoked": 2}
    for login in (logins["phone"], again):
        assert phone.get("/me", headers=bearer(login["access_token"])).status_code == 401
    assert phone.get("/session").status_code == 401


@pytest.mark.usefixtures("configured")
def test_totp_enrol_confirm_verify_and_backup_code() -> None:
    client, user = Client(), "erin@example.com"
    sign_in(client, user)
    totp = pyotp.TOTP(client.post("/2fa/enrol").json()["secret"])
    step = int(time.time()) // 30
    confirmed = client.post(
        "/2fa/confirm", {"code": totp.generate_otp(step)}, content_type="application/json"
    )
    assert confirmed.status_code == 200, confirmed.content
    backup_codes = confirmed.json()["backup_codes"]

    def second_factor(code: str) -> int:
        first = client.post(
            "/auth/magic-link/verify", {"token": link(client, user)}, "application/json"
        )
        assert first.json()["mfa_required"] is True
        body = {"mfa_token": first.json()["mfa_token"], "code": code}
        return client.post("/auth/2fa/verify", body, "application/json").status_code

    assert second_factor(totp.generate_otp(step + 1)) == 200
    assert second_factor(totp.generate_otp(step + 1)) == 401  # replayed step
    with override_settings(AUTH_OPTIONS={"login_limit": (10, 60), "totp_limit": (10, 300)}):
        assert second_factor(backup_codes[0]) == 200
        assert second_factor(backup_codes[0]) == 401  # once only


def test_a_store_that_is_down_fails_closed() -> None:
    down = "postgresql://postgres@127.0.0.1:1/authstore_test?connect_timeout=2&timeout=2"
    with override_settings(
        AUTHSTORE={"URL": down},
        AUTH_JWT_SECRET=JWT_SECRET,
        AUTH_TOTP_KEYS=TOTP_KEYS,
        AUTH_COOKIE_SECURE=False,
    ):
        client = Client()
        token = stores.get_auth()._mint("pat@example.com", "access", 60)
        me = client.get("/me", headers=bearer(token))
        assert me.status_code == 503 and me["Retry-After"] == "5"  # never a 200
        assert (
            client.post("/auth/magic-link", {"email": "p@x.io"}, "application/json").status_code
            == 503
        )


@pytest.mark.usefixtures("configured")
def test_a_mail_that_fails_stores_no_link_and_keeps_the_previous_one() -> None:
    client = Client()
    earlier = link(client, "max@example.com")
    smtp_down = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": free_port(),
        "EMAIL_USE_TLS": False,
        "EMAIL_TIMEOUT": 5,
    }
    with override_settings(**smtp_down):
        refused = client.post("/auth/magic-link", {"email": "max@example.com"}, "application/json")
    assert refused.status_code == 503 and refused["Retry-After"] == "60"
    assert refused.json() == {"detail": "could not send the sign-in mail"}
    verify = client.post("/auth/magic-link/verify", {"token": earlier}, "application/json")
    assert verify.status_code == 200  # the failed request revoked nothing


@pytest.mark.usefixtures("configured")
def test_token_route_and_json_errors() -> None:
    client = Client()
    assert client.post("/auth/token").status_code == 401
    sign_in(client, "nat@example.com")
    access = client.post("/auth/token").json()["access_token"]
    assert client.get("/me", headers=bearer(access)).json() == {"user_id": "nat@example.com"}
    missing = client.get("/no-such-route")
    assert missing.status_code == 404 and missing.json() == {"detail": "not found"}
    assert client.get("/auth/token").json() == {"detail": "method not allowed"}
    assert client.get("/").status_code == 200 and b"<!doctype html>" in client.get("/").content


@pytest.mark.asyncio
@pytest.mark.usefixtures("configured")
async def test_concurrent_wrong_codes_are_checked_exactly_limit_times() -> None:
    client, user, json = AsyncClient(), "olga@example.com", "application/json"

    async def verify_a_new_link() -> Any:
        sent = await client.post("/auth/magic-link", {"email": user}, content_type=json)
        assert sent.status_code == 202
        return await client.post(
            "/auth/magic-link/verify", {"token": mailed_token(user)}, content_type=json
        )

    assert (await verify_a_new_link()).status_code == 200  # the session cookie is kept
    secret = (await client.post("/2fa/enrol")).json()["secret"]
    code = pyotp.TOTP(secret).generate_otp(int(time.time()) // 30)
    confirmed = await client.post("/2fa/confirm", {"code": code}, content_type=json)
    assert confirmed.status_code == 200
    mfa_token = (await verify_a_new_link()).json()["mfa_token"]
    responses = await asyncio.gather(
        *(
            client.post(
                "/auth/2fa/verify", {"mfa_token": mfa_token, "code": f"bad{i}"}, content_type=json
            )
            for i in range(25)
        )
    )
    assert sorted(r.status_code for r in responses) == [401] * 10 + [429] * 15  # totp_limit 10
