"""A small FastAPI app over ``authstore.integrations.fastapi``, for the tests in process
and for a real uvicorn process (``uvicorn tests.integrations.fastapi_app:from_environment
--factory`` reads ``AUTHSTORE_IT_URL`` and ``AUTHSTORE_IT_LIMIT``)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, Request

from authstore.integrations.fastapi import (
    HeaderStyle,
    RateLimit,
    add_exception_handlers,
    authstore_lifespan,
)


def header_key(request: Request) -> str:
    """Each test client names itself, so tests never share a counter by accident."""
    return request.headers.get("x-client", "anonymous")


def make_app(
    url: str,
    limits: str = "10/minute",
    *,
    headers: HeaderStyle = "ietf",
    cost: int = 1,
    check: bool = True,
    cache: Any = None,
    lifespan: bool = True,
) -> FastAPI:
    app = FastAPI(
        lifespan=authstore_lifespan(url, stores=["cache"], check=check) if lifespan else None
    )
    add_exception_handlers(app)
    limit = RateLimit(limits, key=header_key, headers=headers, cost=cost, cache=cache)

    @app.get("/limited", dependencies=[Depends(limit)])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    shared = RateLimit(limits, key=header_key, scope="shared", headers=headers, cache=cache)

    @app.get("/items/{item}", dependencies=[Depends(shared)])
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    @app.post("/items", dependencies=[Depends(shared)])
    async def new_item() -> dict[str, bool]:
        return {"created": True}

    return app


def from_environment() -> FastAPI:
    return make_app(
        os.environ["AUTHSTORE_IT_URL"], os.environ.get("AUTHSTORE_IT_LIMIT", "10/minute")
    )
