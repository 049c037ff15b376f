"""``python -m benchmarks.capacity`` (the numbers behind docs/scaling.md) keeps working:
a short run on Redis writes both files, and the server's CPU time it reads from /proc
moves with the calls made (not a constant, not the client's time). A private Redis:
other tests' calls on a shared server would be counted as this run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from benchmarks.capacity import cpu_seconds, server_pids
from tests.servers.redis_topology import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisProcess(tmp_path_factory.mktemp("capacity"), free_port(), label="capacity")
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


def test_server_cpu_grows_with_the_calls_made(private_redis: str) -> None:
    client = redis.Redis.from_url(private_redis)
    port = client.connection_pool.connection_kwargs["port"]
    pids = server_pids(port)
    assert os.getpid() not in pids
    before = cpu_seconds(pids)
    for _ in range(20_000):
        client.ping()
    assert cpu_seconds(pids) > before
    client.close()


def test_capacity_run_writes_its_report(private_redis: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.capacity",
            "--seconds",
            "0.3",
            "--out",
            str(tmp_path),
            private_redis,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "capacity.json").read_text())
    rows = results["backends"]["redis"]
    assert set(rows) == {"session get", "is_blacklisted", "rate-limit hit", "request"}
    for name, row in rows.items():
        assert row["count"] > 0 and row["errors"] == 0, (name, row)
        assert row["server_us"] > 0, (name, row)
    assert "| redis | **request** |" in (tmp_path / "capacity.md").read_text()
