"""examples/fastapi_app end to end: httpx.AsyncClient over ASGITransport, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pyotp
import pytest
import pytest_asyncio
from authflows import Auth, Settings, hash_backup_code
from example_keys import JWT_SECRET, TOTP_KEYS
from fastapi import FastAPI
from fastapi_app.app import create_app
from fastapi_app.mail import SmtpMailer

from authstore.crypto import DecryptionError
from tests.outages import free_port

pytestmark = pytest.mark.asyncio


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    outbox: list[tuple[str, str]] = field(default_factory=list)

    @property
    def auth(self) -> Auth:
        auth: Auth = self.app.state.auth
        return auth

    def device(self, name: str) -> httpx.AsyncClient:
        """Another browser: its own cookie jar, same app."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://testserver",
            headers={"user-agent": name},
        )

    async def link(self, email: str) -> str:
        response = await self.client.post("/auth/magic-link", json={"email": email})
        assert response.status_code == 202, response.text
        sent_to, token = self.outbox.pop()
        assert sent_to == email.strip().lower()
        return token

    async def sign_in(self, email: str, device: httpx.AsyncClient | None = None) -> dict[str, Any]:
        token = await self.link(email)
        response = await (device or self.client).post(
            "/auth/magic-link/verify", json={"token": token}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def settings_for(url: str, **overrides: Any) -> Settings:
    return replace(
        Settings(
            authstore_url=url,
            jwt_secret=JWT_SECRET,
            totp_keys=TOTP_KEYS,
            cookie_secure=False,  # the test client talks plain http
            totp_limit=(10, 300),
            login_limit=(20, 600),
        ),
        **overrides,
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    outbox: list[tuple[str, str]] = []

    async def mailer(email: str, link: str) -> None:
        assert link.startswith(f"{settings.link_url}#token=")
        outbox.append((email, link.partition("#token=")[2]))

    app = create_app(settings, mailer)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Service(app, client, outbox)


@pytest_asyncio.fixture
async def service(example_url: str) -> AsyncIterator[Service]:
    async with running(settings_for(example_url)) as svc:
        yield svc


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_magic_link_sign_in_session_and_token(service: Service) -> None:
    token = await service.link("Alice@Example.com ")
    response = await service.client.post("/auth/magic-link/verify", json={"token": token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == "alice@example.com"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert body["session_id"] not in cookie  # the cookie holds the secret token, not the id
    session = await service.client.get("/session")
    assert session.json() == {"user_id": "alice@example.com", "session_id": body["session_id"]}
    me = await service.client.get("/me", headers=bearer(body["access_token"]))
    assert me.json() == {"user_id": "alice@example.com"}
    again = await service.client.post("/auth/magic-link/verify", json={"token": token})
    assert again.status_code == 401  # single use
    refreshed = (await service.client.post("/auth/token")).json()["access_token"]
    assert (await service.client.get("/me", headers=bearer(refreshed))).status_code == 200


async def test_a_newer_link_revokes_the_older_one(service: Service) -> None:
    first = await service.link("bob@example.com")
    second = await service.link("bob@example.com")
    verify = "/auth/magic-link/verify"
    assert (await service.client.post(verify, json={"token": first})).status_code == 401
    assert (await service.client.post(verify, json={"token": second})).status_code == 200


async def test_fifty_concurrent_verifications_of_one_link_sign_in_once(service: Service) -> None:
    token = await service.link("carol@example.com")
    responses = await asyncio.gather(
        *(service.client.post("/auth/magic-link/verify", json={"token": token}) for _ in range(50))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 49
    assert await service.auth.stores.sessions.count("carol@example.com") == 1


async def test_login_requests_are_rate_limited_with_retry_after(example_url: str) -> None:
    async with running(settings_for(example_url, login_limit=(3, 60))) as svc:
        for _ in range(3):
            await svc.link("dave@example.com")
        refused = await svc.client.post("/auth/magic-link", json={"email": "dave@example.com"})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert svc.outbox == []  # no link issued for the refused request
        other = await svc.client.post("/auth/magic-link", json={"email": "erin@example.com"})
        assert other.status_code == 202  # the limit is per address


async def test_one_per_ip_budget_for_requesting_and_verifying_links(example_url: str) -> None:
    """authstore's RateLimit on both link routes: one budget, with its headers, then 429."""
    async with running(settings_for(example_url, ip_limit=(3, 60))) as svc:
        sent = await svc.client.post("/auth/magic-link", json={"email": "ivy@example.com"})
        assert sent.status_code == 202
        assert sent.headers["ratelimit-limit"] == "3"
        assert sent.headers["ratelimit-remaining"] == "2"
        assert 1 <= int(sent.headers["ratelimit-reset"]) <= 60
        token = svc.outbox.pop()[1]
        verify = await svc.client.post("/auth/magic-link/verify", json={"token": token})
        assert verify.status_code == 200 and verify.headers["ratelimit-remaining"] == "1"
        bad = await svc.client.post("/auth/magic-link/verify", json={"token": "x" * 43})
        assert bad.status_code == 401  # a wrong link spends the budget too
        refused = await svc.client.post("/auth/magic-link", json={"email": "joe@example.com"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        assert svc.outbox == []  # no link mailed for the refused request
        again = await svc.client.post("/auth/magic-link/verify", json={"token": token})
        assert again.status_code == 429  # refused before the link is even looked at


async def test_devices_list_revoke_one_revoke_others(service: Service) -> None:
    phone, laptop, tablet = (service.device(n) for n in ("phone", "laptop", "tablet"))
    async with phone, laptop, tablet:
        ids = {}
        for name, device in (("phone", phone), ("laptop", laptop), ("tablet", tablet)):
            ids[name] = (await service.sign_in("frank@example.com", device))["session_id"]
        listed = (await phone.get("/sessions")).json()
        assert [d["user_agent"] for d in listed] == ["tablet", "laptop", "phone"]  # newest first
        assert [d["current"] for d in listed] == [False, False, True]

        assert (await phone.delete(f"/sessions/{ids['laptop']}")).status_code == 200
        assert (await laptop.get("/session")).status_code == 401
        assert (await phone.delete(f"/sessions/{ids['laptop']}")).status_code == 404

        grace = await service.sign_in("grace@example.com")  # another user's session
        assert (await phone.delete(f"/sessions/{grace['session_id']}")).status_code == 404
        assert (await service.client.get("/session")).status_code == 200

        assert (await phone.post("/sessions/revoke-others")).json() == {"revoked": 1}
        assert (await tablet.get("/session")).status_code == 401
        assert (await phone.get("/session")).status_code == 200
        assert len((await phone.get("/sessions")).json()) == 1


async def test_totp_enrol_confirm_then_code_or_backup_code_once(service: Service) -> None:
    user = "heidi@example.com"
    await service.sign_in(user)
    enrolled = (await service.client.post("/2fa/enrol")).json()
    secret = enrolled["secret"]
    assert enrolled["otpauth_uri"].startswith("otpauth://totp/")

    state = await service.auth.stores.totp.load(user)  # encrypted at rest, bound to the user
    assert state is not None and state.pending_secret is not None
    assert secret.encode() not in state.pending_secret
    assert service.auth.box.key_id(state.pending_secret) == "k1"
    with pytest.raises(DecryptionError):
        await service.auth.box.decrypt("mallory@example.com", state.pending_secret)

    totp, step = pyotp.TOTP(secret), int(time.time()) // 30
    wrong = await service.client.post("/2fa/confirm", json={"code": "000000"})
    assert wrong.status_code == 401 or totp.generate_otp(step) == "000000"
    confirmed = await service.client.post("/2fa/confirm", json={"code": totp.generate_otp(step)})
    assert confirmed.status_code == 200, confirmed.text
    backup_codes = confirmed.json()["backup_codes"]
    assert len(backup_codes) == 10 and len(set(backup_codes)) == 10

    async def second_factor(code: str) -> httpx.Response:
        first = await service.client.post(
            "/auth/magic-link/verify", json={"token": await service.link(user)}
        )
        assert first.json()["mfa_required"] is True and "access_token" not in first.json()
        return await service.client.post(
            "/auth/2fa/verify", json={"mfa_token": first.json()["mfa_token"], "code": code}
        )

    code = totp.generate_otp(step + 1)
    assert (await second_factor(code)).status_code == 200
    assert (await second_factor(code)).status_code == 401  # that time step is spent
    assert (await second_factor(totp.generate_otp(step))).status_code == 401  # and earlier ones
    assert (await second_factor(backup_codes[0])).status_code == 200
    assert (await second_factor(backup_codes[0])).status_code == 401  # once only
    signed_in = await second_factor(backup_codes[1].upper())
    assert signed_in.status_code == 200 and signed_in.json()["user_id"] == user
    assert (
        await service.client.get("/me", headers=bearer(signed_in.json()["access_token"]))
    ).json()


async def test_an_mfa_token_works_once_and_is_no_access_token(service: Service) -> None:
    user = "ivan@example.com"
    await service.sign_in(user)
    totp = pyotp.TOTP((await service.client.post("/2fa/enrol")).json()["secret"])
    step = int(time.time()) // 30
    confirmed = await service.client.post("/2fa/confirm", json={"code": totp.generate_otp(step)})
    backup_codes = confirmed.json()["backup_codes"]
    verify = await service.client.post(
        "/auth/magic-link/verify", json={"token": await service.link(user)}
    )
    mfa_token = verify.json()["mfa_token"]
    assert (await service.client.get("/me", headers=bearer(mfa_token))).status_code == 401
    body = {"mfa_token": mfa_token, "code": backup_codes[0]}
    assert (await service.client.post("/auth/2fa/verify", json=body)).status_code == 200
    body["code"] = backup_codes[1]  # a good code, but the mfa token is spent
    assert (await service.client.post("/auth/2fa/verify", json=body)).status_code == 401
    assert await service.auth.stores.totp.use_backup_code(user, hash_backup_code(backup_codes[1]))


async def test_one_mfa_token_finishes_one_sign_in_under_concurrency(service: Service) -> None:
    user = "ivy@example.com"
    await service.sign_in(user)
    totp = pyotp.TOTP((await service.client.post("/2fa/enrol")).json()["secret"])
    confirmed = await service.client.post(
        "/2fa/confirm", json={"code": totp.generate_otp(int(time.time()) // 30)}
    )
    backup_codes = confirmed.json()["backup_codes"]
    verify = await service.client.post(
        "/auth/magic-link/verify", json={"token": await service.link(user)}
    )
    mfa_token = verify.json()["mfa_token"]
    responses = await asyncio.gather(
        *(
            service.client.post("/auth/2fa/verify", json={"mfa_token": mfa_token, "code": code})
            for code in backup_codes[:8]  # eight different good codes, one token
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 7
    assert await service.auth.stores.sessions.count(user) == 2


async def enrolled(svc: Service, user: str) -> pyotp.TOTP:
    """``user`` signed in with 2FA on (the first code confirmed enrolment)."""
    await svc.sign_in(user)
    totp = pyotp.TOTP((await svc.client.post("/2fa/enrol")).json()["secret"])
    code = totp.generate_otp(int(time.time()) // 30)
    assert (await svc.client.post("/2fa/confirm", json={"code": code})).status_code == 200
    return totp


async def mfa_token(svc: Service, user: str) -> str:
    verify = await svc.client.post("/auth/magic-link/verify", json={"token": await svc.link(user)})
    token: str = verify.json()["mfa_token"]
    return token


async def test_second_factor_guessing_is_rate_limited(example_url: str) -> None:
    async with running(settings_for(example_url, totp_limit=(3, 300))) as svc:
        user = "judy@example.com"
        totp = await enrolled(svc, user)
        body = {"mfa_token": await mfa_token(svc, user), "code": "not-a-backup-code"}
        statuses = [
            (await svc.client.post("/auth/2fa/verify", json=body)).status_code for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]  # the good confirm code did not count
        body["code"] = totp.generate_otp(int(time.time()) // 30 + 1)
        refused = await svc.client.post("/auth/2fa/verify", json=body)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


async def test_good_codes_never_spend_the_failed_attempt_limit(example_url: str) -> None:
    async with running(settings_for(example_url, totp_limit=(2, 300))) as svc:
        user = "kim@example.com"
        await enrolled(svc, user)
        codes = [f"good{i}" for i in range(6)]
        await svc.auth.stores.totp.replace_backup_codes(user, [hash_backup_code(c) for c in codes])
        for code in codes:  # six good sign-ins in a row, with a limit of two failures
            body = {"mfa_token": await mfa_token(svc, user), "code": code}
            assert (await svc.client.post("/auth/2fa/verify", json=body)).status_code == 200


async def test_concurrent_wrong_codes_are_checked_exactly_limit_times(example_url: str) -> None:
    async with running(settings_for(example_url, totp_limit=(4, 300))) as svc:
        user = "lou@example.com"
        await enrolled(svc, user)
        token = await mfa_token(svc, user)
        responses = await asyncio.gather(
            *(
                svc.client.post("/auth/2fa/verify", json={"mfa_token": token, "code": f"bad{i}"})
                for i in range(30)
            )
        )
        assert sorted(r.status_code for r in responses) == [401] * 4 + [429] * 26


async def test_logout_blacklists_the_token_and_ends_its_session(service: Service) -> None:
    async with service.device("phone") as phone:
        laptop_login = await service.sign_in("ken@example.com")
        phone_login = await service.sign_in("ken@example.com", phone)
        out = await service.client.post("/logout", headers=bearer(laptop_login["access_token"]))
        assert out.status_code == 200 and 'session=""' in out.headers["set-cookie"]
        assert (
            await service.client.get("/me", headers=bearer(laptop_login["access_token"]))
        ).status_code == 401
        assert await service.auth.stores.sessions.count("ken@example.com") == 1
        assert (
            await phone.get("/me", headers=bearer(phone_login["access_token"]))
        ).status_code == 200
        assert (await phone.get("/session")).status_code == 200


async def test_log_out_everywhere_revokes_every_token_session_and_link(service: Service) -> None:
    user = "leo@example.com"
    async with service.device("phone") as phone:
        laptop_login = await service.sign_in(user)
        phone_login = await service.sign_in(user, phone)
        pending = await service.link(user)
        out = await phone.post("/logout-everywhere", headers=bearer(phone_login["access_token"]))
        assert out.json() == {"sessions_revoked": 2}
        for login in (laptop_login, phone_login):
            assert (
                await service.client.get("/me", headers=bearer(login["access_token"]))
            ).status_code == 401
        assert (await service.client.get("/session")).status_code == 401
        assert (await phone.get("/session")).status_code == 401
        verify = await service.client.post("/auth/magic-link/verify", json={"token": pending})
        assert verify.status_code == 401
        again = await service.sign_in(user)  # a token issued after the instant works
        assert (
            await service.client.get("/me", headers=bearer(again["access_token"]))
        ).status_code == 200


async def test_bad_requests_are_refused(service: Service) -> None:
    client = service.client
    assert (await client.post("/auth/magic-link", json={"email": "nope"})).status_code == 422
    assert (
        await client.post("/auth/magic-link/verify", json={"token": "x" * 43})
    ).status_code == 401
    assert (await client.get("/me")).status_code == 401
    assert (await client.get("/me", headers=bearer("not.a.jwt"))).status_code == 401
    assert (await client.get("/session")).status_code == 401
    assert (await client.post("/2fa/enrol")).status_code == 401
    login = await service.sign_in("mia@example.com")
    forged = login["access_token"][:-2] + ("AA" if login["access_token"][-2:] != "AA" else "BB")
    assert (await client.get("/me", headers=bearer(forged))).status_code == 401
    assert (await client.post("/2fa/confirm", json={"code": "123456"})).status_code == 400


async def test_session_expiry_slides_once_per_touch_interval(example_url: str) -> None:
    for interval, moves in ((0.0, True), (3600.0, False)):
        async with running(settings_for(example_url, touch_interval=interval)) as svc:
            login = await svc.sign_in(f"olga{interval:.0f}@example.com")
            before = (await svc.client.get("/sessions")).json()[0]["last_seen_at"]
            await asyncio.sleep(0.05)
            assert (await svc.client.get("/session")).status_code == 200
            after = (await svc.client.get("/sessions")).json()[0]["last_seen_at"]
            assert (after > before) is moves, (interval, before, after)
            assert login["session_id"]


async def test_secure_cookie_by_default(example_url: str) -> None:
    async with running(settings_for(example_url, cookie_secure=True)) as svc:
        token = await svc.link("nina@example.com")
        response = await svc.client.post("/auth/magic-link/verify", json={"token": token})
        assert "secure" in response.headers["set-cookie"].lower()


async def test_a_store_that_is_down_fails_closed() -> None:
    # Nothing listens on port 1: every store call raises BackendUnavailableError at once.
    down = "postgresql://postgres@127.0.0.1:1/authstore_test?connect_timeout=2&timeout=2"
    async with running(settings_for(down)) as svc:
        token = svc.auth._mint("pat@example.com", "access", 60)  # valid, minted without a store
        me = await svc.client.get("/me", headers=bearer(token))
        assert me.status_code == 503 and me.headers["retry-after"] == "5"  # never a 200
        assert (
            await svc.client.post("/auth/magic-link", json={"email": "p@x.io"})
        ).status_code == 503
        verify = await svc.client.post("/auth/magic-link/verify", json={"token": "x" * 43})
        assert verify.status_code == 503
        svc.client.cookies.set("session", "x" * 43)
        assert (await svc.client.get("/session")).status_code == 503


async def test_a_mail_that_fails_stores_no_link_and_keeps_the_previous_one(
    service: Service,
) -> None:
    earlier = await service.link("max@example.com")
    service.auth.mailer = SmtpMailer("127.0.0.1", free_port(), starttls=False, timeout=5)
    refused = await service.client.post("/auth/magic-link", json={"email": "max@example.com"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
    assert refused.json() == {"detail": "could not send the sign-in mail"}
    verify = await service.client.post("/auth/magic-link/verify", json={"token": earlier})
    assert verify.status_code == 200  # the failed request revoked nothing


async def test_errors_are_json(service: Service) -> None:
    for response in (
        await service.client.get("/no-such-route"),
        await service.client.put("/auth/magic-link"),
        await service.client.post("/auth/magic-link", json={}),
    ):
        assert response.headers["content-type"] == "application/json", response
        assert "detail" in response.json()


class SmtpSink:
    """A minimal SMTP server on loopback keeping each message it receives (no TLS, no login)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go on\r\n")
                self.messages.append(await reader.readuntil(b"\r\n.\r\n"))
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


async def test_the_smtp_mailer_sends_a_link_that_signs_in(service: Service) -> None:
    sink = SmtpSink()
    server = await asyncio.start_server(sink.session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        service.auth.mailer = SmtpMailer("127.0.0.1", port, starttls=False, sender="a@b.test")
        sent = await service.client.post("/auth/magic-link", json={"email": "sam@example.com"})
        assert sent.status_code == 202, sent.text
    (raw,) = sink.messages
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["To"] == "sam@example.com" and mail["From"] == "a@b.test"
    body = mail.get_body()
    assert body is not None
    token = str(body.get_content()).partition("#token=")[2].split()[0]
    verify = await service.client.post("/auth/magic-link/verify", json={"token": token})
    assert verify.status_code == 200 and verify.json()["user_id"] == "sam@example.com"
