"""``authstore.integrations.fastapi`` through real HTTP requests: in process with
httpx's ASGI transport (the app's lifespan runs), and once through a uvicorn process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from authstore import AsyncCacheStore, BackendUnavailableError, open_async_cache
from authstore.integrations.fastapi import RateLimit, rate_limit_headers
from tests.backends import backend_url
from tests.integrations.fastapi_app import make_app
from tests.outages import end_process, free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client talking to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def who() -> dict[str, str]:
    return {"x-client": uuid.uuid4().hex}


async def one_after_another(client: httpx.AsyncClient, count: int) -> list[httpx.Response]:
    """``count`` requests to /limited from one new client, each after the last answer."""
    me = who()
    return [await client.get("/limited", headers=me) for _ in range(count)]


async def all_at_once(client: httpx.AsyncClient, count: int) -> list[httpx.Response]:
    """``count`` requests to /limited from one new client, all at once."""
    me = who()
    return list(await asyncio.gather(*(client.get("/limited", headers=me) for _ in range(count))))


@pytest.mark.asyncio
async def test_headers_on_200_and_429(integration_url: str) -> None:
    async with serving(make_app(integration_url, "3/minute")) as client:
        answers = await one_after_another(client, 4)
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer, remaining in zip(answers, ["2", "1", "0", "0"], strict=True):
        assert answer.headers["RateLimit-Limit"] == "3"
        assert answer.headers["RateLimit-Remaining"] == remaining
        assert 1 <= int(answer.headers["RateLimit-Reset"]) <= 60
    assert "Retry-After" not in answers[0].headers
    refused = answers[3]
    assert refused.json() == {"detail": "rate limit exceeded"}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.asyncio
async def test_x_ratelimit_headers_and_cost(integration_url: str) -> None:
    async with serving(make_app(integration_url, "5/minute", headers="x-ratelimit", cost=2)) as c:
        answers = await one_after_another(c, 3)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["3", "1", "1"]
    assert "RateLimit-Limit" not in answers[0].headers
    reset = int(answers[0].headers["X-RateLimit-Reset"])  # a Unix time, as slowapi sends it
    assert time.time() < reset <= time.time() + 61
    assert int(answers[2].headers["Retry-After"]) >= 1


@pytest.mark.asyncio
async def test_scope_is_the_route_template_or_a_shared_name(integration_url: str) -> None:
    async with serving(make_app(integration_url, "2/minute")) as client:
        me = who()
        # /items/{item} and POST /items share the scope "shared": 2 hits in all
        codes = [
            (await client.get("/items/a", headers=me)).status_code,
            (await client.get("/items/b", headers=me)).status_code,
            (await client.post("/items", headers=me)).status_code,
        ]
        assert codes == [200, 200, 429]
        # /limited is another route: its own counter
        assert (await client.get("/limited", headers=me)).status_code == 200


@pytest.mark.asyncio
async def test_limit_race_lets_exactly_the_limit_through(integration_url: str) -> None:
    async with serving(make_app(integration_url, "10/minute")) as client:
        answers = await all_at_once(client, 100)
    assert_exactly_ten(answers)


def assert_exactly_ten(answers: list[httpx.Response]) -> None:
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {200: 10, 429: 90}, codes
    passed = sorted(int(a.headers["RateLimit-Remaining"]) for a in answers if a.status_code == 200)
    assert passed == list(range(10)), "each passing hit saw its own remaining count"
    for answer in answers:
        assert answer.headers["RateLimit-Limit"] == "10"
        if answer.status_code == 429:
            assert answer.headers["RateLimit-Remaining"] == "0"
            assert 1 <= int(answer.headers["Retry-After"]) <= 60


@pytest.mark.asyncio
async def test_limit_race_through_a_uvicorn_process(
    server_url: Callable[[str], str], tmp_path: Path
) -> None:
    """One server backend (PostgreSQL) is enough: the in-process race covers the others."""
    with backend_url("postgres", server_url, tmp_path, namespace="uvicornrace") as url:
        await _race_through_uvicorn(url)


@contextlib.contextmanager
def uvicorn_process(url: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``tests.integrations.fastapi_app`` served by uvicorn on a free port."""
    port = free_port()
    env = {**os.environ, "AUTHSTORE_IT_URL": url, "AUTHSTORE_IT_LIMIT": "10/minute"}
    command = [sys.executable, "-m", "uvicorn", "tests.integrations.fastapi_app:from_environment"]
    command += ["--factory", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        yield port, server
    finally:
        end_process(server)


async def _race_through_uvicorn(url: str) -> None:
    with uvicorn_process(url) as (port, server):
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            await _until_up(client, server)
            answers = await all_at_once(client, 100)
    assert_exactly_ten(answers)


async def _until_up(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise AssertionError(f"uvicorn exited with {server.returncode}")
        with contextlib.suppress(httpx.TransportError):
            await client.get("/docs")
            return
        await asyncio.sleep(0.05)
    raise AssertionError("uvicorn did not answer")


@pytest.mark.asyncio
async def test_several_limits_in_one_step(integration_url: str) -> None:
    async with serving(make_app(integration_url, "3/minute;5/hour")) as client:
        answers = await one_after_another(client, 4)
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        # the binding limit is the minute's: 3 of it, then the hour's 5 still has 2
        assert [a.headers["RateLimit-Limit"] for a in answers] == ["3", "3", "3", "3"]


@pytest.mark.asyncio
async def test_several_limits_race(integration_url: str) -> None:
    async with serving(make_app(integration_url, "10/minute;1000/day")) as client:
        answers = await all_at_once(client, 100)
    assert_exactly_ten(answers)


# -- failures ---------------------------------------------------------------------------


DEAD = {
    "redis": lambda port: f"redis://127.0.0.1:{port}/0?timeout=2",
    "postgres": lambda port: f"postgresql://u:secret-pw@127.0.0.1:{port}/x?timeout=2",
}


@pytest.mark.parametrize("scheme", sorted(DEAD))
@pytest.mark.asyncio
async def test_backend_down_is_503_never_a_pass(scheme: str) -> None:
    url = DEAD[scheme](free_port())
    dead: AsyncCacheStore = open_async_cache(url)
    try:
        app = make_app(url, "10/minute", check=False, cache=dead, lifespan=False)
        async with serving(app) as client:
            answer = await client.get("/limited", headers=who())
    finally:
        await dead.aclose()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {"detail": "service temporarily unavailable"}
    assert "127.0.0.1" not in answer.text and "secret" not in answer.text


@pytest.mark.parametrize("scheme", sorted(DEAD))
@pytest.mark.asyncio
async def test_lifespan_refuses_to_start_on_a_dead_backend(scheme: str) -> None:
    app = make_app(DEAD[scheme](free_port()), "10/minute")
    with pytest.raises(BackendUnavailableError) as raised:
        async with app.router.lifespan_context(app):
            pass
    assert "secret-pw" not in str(raised.value)


@pytest.mark.asyncio
async def test_configuration_error_is_500_without_details() -> None:
    app = make_app("sqlite:///unused.db", "10/minute", lifespan=False)  # no stores on app.state
    async with serving(app) as client:
        answer = await client.get("/limited", headers=who())
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal server error"}


@pytest.mark.asyncio
async def test_lifespan_opens_checks_and_closes(integration_url: str) -> None:
    app = make_app(integration_url)
    async with serving(app) as client:
        stores = app.state.authstore
        assert stores.cache is not None and stores.sessions is None  # stores=["cache"]
        assert (await client.get("/limited", headers=who())).status_code == 200
        await stores.cache.set("seen", 1)
        assert await stores.cache.get("seen") == 1
    assert app.state.authstore is None
    if not integration_url.startswith("memory:"):  # a memory store has nothing to close
        with pytest.raises(Exception, match="closed"):
            await stores.cache.get("seen")


@pytest.mark.asyncio
async def test_lifespan_opens_the_four_stores(integration_url: str) -> None:
    from authstore.integrations.fastapi import authstore_lifespan

    app = FastAPI(lifespan=authstore_lifespan(integration_url))
    async with app.router.lifespan_context(app):
        stores = app.state.authstore
        created = await stores.sessions.create("u1", ttl=60)
        assert (await stores.sessions.get(created.token)).user_id == "u1"
        assert await stores.totp.load("u1") is None
        assert stores.magic_links is not None


def test_bad_arguments_fail_before_any_request() -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        RateLimit("10 a minute")
    with pytest.raises(ValueError, match="cost"):
        RateLimit("1/minute", cost=0)
    with pytest.raises(ValueError, match="headers"):
        RateLimit("1/minute", headers="draft")  # type: ignore[arg-type]
    from authstore import ConfigurationError
    from authstore.integrations.fastapi import authstore_lifespan

    with pytest.raises(ConfigurationError):
        authstore_lifespan("not a url")


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    from authstore import RateLimitResult

    refused = RateLimitResult(False, 0, reset_after=59.2, retry_after=0.01, limit=10)
    assert rate_limit_headers(refused)["Retry-After"] == "1"
    assert rate_limit_headers(refused)["RateLimit-Reset"] == "60"
    later = RateLimitResult(False, 0, reset_after=3.0, retry_after=2.5, limit=10)
    assert rate_limit_headers(later, None) == {"Retry-After": "3"}
