"""Request rates of the FastAPI example (section ``examples``): a session check and a
magic-link verify, through httpx's ASGITransport (the app in the process, no sockets).

A ``/ping`` route that touches no store takes turns with them: the floor of FastAPI
plus httpx here, so each route's ratio to it is the store's share of a request. One
caller, then 100 concurrent callers.

The example apps import as they do when run from ``examples/``, so the measuring runs
in a child process with ``examples/`` on its PYTHONPATH (``python -m
benchmarks.suite.example_app BUDGET URL...``); it prints one JSON row per line.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.suite import measure
from benchmarks.suite.measure import Budget, Contender, Measurement

if TYPE_CHECKING:
    from benchmarks.suite.session import Results
    from benchmarks.suite.targets import Target

__all__ = ["measure_example_app"]

ROOT = Path(__file__).resolve().parents[2]
BUDGETS = {"smoke": measure.SMOKE, "quick": measure.QUICK, "full": measure.FULL}
CALLERS = 100


def measure_example_app(budget_name: str, results: Results, targets: list[Target]) -> None:
    """The example on SQLite (a scratch file), and on PostgreSQL when the run reaches one."""
    from benchmarks.suite.session import progress, record_row

    with tempfile.TemporaryDirectory(prefix="authstore-bench-") as folder:
        namespace = f"bench_{uuid.uuid4().hex[:8]}"
        urls = {"sqlite": f"sqlite:///{folder}/example.db?namespace={namespace}"}
        for target in targets:
            if target.name == "postgresql":  # its throwaway table prefix, dropped after
                urls["postgresql"] = target.url
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "examples"), environment.get("PYTHONPATH", "")]
        )
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.suite.example_app", budget_name, *urls.values()],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
    for target in targets:
        if target.name == "postgresql":
            target.cleanup()
    if done.returncode != 0:
        results.failures.append(f"examples: {done.stderr.strip()[-300:]}")
        progress(f"  examples FAILED: {done.stderr.strip()[-300:]}")
        return
    for line in done.stdout.splitlines():
        row = json.loads(line)
        found = [Measurement(**m) for m in row["measurements"]]
        record_row(results, row["backend"], row["mode"], row["op"], found)
    results.notes.append(
        "FastAPI example: httpx AsyncClient over ASGITransport (the app in the process); "
        "the reference is a /ping route that touches no store"
    )


async def _measure(url: str, budget: Budget) -> list[dict[str, Any]]:
    import httpx
    from authflows import Settings
    from fastapi_app.app import create_app

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

    backend = f"FastAPI example on {url.split(':', 1)[0]}"
    rows: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        auth = app.state.auth
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            created = await auth.stores.sessions.create("bench", ttl=3600)
            client.cookies.set("session", created.token)
            links: list[str] = []

            async def issue(n: int) -> None:
                links.clear()
                for i in range(n):
                    issued = await auth.stores.links.issue(
                        f"u{i}", f"u{i}@example.com", ttl=600, application_id="example"
                    )
                    links.append(issued.token)

            def answered(path: str) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    response = await client.get(path)
                    assert response.status_code == 200, response.text

                return call

            async def verify(i: int) -> None:
                response = await client.post("/auth/magic-link/verify", json={"token": links.pop()})
                assert response.status_code == 200, response.text

            def group(op: str) -> list[Contender]:
                floor = Contender("/ping (no store)", "floor", answered("/ping"))
                if op == "session check":
                    return [Contender("authstore", "authstore", answered("/session")), floor]
                return [Contender("authstore", "authstore", verify, issue), floor]

            for op in ("session check", "magic-link verify"):
                found = await measure.measure_async(group(op), budget)
                rows.append(_row(backend, "async", op, found))
                found = await measure.measure_concurrent(group(op), budget, CALLERS)
                rows.append(_row(backend, f"async{CALLERS}", op, found))
    return rows


def _row(backend: str, mode: str, op: str, found: list[Measurement]) -> dict[str, Any]:
    return {
        "backend": backend,
        "mode": mode,
        "op": op,
        "measurements": [
            {f.name: getattr(m, f.name) for f in dataclasses.fields(m) if f.name != "samples"}
            for m in found
        ],
    }


def main(argv: list[str]) -> int:
    budget, urls = BUDGETS[argv[0]], argv[1:]
    for url in urls:
        for row in asyncio.run(_measure(url, budget)):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
