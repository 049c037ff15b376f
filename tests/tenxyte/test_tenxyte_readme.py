"""The tenxyte guide's FastAPI wiring runs as written: the block of docs/tenxyte.md after
``<!-- tenxyte-snippet: fastapi -->`` is executed, its ``create_app`` served on SQLite
(its lifespan entered, httpx over ASGI) and driven through a sign-in, then on a backend
that is down, where it answers 503."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.tenxyte.conftest import Mailbox, Users, tenxyte_settings

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "tenxyte.md"
BLOCK = re.compile(r"<!-- tenxyte-snippet: fastapi -->\n```python\n(?P<code>.*?)```", re.S)


def readme_app(url: str, mailer: Mailbox) -> Any:
    blocks = BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) == 1, "docs/tenxyte.md: the tenxyte FastAPI block is missing or doubled"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/tenxyte.md tenxyte-snippet", "exec"), namespace)
    settings = tenxyte_settings()
    return namespace["create_app"](url, settings, Users(), mailer, Fernet.generate_key().decode())


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::tenxyte.core.jwt_service.SecurityWarning")
async def test_the_guide_fastapi_wiring_signs_in_once(tmp_path: Path) -> None:
    mailer = Mailbox()
    app = readme_app(f"sqlite:///{tmp_path / 'auth.db'}", mailer)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert (
            await client.post("/auth/magic-link", params={"email": "kim@example.com"})
        ).json() == {"sent": True}
        token = mailer.last_token()
        signed_in = await client.post("/auth/magic-link/verify", params={"token": token})
        assert signed_in.status_code == 200, signed_in.text
        again = await client.post("/auth/magic-link/verify", params={"token": token})
        assert again.status_code == 401

        bearer = {"authorization": f"Bearer {signed_in.json()['access_token']}"}
        assert (await client.get("/me", headers=bearer)).json() == {"user_id": "user-kim"}
        assert (await client.get("/me")).status_code == 401

        statuses = [
            (await client.post("/auth/magic-link/verify", params={"token": "x" * 43})).status_code
            for _ in range(9)
        ]
        assert statuses == [401] * 8 + [429]  # 10 verifications per minute and address


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::tenxyte.core.jwt_service.SecurityWarning")
async def test_the_guide_fastapi_wiring_answers_503_when_the_backend_is_down() -> None:
    """A port nothing listens on: the blacklist check raises, the handler says 503."""
    app = readme_app("redis://127.0.0.1:1/0?timeout=1&connect_timeout=1", Mailbox())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        access, _jti, _exp = app.state.jwt.generate_access_token("user-kim", "web")
        bearer = {"authorization": f"Bearer {access}"}
        answer = await client.get("/me", headers=bearer)
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
