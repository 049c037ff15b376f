"""Request rates of the FastAPI example: session check and magic-link verify.

    python benchmarks/bench_examples.py [sqlite] [postgres]

httpx.AsyncClient over ASGITransport (the app in this process, no sockets), one
client, sequential requests and then 10 at a time, in interleaved rounds (median). A ``/ping`` route that touches no
store gives the floor of FastAPI plus httpx on this machine, so the store's share of
each request reads as the ratio to it. PostgreSQL comes from AUTHSTORE_TEST_POSTGRES_URL
(``eval "$(scripts/services env)"``). A measurement, not a test.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from authflows import Auth, Settings
from fastapi_app.app import create_app

ROUNDS = 5
PER_ROUND = 200
REQUESTS = ROUNDS * PER_ROUND
CONCURRENCY = 10


async def rate(call: Callable[[int], Awaitable[None]], count: int, concurrency: int) -> float:
    """Requests per second for ``count`` calls, ``concurrency`` in flight."""
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def section(name: str, url: str) -> None:
    async def mailer(email: str, token: str) -> None:
        pass

    settings = Settings(
        authstore_url=url,
        jwt_secret="benchmark secret, 32 bytes or more....",
        totp_keys=f"k:{base64.b64encode(bytes(32)).decode()}",
        cookie_secure=False,
        ip_limit=(10**9, 60),
    )
    app = create_app(settings, mailer)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async with app.router.lifespan_context(app):
        auth: Auth = app.state.auth
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            _, session_token = await auth.stores.sessions.create("bench", ttl=3600)
            client.cookies.set("session", session_token)
            print(f"\n{name}: requests per second (httpx ASGITransport, one process)")
            for concurrency in (1, CONCURRENCY):
                tokens = [
                    (
                        await auth.stores.links.issue(
                            f"u{i}", f"u{i}@example.com", ttl=600, application_id="example"
                        )
                    ).token
                    for i in range(REQUESTS)
                ]
                used = iter(tokens)

                async def do_ping(i: int) -> None:
                    assert (await client.get("/ping")).status_code == 200

                async def session_check(i: int) -> None:
                    assert (await client.get("/session")).status_code == 200

                async def verify(i: int, used: Iterator[str] = used) -> None:
                    response = await client.post(
                        "/auth/magic-link/verify", json={"token": next(used)}
                    )
                    assert response.status_code == 200, response.text

                await rate(do_ping, 100, concurrency)  # warm up
                rates: dict[str, list[float]] = {"ping": [], "check": [], "verify": []}
                for _ in range(ROUNDS):  # interleaved, so machine noise hits all alike
                    rates["ping"].append(await rate(do_ping, PER_ROUND, concurrency))
                    rates["check"].append(await rate(session_check, PER_ROUND, concurrency))
                    rates["verify"].append(await rate(verify, PER_ROUND, concurrency))
                floor, check, verified = (statistics.median(rates[k]) for k in rates)
                print(
                    f"  {concurrency:>2} in flight: /ping {floor:7.0f}   "
                    f"session check {check:6.0f} ({floor / check:4.1f}x the floor)   "
                    f"magic-link verify {verified:6.0f} ({floor / verified:4.1f}x)"
                )


async def main(names: list[str]) -> None:
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in names:
            await section("SQLite", f"sqlite:///{folder}/auth.db?namespace={namespace}")
        if "postgres" in names:
            base = os.environ.get("AUTHSTORE_TEST_POSTGRES_URL")
            if not base:
                print(
                    '\nPostgreSQL: set AUTHSTORE_TEST_POSTGRES_URL (eval "$(scripts/services env)")'
                )
            else:
                separator = "&" if "?" in base else "?"
                await section("PostgreSQL", f"{base}{separator}namespace={namespace}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["sqlite", "postgres"]))
