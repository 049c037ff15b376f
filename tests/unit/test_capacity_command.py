"""``python -m benchmarks.capacity`` (the numbers behind docs/scaling.md) keeps working:
a short run on Redis writes both files, and the server's CPU time it reads from /proc
moves with the calls made (not a constant, not the client's time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from benchmarks.capacity import cpu_seconds, server_pids
from tests.servers.defaults import default_url

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("AUTHSTORE_TEST_REDIS_URL") or default_url("redis")


def test_server_cpu_grows_with_the_calls_made() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    port = client.connection_pool.connection_kwargs["port"]
    pids = server_pids(port)
    assert os.getpid() not in pids
    before = cpu_seconds(pids)
    for _ in range(20_000):
        client.ping()
    assert cpu_seconds(pids) > before
    client.close()


def test_capacity_run_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.capacity",
            "--seconds",
            "0.3",
            "--out",
            str(tmp_path),
            REDIS_URL,
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
