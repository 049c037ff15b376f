"""The code in docs/fastapi.md and docs/django.md: every Python block compiles, and the
FastAPI page's minimal app runs as written (on the Redis test server)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text())


@pytest.mark.parametrize("page", ["fastapi.md", "django.md"])
def test_every_python_block_compiles(page: str) -> None:
    found = blocks(page)
    assert found
    for number, code in enumerate(found):
        compile(code, f"{page}[{number}]", "exec")


@pytest.mark.asyncio
async def test_the_minimal_fastapi_app_runs(server_url: Callable[[str], str]) -> None:
    code = blocks("fastapi.md")[0]
    assert "redis://localhost:6379/0" in code
    url = f"{server_url('redis')}?namespace=d{uuid.uuid4().hex[:12]}"
    scope: dict[str, Any] = {}
    exec(compile(code.replace("redis://localhost:6379/0", url), "fastapi.md", "exec"), scope)
    app = scope["app"]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
            codes = [(await client.post("/login")).status_code for _ in range(6)]
            assert codes == [200] * 5 + [429]
            assert (await client.get("/me")).json() == {"sessions": 0}
